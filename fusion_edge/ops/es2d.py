"""ES2D: EfficientVMamba's skip-sampled four-route selective scan over a feature map.

The map is split into its four stride-2 sub-grids (routes); routes 0 and 2 are read
row-major, routes 1 and 3 column-major, each is scanned as one sequence with its own
projections, and every route writes back to its own pixels. Odd sizes are zero-padded
at the bottom/right and the padded positions take part in the scan (as the reference).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F

from fusion_edge.ops.selective_scan import selective_scan

ROUTES = 4


def es2d_gather(x: torch.Tensor, pad_always: bool = False) -> torch.Tensor:
    """(B, D, h, w) -> (B, 4, D, L') route sequences; pads odd sizes with zeros first.

    ``pad_always`` pads by amounts computed from the shape instead of branching on it, so a
    graph traced at one size stays right at every size (dynamic ONNX export).
    """
    b, d, h, w = x.shape
    if pad_always or h % 2 or w % 2:
        x = F.pad(x, (0, w % 2, 0, h % 2))
    h2, w2 = (h + h % 2) // 2, (w + w % 2) // 2
    grid = x.reshape(b, d, h2, 2, w2, 2)
    ee = grid[:, :, :, 0, :, 0]
    oe = grid[:, :, :, 1, :, 0].transpose(2, 3)
    eo = grid[:, :, :, 0, :, 1]
    oo = grid[:, :, :, 1, :, 1].transpose(2, 3)
    return torch.stack([r.reshape(b, d, h2 * w2) for r in (ee, oe, eo, oo)], dim=1)


def es2d_scatter(ys: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`es2d_gather`: (B, 4, D, L') -> (B, D, h, w), cropping the padding."""
    b, _, d, _ = ys.shape
    h2, w2 = (h + h % 2) // 2, (w + w % 2) // 2
    ee = ys[:, 0].reshape(b, d, h2, w2)
    oe = ys[:, 1].reshape(b, d, w2, h2).transpose(2, 3)
    eo = ys[:, 2].reshape(b, d, h2, w2)
    oo = ys[:, 3].reshape(b, d, w2, h2).transpose(2, 3)
    even_rows = torch.stack([ee, eo], dim=-1)  # (b, d, h2, w2, col parity)
    odd_rows = torch.stack([oe, oo], dim=-1)
    full = torch.stack([even_rows, odd_rows], dim=3).reshape(b, d, 2 * h2, 2 * w2)
    return full[:, :, :h, :w]


def es2d_scan_unfused(
    x: torch.Tensor,
    x_proj_weight: torch.Tensor,
    dt_projs_weight: torch.Tensor,
    dt_projs_bias: torch.Tensor,
    A_logs: torch.Tensor,
    Ds: torch.Tensor,
    *,
    impl: str | None = None,
    scan: Callable[..., torch.Tensor] | None = None,
    pad_always: bool = False,
) -> torch.Tensor:
    """Gather the routes, project, scan, scatter back: (B, D, h, w) -> (B, D, h, w), fp32.

    ``scan`` replaces the dispatched selective scan (export passes the chunked one with its
    chunk length); ``pad_always`` is passed on to :func:`es2d_gather`.
    """
    b, d, h, w = x.shape
    dt_rank = dt_projs_weight.shape[2]
    d_state = A_logs.shape[1]
    if scan is None:
        scan = functools.partial(selective_scan, impl=impl)
    xs = es2d_gather(x.float(), pad_always=pad_always)
    length = xs.shape[-1]
    proj = torch.einsum("bkdl,kcd->bkcl", xs, x_proj_weight.float())
    dts, Bs, Cs = torch.split(proj, [dt_rank, d_state, d_state], dim=2)
    dts = torch.einsum("bkrl,kdr->bkdl", dts, dt_projs_weight.float())
    ys = scan(
        xs.reshape(b, ROUTES * d, length),
        dts.reshape(b, ROUTES * d, length),
        -torch.exp(A_logs.float()),
        Bs.contiguous(),
        Cs.contiguous(),
        D=Ds.float(),
        delta_bias=dt_projs_bias.reshape(-1).float(),
        delta_softplus=True,
    )
    return es2d_scatter(ys.reshape(b, ROUTES, d, length), h, w)


_FUSED = None


def register_fused(fn) -> None:
    """Install a fused implementation (one launch, no gather/scatter copies) used on CUDA inputs."""
    global _FUSED
    _FUSED = fn


def es2d_scan(
    x: torch.Tensor,
    x_proj_weight: torch.Tensor,
    dt_projs_weight: torch.Tensor,
    dt_projs_bias: torch.Tensor,
    A_logs: torch.Tensor,
    Ds: torch.Tensor,
    *,
    impl: str | None = None,
) -> torch.Tensor:
    """The ES2D core of MODEL.md section 3.2 (steps 1-6, before ``out_norm``); returns BCHW fp32."""
    if _FUSED is not None and x.is_cuda and impl in (None, "auto", "cuda"):
        return _FUSED(x, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds)
    return es2d_scan_unfused(x, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds, impl=impl)
