"""The DFFM skip-fusion block (reference ``VSSBlock_Cross_new``): a DFEM pair, then the CMFM."""

from __future__ import annotations

import torch
from torch import nn

from fusion_edge.models.attention import ECA
from fusion_edge.models.ldc import LDC
from fusion_edge.models.mlp import Mlp
from fusion_edge.models.ss2d import SS2DCross


class DiffEnhance(nn.Module):
    """Holds the reference's ``lastconv``, which is built but never called (kept for checkpoint keys)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.lastconv = nn.Conv2d(dim, dim // 2, kernel_size=1)


class DFEM(nn.Module):
    """F_i = LDC_i(X_i) + sigmoid(GAP(X_i - X_j)) * (X1 + X2) + X_i, in BCHW (key ``Cross_layer``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.texture_enhance1 = LDC(dim, dim)
        self.texture_enhance2 = LDC(dim, dim)
        self.Diff_enhance: DiffEnhance | None = DiffEnhance(dim)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        total = x1 + x2
        w12 = torch.sigmoid((x1 - x2).mean(dim=(2, 3), keepdim=True))
        w21 = torch.sigmoid((x2 - x1).mean(dim=(2, 3), keepdim=True))
        f1 = self.texture_enhance1(x1) + (w12 * total + x1)
        f2 = self.texture_enhance2(x2) + (w21 * total + x2)
        return f1, f2


class DFFMBlock(nn.Module):
    """out = P2 + P1 + H + ECA(H), H = CMFM(LN(F1), LN(F2)); inputs and output BHWC.

    ``legacy_ffn`` rebuilds the FFN that code revision 8abd423 applied after the sum.
    """

    def __init__(self, dim: int, d_state: int = 16, legacy_ffn: bool = False) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim)
        self.ln_2 = nn.LayerNorm(dim)
        self.Cross_layer = DFEM(dim)
        self.self_attention_cross = SS2DCross(dim, d_state=d_state)
        self.self_attention_cross_spatial = ECA()
        if legacy_ffn:
            self.norm2 = nn.LayerNorm(dim)
            self.mlp = Mlp(dim, 4 * dim)
        self.legacy_ffn = legacy_ffn

    def forward(self, p1: torch.Tensor, p2: torch.Tensor) -> torch.Tensor:
        f1, f2 = self.Cross_layer(p1.permute(0, 3, 1, 2), p2.permute(0, 3, 1, 2))
        h = self.self_attention_cross(self.ln_1(f1.permute(0, 2, 3, 1)), self.ln_2(f2.permute(0, 2, 3, 1)))
        hs = self.self_attention_cross_spatial(h.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        out = p2 + p1 + h + hs
        if self.legacy_ffn:
            out = out + self.mlp(self.norm2(out))
        return out
