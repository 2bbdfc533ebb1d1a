"""The 3x3 Sobel pair, one definition for the two-scale prior, the gradient loss and the quality loss."""

from __future__ import annotations

import torch


def sobel_kernels() -> torch.Tensor:
    """(2, 1, 3, 3) float32 on the CPU for ``F.conv2d`` (cross-correlation): Sobel_x (increasing to the
    right), Sobel_y (increasing upwards). A fresh tensor each call: callers keep it as a buffer or per
    device, since making it inside a CUDA-graph capture would be a host-to-device copy."""
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    return torch.stack([kx, kx.t().flip(0)])[:, None]
