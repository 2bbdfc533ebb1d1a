"""LDC module with the reference's parameters, and its fold into a plain convolution."""

from __future__ import annotations

import torch
from torch import nn

from fusion_edge.ops.ldc import ldc_conv2d, ldc_effective_weight


class LDC(nn.Module):
    """Learnable descriptive convolution (keys ``conv.weight``, ``base_mask``, ``learnable_mask``,
    ``learnable_theta``). ``base_mask`` is frozen, as in the reference."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False)
        self.base_mask = nn.Parameter(torch.ones(out_channels, in_channels, 3, 3), requires_grad=False)
        self.learnable_mask = nn.Parameter(torch.ones(out_channels, in_channels))
        self.learnable_theta = nn.Parameter(torch.full((1,), 0.5))

    def effective_weight(self) -> torch.Tensor:
        return ldc_effective_weight(self.conv.weight, self.base_mask, self.learnable_mask, self.learnable_theta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ldc_conv2d(x, self.conv.weight, self.base_mask, self.learnable_mask, self.learnable_theta)

    @torch.no_grad()
    def fold(self) -> nn.Conv2d:
        """One ``nn.Conv2d`` computing exactly this LDC (weights computed in float64, then cast)."""
        weight = ldc_effective_weight(
            self.conv.weight.double(),
            self.base_mask.double(),
            self.learnable_mask.double(),
            self.learnable_theta.double(),
        )
        out_ch, in_ch = weight.shape[:2]
        conv = nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1, bias=False)
        conv = conv.to(device=self.conv.weight.device, dtype=self.conv.weight.dtype)
        conv.weight.copy_(weight.to(conv.weight.dtype))
        return conv
