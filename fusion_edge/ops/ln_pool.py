"""The mean over a map's pixels of its LayerNorm (BiAttn's pooled vector) and of the map itself (ECA's), in one pass.

Why: compiled, ``LayerNorm(x).mean(pixels)`` is three kernels (the per-pixel statistics, then the mean over the
pixels split in two launches) with the normalized map written and read back in between, and the DVSS block
needs it on its SS2D output, besides ECA's plain mean of the same map, and again on its LDC output. For
inference on CUDA, ``fusion_edge::ln_pool`` reads the map once and returns both means with the LayerNorm's
weight and bias applied (``fusion_edge.kernels.launch_ln_pool``: a pass that writes each thread block's share
and a launch that adds the shares in a fixed order, so calls repeat bitwise); the normalized map is never
stored. Gradients, ONNX and TorchScript tracing, rows the kernel does not read (not whole 16-byte words, or
wider than it takes), parameters of another type than the map, and rows narrower than MIN_CHANNELS keep the
plain expression, which is also the op's CPU kernel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fusion_edge.ops import torch_ops

SCHEMA = "(Tensor x, Tensor? weight, Tensor? bias, float eps, bool with_raw) -> Tensor"
# Narrower rows keep the compiled expression: measured down to edge's 16 channels, where the op won
# (benchmarks/results/ln_pool_h200.md); below that a row is a single 16-byte word or less.
MIN_CHANNELS = 16
# False: the plain expression everywhere (benchmarks compare both).
ENABLED = True
_MAX_WORDS_A_LANE = 4  # fusion_edge.kernels.launch_params.LN_POOL_CHUNKS[-1] (not imported: kernels may be absent)


def ln_pool(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float, *,
            with_raw: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(F.layer_norm(x, (C,), weight, bias, eps).mean(pixels), x.mean(pixels) if with_raw else None)`` for x
    (B, ..., C) with its channels last, both (B, C) in x's dtype: one pass of our kernel where it applies."""
    if x.dim() < 2:
        raise ValueError(f"ln_pool: x must be (B, ..., C), got {tuple(x.shape)}")
    if _kernel_applies(x, weight, bias):
        means = torch.ops.fusion_edge.ln_pool(x, weight, bias, float(eps), bool(with_raw))
        return means[:, 0], means[:, 1] if with_raw else None
    pixels = tuple(range(1, x.dim() - 1))
    shape = tuple(weight.shape) if weight is not None else (x.shape[-1],)  # a parameter's shape stays static in tracing
    pooled = F.layer_norm(x, shape, weight, bias, eps).mean(dim=pixels)
    return pooled, x.mean(dim=pixels) if with_raw else None


def _kernel_applies(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None) -> bool:
    if not (ENABLED and _OP_REGISTERED) or x.dim() < 3 or x.shape[-1] < MIN_CHANNELS:
        return False
    if x.shape[-1] * x.element_size() % 16 or x.shape[-1] > 32 * _MAX_WORDS_A_LANE * (16 // x.element_size()):
        return False  # the kernel reads rows as whole 16-byte words
    if any(p is not None and (p.dtype != x.dtype or p.shape != x.shape[-1:]) for p in (weight, bias)):
        return False
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        return False  # exported graphs keep the standard operators
    return torch_ops.use_ops(x, weight, bias)


def _ln_pool_cuda(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float,
                  with_raw: bool) -> torch.Tensor:
    from fusion_edge import kernels

    x = x.contiguous()
    if x.data_ptr() % 16:
        x = x.clone()  # a view starting inside its storage: the kernel loads 16-byte words
    params = [None if p is None else p.contiguous() for p in (weight, bias)]
    sms = torch.cuda.get_device_properties(x.device).multi_processor_count
    shares = torch.empty(kernels.ln_pool_workspace_floats(tuple(x.shape), x.element_size(), sms, with_raw),
                         device=x.device, dtype=torch.float32)
    out = x.new_empty((x.shape[0], 1 + int(with_raw), x.shape[-1]))
    with torch.cuda.device(x.device):
        kernels.launch_ln_pool(x, out, weight=params[0], bias=params[1], eps=eps, with_raw=with_raw,
                               workspace=shares, stream=torch.cuda.current_stream(x.device).cuda_stream)
    return out


def _ln_pool_cpu(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float,
                 with_raw: bool) -> torch.Tensor:
    pixels = tuple(range(1, x.dim() - 1))
    xf = x.float()
    params = [None if p is None else p.float() for p in (weight, bias)]
    means = [F.layer_norm(xf, xf.shape[-1:], params[0], params[1], eps).mean(dim=pixels)]
    if with_raw:
        means.append(xf.mean(dim=pixels))
    return torch.stack(means, dim=1).to(x.dtype)


def _ln_pool_fake(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float,
                  with_raw: bool) -> torch.Tensor:
    return x.new_empty((x.shape[0], 1 + int(with_raw), x.shape[-1]))


_OP_REGISTERED = torch_ops.define_op("ln_pool", SCHEMA, _ln_pool_cuda, _ln_pool_cpu, _ln_pool_fake)
