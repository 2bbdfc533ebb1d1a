"""The mean over a map's pixels of its LayerNorm (BiAttn's pooled vector) and of the map itself (ECA's), in one pass.

Why: compiled, ``LayerNorm(x).mean(pixels)`` is three kernels (the per-pixel statistics, then the mean over the
pixels split in two launches) with the normalized map written and read back in between, and the DVSS block
needs it on its SS2D output, besides ECA's plain mean of the same map, and again on its LDC output. For
inference on CUDA, ``fusion_edge::ln_pool`` computes both means in one pass over the map (kernel
``fe_ln_pool_<x>``, ``fusion_edge.kernels.launch_ln_pool``); the normalized map is never stored.

Off by default (``ENABLED``): the kernel adds its blocks' sums with atomics, so the pooled vectors, and through
30 blocks the fused image, vary from call to call (paper: up to 7.8e-3 between two calls of one graph, against
bitwise-equal calls without it) for 0.07 ms a paper frame (H200; ``benchmarks/results/ln_pool_h200.md``). With
``ENABLED = True``, rows of fewer than MIN_CHANNELS channels and everything else (CPU, gradients, ONNX and
TorchScript tracing) keep the plain expression, which is also the op's CPU kernel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fusion_edge.ops import torch_ops

SCHEMA = "(Tensor x, float eps, bool with_raw) -> Tensor"
MAX_CHANNELS = 2048  # fusion_edge.kernels.launch_params.LN_POOL_MAX_C (not imported: kernels may be absent)
# Narrower rows keep the compiled expression: the kernel's row statistics (a warp a row) wait on latency when a
# tile holds many short rows, and with every layer on the op the edge preset (16-128 channels) ran 1.63 against
# 1.48 ms on the H200 while paper (96-768) gained (benchmarks/results/ln_pool_h200.md).
MIN_CHANNELS = 96
# True: the op where it applies (not bitwise reproducible: see above); benchmarks and tests turn it on.
ENABLED = False


def ln_pool(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float, *,
            with_raw: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(F.layer_norm(x, (C,), weight, bias, eps).mean(pixels), x.mean(pixels) if with_raw else None)`` for x
    (B, ..., C) with its channels last, both (B, C) in x's dtype: one pass of our kernel where it applies."""
    if x.dim() < 2:
        raise ValueError(f"ln_pool: x must be (B, ..., C), got {tuple(x.shape)}")
    if _kernel_applies(x, weight, bias):
        means = torch.ops.fusion_edge.ln_pool(x, float(eps), bool(with_raw))
        pooled = means[:, 0]
        if weight is not None:
            pooled = pooled * weight.float()
        if bias is not None:
            pooled = pooled + bias.float()
        return pooled.to(x.dtype), means[:, 1].to(x.dtype) if with_raw else None
    pixels = tuple(range(1, x.dim() - 1))
    shape = tuple(weight.shape) if weight is not None else (x.shape[-1],)  # a parameter's shape stays static in tracing
    pooled = F.layer_norm(x, shape, weight, bias, eps).mean(dim=pixels)
    return pooled, x.mean(dim=pixels) if with_raw else None


def _kernel_applies(x: torch.Tensor, *params: torch.Tensor | None) -> bool:
    if not (ENABLED and _OP_REGISTERED) or not MIN_CHANNELS <= x.shape[-1] <= MAX_CHANNELS or x.dim() < 3:
        return False
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        return False  # exported graphs keep the standard operators
    return torch_ops.use_ops(x, *params)


def _ln_pool_cuda(x: torch.Tensor, eps: float, with_raw: bool) -> torch.Tensor:
    from fusion_edge import kernels

    out = torch.empty((x.shape[0], 2, x.shape[-1]), device=x.device, dtype=torch.float32)
    with torch.cuda.device(x.device):
        kernels.launch_ln_pool(x.contiguous(), out, eps=eps, with_raw=with_raw,
                               stream=torch.cuda.current_stream(x.device).cuda_stream)
    return out


def _ln_pool_cpu(x: torch.Tensor, eps: float, with_raw: bool) -> torch.Tensor:
    pixels = tuple(range(1, x.dim() - 1))
    xf = x.float()
    normed = F.layer_norm(xf, xf.shape[-1:], None, None, eps).mean(dim=pixels)
    raw = xf.mean(dim=pixels) if with_raw else torch.zeros_like(normed)
    return torch.stack((normed, raw), dim=1)


def _ln_pool_fake(x: torch.Tensor, eps: float, with_raw: bool) -> torch.Tensor:
    return x.new_empty((x.shape[0], 2, x.shape[-1]), dtype=torch.float32)


_OP_REGISTERED = torch_ops.define_op("ln_pool", SCHEMA, _ln_pool_cuda, _ln_pool_cpu, _ln_pool_fake)
