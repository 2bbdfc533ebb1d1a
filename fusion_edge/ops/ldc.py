"""LDC (learnable descriptive convolution): a 3x3 convolution with a learnt weight transform.

W_eff = W * (M - theta * m[o, i] * e * sum_ab W[o, i]), e the centre-tap indicator.
Once trained this is one ordinary convolution, which is why inference folds it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def ldc_effective_weight(
    weight: torch.Tensor, base_mask: torch.Tensor, learnable_mask: torch.Tensor, theta: torch.Tensor
) -> torch.Tensor:
    """The dense 3x3 weight the reference convolves with.

    The centre indicator e is written as zero-padding around the centre term, so no constant
    tensor is created per call (that would be a host-to-device copy, fatal in CUDA graphs).
    """
    kernel_sum = weight.sum(dim=(2, 3))
    centre = theta * learnable_mask * kernel_sum
    mask = base_mask - F.pad(centre[:, :, None, None], (1, 1, 1, 1))
    return weight * mask


def ldc_conv2d_ref(
    x: torch.Tensor,
    weight: torch.Tensor,
    base_mask: torch.Tensor,
    learnable_mask: torch.Tensor,
    theta: torch.Tensor,
) -> torch.Tensor:
    return F.conv2d(x, ldc_effective_weight(weight, base_mask, learnable_mask, theta), padding=1)


_CUDA_LDC = None
_CUDA_LDC_AUTO = False


def register_cuda_ldc(fn, *, auto: bool = False) -> None:
    """Install the CUDA kernel that applies the transform inside the convolution.

    It runs when asked for (``impl="cuda"``); with ``auto`` also for every CUDA inference call.
    Ours is not auto: the folded convolution (cuDNN) is faster (benchmarks/results/kernels.md).
    """
    global _CUDA_LDC, _CUDA_LDC_AUTO
    _CUDA_LDC = fn
    _CUDA_LDC_AUTO = auto


def ldc_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    base_mask: torch.Tensor,
    learnable_mask: torch.Tensor,
    theta: torch.Tensor,
    *,
    impl: str | None = None,
) -> torch.Tensor:
    """LDC forward: (B, Cin, H, W) -> (B, Cout, H, W), stride 1, padding 1, no bias."""
    auto = impl is None and _CUDA_LDC_AUTO and _CUDA_LDC is not None and x.is_cuda and not torch.is_grad_enabled()
    if impl == "cuda" or auto:
        if _CUDA_LDC is None:
            raise RuntimeError("the CUDA LDC kernel is not available (see fusion_edge.kernels)")
        return _CUDA_LDC(x, weight, base_mask, learnable_mask, theta)
    return ldc_conv2d_ref(x, weight, base_mask, learnable_mask, theta)
