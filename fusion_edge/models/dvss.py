"""The DVSS block (reference ``VSSBlock_new``) and the encoder / decoder stages built from it."""

from __future__ import annotations

import torch
from torch import nn

from fusion_edge.models.attention import ECA, BiAttn
from fusion_edge.models.ldc import LDC
from fusion_edge.models.mlp import DropPath, Mlp
from fusion_edge.models.patch import PatchExpand2D, PatchMerging2D
from fusion_edge.models.ss2d import SS2D


class DVSSBlock(nn.Module):
    """S = SS2D(LN(F)); Q = LDC(S + ECA(S)); Z = F + BiAttn(S) + BiAttn(Q); F' = Z + MLP(LN(Z)).

    One BiAttn weight set is applied to both S and Q, as in the reference.
    """

    def __init__(self, dim: int, drop_path: float = 0.0, d_state: int = 16, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.op = SS2D(dim, d_state=d_state)
        self.self_attention_cross_channel = ECA()
        self.conv_branch = LDC(dim, dim)
        self.se = BiAttn(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.op(self.norm(x))
        # BiAttn's pooled LN(S) and ECA's mean of S come from one pass over S.
        pooled_s, mean_s = self.se.pool(s, with_raw=True)
        s_chw = s.permute(0, 3, 1, 2)
        eca_gate = self.self_attention_cross_channel.gate(mean_s)
        q = self.conv_branch(s_chw + s_chw * eca_gate[:, :, None, None]).permute(0, 2, 3, 1)
        z = x + self.drop_path(s * self.se.gate(pooled_s)[:, None, None, :] + self.se(q))
        return z + self.drop_path(self.mlp(self.norm2(z)))


class EncoderStage(nn.Module):
    """Reference ``VSSLayer``: blocks, then an optional PatchMerging (keys ``blocks``, ``downsample``)."""

    def __init__(self, dim: int, depth: int, drop_path: list[float], downsample: bool) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(DVSSBlock(dim, drop_path=drop_path[i]) for i in range(depth))
        self.downsample = PatchMerging2D(dim) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.downsample(x) if self.downsample is not None else x


class DecoderStage(nn.Module):
    """Reference ``VSSLayer_up``: an optional PatchExpand first, then blocks (keys ``upsample``, ``blocks``)."""

    def __init__(self, dim: int, depth: int, drop_path: list[float], upsample: bool) -> None:
        super().__init__()
        self.upsample = PatchExpand2D(dim) if upsample else None
        self.blocks = nn.ModuleList(DVSSBlock(dim, drop_path=drop_path[i]) for i in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.upsample is not None:
            x = self.upsample(x)
        for block in self.blocks:
            x = block(x)
        return x
