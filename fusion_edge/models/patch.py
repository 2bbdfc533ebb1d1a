"""Patch embedding, merging (down) and expanding (up) layers, all channels-last (BHWC)."""

from __future__ import annotations

import torch
from torch import nn


class PatchEmbed2D(nn.Module):
    """Non-overlapping ``patch`` x ``patch`` conv to ``dim`` channels, then LayerNorm; returns BHWC."""

    def __init__(self, patch_size: int = 4, in_chans: int = 1, dim: int = 96, norm: bool = True) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(dim) if norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class PatchMerging2D(nn.Module):
    """2x2 space-to-depth in the order (even,even), (odd,even), (even,odd), (odd,odd); LN; Linear 4c->2c."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        grid = x.reshape(b, h // 2, 2, w // 2, 2, c)
        # (col parity, row parity, c) with row parity varying fastest among the chunks
        merged = grid.permute(0, 1, 3, 4, 2, 5).reshape(b, h // 2, w // 2, 4 * c)
        return self.reduction(self.norm(merged))


def pixel_shuffle_bhwc(x: torch.Tensor, factor: int) -> torch.Tensor:
    """out[b, f*i+p1, f*j+p2, ch] = x[b, i, j, (f*p1 + p2)*c + ch]."""
    b, h, w, cf = x.shape
    c = cf // (factor * factor)
    x = x.reshape(b, h, w, factor, factor, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h * factor, w * factor, c)


class PatchExpand2D(nn.Module):
    """Linear 2c->4c, 2x pixel shuffle to c channels, LayerNorm(c). Built with the target width c."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.expand = nn.Linear(2 * dim, 4 * dim, bias=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(pixel_shuffle_bhwc(self.expand(x), 2))


class FinalPatchExpand2D(nn.Module):
    """Linear C->4C, 4x pixel shuffle to C/4 channels, LayerNorm(C/4): back to full resolution."""

    def __init__(self, dim: int, factor: int = 4) -> None:
        super().__init__()
        self.factor = factor
        self.expand = nn.Linear(dim, factor * dim, bias=False)
        self.norm = nn.LayerNorm(dim // factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(pixel_shuffle_bhwc(self.expand(x), self.factor))
