"""SS2D (the DVSS block's ES2D state-space mixer) and its cross-modal variant (the CMFM)."""

from __future__ import annotations

import math

import torch
from torch import nn

from fusion_edge.ops.es2d import ROUTES, NormGate, es2d_conv_scan


def _trunc_normal_linear(layer: nn.Linear) -> None:
    nn.init.trunc_normal_(layer.weight, std=0.02, a=-2.0, b=2.0)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


class _ES2DParams(nn.Module):
    """The scan parameters shared by SS2D and its cross variant (same key names in both)."""

    def __init__(self, d_model: int, d_state: int, expand: int, dt_min: float = 1e-3, dt_max: float = 0.1) -> None:
        super().__init__()
        self.d_model = d_model
        self.d_state = d_state
        self.d_inner = expand * d_model
        self.dt_rank = math.ceil(d_model / 16)
        d_inner, rank = self.d_inner, self.dt_rank
        self.conv2d = nn.Conv2d(d_inner, d_inner, kernel_size=3, padding=1, groups=d_inner, bias=True)
        self.x_proj_weight = nn.Parameter(torch.empty(ROUTES, rank + 2 * d_state, d_inner))
        self.dt_projs_weight = nn.Parameter(torch.empty(ROUTES, d_inner, rank))
        self.dt_projs_bias = nn.Parameter(torch.empty(ROUTES, d_inner))
        self.A_logs = nn.Parameter(torch.empty(ROUTES * d_inner, d_state))
        self.Ds = nn.Parameter(torch.empty(ROUTES * d_inner))
        self.out_norm = nn.LayerNorm(d_inner)
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)
        self._init_scan_params(dt_min, dt_max)

    @torch.no_grad()
    def _init_scan_params(self, dt_min: float, dt_max: float) -> None:
        bound = 1.0 / math.sqrt(self.d_inner)
        nn.init.uniform_(self.x_proj_weight, -bound, bound)
        nn.init.uniform_(self.dt_projs_weight, -self.dt_rank**-0.5, self.dt_rank**-0.5)
        dt = torch.exp(
            torch.rand(ROUTES, self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        ).clamp(min=1e-4)
        self.dt_projs_bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        self.A_logs.copy_(torch.log(torch.arange(1, self.d_state + 1, dtype=torch.float32)).repeat(
            ROUTES * self.d_inner, 1))
        self.Ds.fill_(1.0)
        _trunc_normal_linear(self.out_proj)

    def conv_scan_gated(self, a: torch.Tensor, z: torch.Tensor, a2: torch.Tensor | None = None) -> torch.Tensor:
        """BHWC in_proj halves a, z (B, h, w, D) -> out_norm(scan of SiLU(depthwise conv(a))) * SiLU(z), BHWC;
        with a2 (the CMFM's second modality, same conv) the hybrid c1 * c2 + c1 + c2 is scanned and the gate is
        the CMFM's SiLU(z) + SiLU(SiLU(z)). One call, so that on the GPU the LayerNorm and gate happen in the
        merge of the scanned routes (``fusion_edge.ops.es2d.set_merge_norm``)."""
        norm = self.out_norm
        gate = NormGate(tuple(norm.normalized_shape), norm.weight, norm.bias, norm.eps, z, cross=a2 is not None)
        return es2d_conv_scan(a, self.conv2d.weight, self.conv2d.bias, self.x_proj_weight, self.dt_projs_weight,
                              self.dt_projs_bias, self.A_logs, self.Ds, a2=a2, gate=gate)


class SS2D(_ES2DParams):
    """in_proj -> [depthwise conv -> SiLU -> ES2D -> LN] * SiLU(z) -> out_proj, BHWC in and out."""

    def __init__(self, d_model: int, d_state: int = 16, expand: int = 2) -> None:
        super().__init__(d_model, d_state, expand)
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=False)
        _trunc_normal_linear(self.in_proj)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, z = self.in_proj(x).chunk(2, dim=-1)
        return self.out_proj(self.conv_scan_gated(a, z))


class SS2DCross(_ES2DParams):
    """The CMFM mixer: both modalities share one conv; the hybrid c1*c2 + c1 + c2 is scanned.

    Reference quirk kept: both gates come from modality 1 (g2 = SiLU(SiLU(z1))), so the z half
    of ``in_proj2`` is dead; :meth:`drop_dead_weights` removes it for inference. The output is
    out_proj(y * g1 + y * g2) with y the LayerNorm'd scan and g1 = SiLU(z1).
    """

    def __init__(self, d_model: int, d_state: int = 16, expand: int = 2) -> None:
        super().__init__(d_model, d_state, expand)
        self.in_proj1 = nn.Linear(d_model, 2 * self.d_inner, bias=False)
        self.in_proj2 = nn.Linear(d_model, 2 * self.d_inner, bias=False)
        _trunc_normal_linear(self.in_proj1)
        _trunc_normal_linear(self.in_proj2)

    def forward(self, u1: torch.Tensor, u2: torch.Tensor) -> torch.Tensor:
        a1, z1 = self.in_proj1(u1).chunk(2, dim=-1)
        a2 = self.in_proj2(u2)[..., : self.d_inner]
        return self.out_proj(self.conv_scan_gated(a1, z1, a2))

    @torch.no_grad()
    def drop_dead_weights(self) -> None:
        """Keep only the rows of ``in_proj2`` that reach the output (the a half)."""
        if self.in_proj2.out_features == self.d_inner:
            return
        trimmed = nn.Linear(self.d_model, self.d_inner, bias=False).to(self.in_proj2.weight)
        trimmed.weight.copy_(self.in_proj2.weight[: self.d_inner])
        self.in_proj2 = trimmed
