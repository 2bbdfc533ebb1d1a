"""Channel attentions of the reference: ECA (on BCHW) and BiAttn (on BHWC)."""

from __future__ import annotations

import torch
from torch import nn

from fusion_edge.ops.fusable import channel_conv1d, linear


class ECA(nn.Module):
    """Efficient channel attention: a 3-tap conv along channels of the spatial mean gates each channel."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 1, kernel_size=3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x.mean(dim=(2, 3))
        gate = torch.sigmoid(channel_conv1d(pooled, self.conv.weight))
        return x * gate[:, :, None, None]


class BiAttn(nn.Module):
    """Channel gate from the mean of LN(x); scales the un-normalised x (keys ``se.*``)."""

    def __init__(self, dim: int, ratio: float = 0.125) -> None:
        super().__init__()
        reduced = int(dim * ratio)
        self.norm = nn.LayerNorm(dim)
        self.global_reduce = nn.Linear(dim, reduced)
        self.act = nn.GELU()
        self.channel_select = nn.Linear(reduced, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.norm(x).mean(dim=(1, 2))
        hidden = self.act(linear(pooled, self.global_reduce.weight, self.global_reduce.bias))
        gate = torch.sigmoid(linear(hidden, self.channel_select.weight, self.channel_select.bias))
        return x * gate[:, None, None, :]
