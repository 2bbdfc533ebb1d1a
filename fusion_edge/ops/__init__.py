"""Operators of the model with their dispatch: selective scan, ES2D route scan, LDC."""

from fusion_edge.ops.es2d import es2d_scan
from fusion_edge.ops.ldc import ldc_conv2d, ldc_effective_weight
from fusion_edge.ops.selective_scan import (
    available_impls,
    register_impl,
    selective_scan,
    set_default_impl,
    use_impl,
)
from fusion_edge.ops.selective_scan_cuda import register as _register_cuda_kernels
from fusion_edge.ops.selective_scan_ref import selective_scan_ref

# Our CUDA kernels: impl "cuda", the fused ES2D op and the LDC kernel (CuPy loads on first use).
_register_cuda_kernels()
from fusion_edge.ops import torch_ops as _torch_ops  # noqa: E402, F401  custom ops (torch.compile) behind it

__all__ = [
    "available_impls",
    "es2d_scan",
    "ldc_conv2d",
    "ldc_effective_weight",
    "register_impl",
    "selective_scan",
    "selective_scan_ref",
    "set_default_impl",
    "use_impl",
]
