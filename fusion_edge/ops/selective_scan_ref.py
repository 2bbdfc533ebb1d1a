"""Sequential selective scan: the readable truth every other implementation is checked against."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def expand_groups(BC: torch.Tensor, dim: int) -> torch.Tensor:
    """Return B or C as (batch, dim, N, L), repeating each group over its channels.

    Accepts the mamba_ssm layouts (batch, groups, N, L) and (batch, N, L) (one group).
    """
    if BC.dim() == 3:
        BC = BC.unsqueeze(1)
    groups = BC.shape[1]
    return BC.repeat_interleave(dim // groups, dim=1)


def selective_scan_ref(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
) -> torch.Tensor:
    """Token-by-token recurrence in fp32 (or fp64 when given fp64), as mamba_ssm's reference.

    h_l = exp(delta_l * A) * h_{l-1} + delta_l * B_l * u_l ;  y_l = <C_l, h_l> + D * u_l
    """
    dtype_in = u.dtype
    acc = torch.float64 if u.dtype == torch.float64 else torch.float32
    u = u.to(acc)
    delta = delta.to(acc)
    if delta_bias is not None:
        delta = delta + delta_bias.to(acc)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    batch, dim, length = u.shape
    Bx = expand_groups(B.to(acc), dim)
    Cx = expand_groups(C.to(acc), dim)
    A = A.to(acc)
    state = u.new_zeros(batch, dim, A.shape[1])
    ys = []
    for i in range(length):
        d_i = delta[:, :, i, None]
        state = torch.exp(d_i * A) * state + d_i * Bx[:, :, :, i] * u[:, :, i, None]
        ys.append((state * Cx[:, :, :, i]).sum(-1))
    y = torch.stack(ys, dim=-1) if ys else u.new_zeros(batch, dim, 0)
    if D is not None:
        y = y + u * D.to(acc)[:, None]
    if z is not None:
        y = y * F.silu(z.to(acc))
    return y.to(dtype_in)
