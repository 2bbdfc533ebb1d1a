"""A linear layer followed by GELU as one cuBLASLt GEMM with the GELU in its epilogue (half-precision inference).

Why: compiled, every MLP's GELU is a kernel of its own after the fc1 GEMM (inductor does not fuse into a
library GEMM's output), so the widest activation of each block (four times its channels) is written, read and
written again: 30 such kernels a `paper` frame. cuBLASLt applies GELU to the product before storing it
(``torch._addmm_activation``), which removes that pass. Its GELU is the tanh form, which differs from the
exact (erf) GELU the model is defined with by at most 4.7e-4 (near x = 2.7, where float16 values are 2e-3
apart). So the fused form is the default only where that is below the output's own rounding: float16 and
bfloat16 inference on CUDA. Everything else (float32, gradients, CPU, ONNX and TorchScript tracing) keeps
the exact GELU.

``fusion_edge::linear_gelu`` is a ``torch.library`` custom op so that torch.compile keeps the call whole (it
would otherwise decompose ``_addmm_activation`` back into a GEMM and an elementwise GELU). Its CPU kernel
computes the same tanh form, so the op runs and is tested anywhere.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fusion_edge.ops import torch_ops

MODES = ("auto", "on", "off")
HALF_DTYPES = (torch.float16, torch.bfloat16)
SCHEMA = "(Tensor x, Tensor weight, Tensor bias) -> Tensor"
_mode = "auto"


def set_gelu_epilogue(mode: str) -> None:
    """``"auto"`` (default): fused for float16/bfloat16 inference on CUDA; ``"on"``: fused for any inference
    call (tests on a CPU); ``"off"``: always the library linear and the exact GELU."""
    global _mode
    if mode not in MODES:
        raise ValueError(f"GELU epilogue mode must be one of {MODES}, got {mode!r}")
    _mode = mode


def gelu_epilogue_mode() -> str:
    return _mode


def linear_gelu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``gelu(x @ weight.T + bias)`` over the last axis of ``x``: fused where :func:`set_gelu_epilogue` allows."""
    if _fused_applies(x, weight, bias):
        return torch.ops.fusion_edge.linear_gelu(x, weight, bias)
    return F.gelu(F.linear(x, weight, bias))


def _fused_applies(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> bool:
    if _mode == "off" or bias is None or not _OP_REGISTERED:
        return False
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        return False  # exported graphs keep the model's exact GELU
    if torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad or bias.requires_grad):
        return False  # the op has no backward
    return _mode == "on" or (x.is_cuda and x.dtype in HALF_DTYPES)


def _check(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> None:
    if weight.dim() != 2 or bias.shape != (weight.shape[0],) or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear_gelu: x (..., K), weight (N, K) and bias (N,) needed; got x {tuple(x.shape)}, "
                         f"weight {tuple(weight.shape)}, bias {tuple(bias.shape)}")
    if not (x.dtype == weight.dtype == bias.dtype):
        raise ValueError(f"linear_gelu: x, weight and bias must share a dtype; got {x.dtype}, {weight.dtype}, "
                         f"{bias.dtype}")


def _fused_cuda(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    _check(x, weight, bias)
    rows = x.reshape(-1, x.shape[-1])
    out = torch._addmm_activation(bias, rows, weight.t(), use_gelu=True)
    return out.view(*x.shape[:-1], weight.shape[0])


def _fused_cpu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    _check(x, weight, bias)
    return F.gelu(F.linear(x, weight, bias), approximate="tanh").contiguous()


def _fused_fake(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    _check(x, weight, bias)
    return x.new_empty((*x.shape[:-1], weight.shape[0]))


_OP_REGISTERED = torch_ops.define_op("linear_gelu", SCHEMA, _fused_cuda, _fused_cpu, _fused_fake)
