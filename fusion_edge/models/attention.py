"""Channel attentions of the reference: ECA (on BCHW) and BiAttn (on BHWC)."""

from __future__ import annotations

import torch
from torch import nn

from fusion_edge.ops.fusable import channel_conv1d, linear
from fusion_edge.ops.ln_pool import ln_pool


class ECA(nn.Module):
    """Efficient channel attention: a 3-tap conv along channels of the spatial mean gates each channel."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 1, kernel_size=3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x.mean(dim=(2, 3)))[:, :, None, None]

    def gate(self, pooled: torch.Tensor) -> torch.Tensor:
        """(B, C) channel gates from the (B, C) spatial mean (a caller that has the mean already skips a pass)."""
        return torch.sigmoid(channel_conv1d(pooled, self.conv.weight))


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
        return x * self.gate(self.pool(x)[0])[:, None, None, :]

    def pool(self, x: torch.Tensor, with_raw: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The (B, C) mean of LN(x) over the pixels, and with ``with_raw`` x's own mean (ECA's), in one pass."""
        return ln_pool(x, self.norm.weight, self.norm.bias, self.norm.eps, with_raw=with_raw)

    def gate(self, pooled: torch.Tensor) -> torch.Tensor:
        """(B, C) channel gates from :meth:`pool`'s mean of LN(x)."""
        hidden = self.act(linear(pooled, self.global_reduce.weight, self.global_reduce.bias))
        return torch.sigmoid(linear(hidden, self.channel_select.weight, self.channel_select.bias))
