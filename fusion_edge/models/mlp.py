"""Feed-forward and stochastic-depth pieces shared by the blocks."""

from __future__ import annotations

import torch
from torch import nn

from fusion_edge.ops.linear_gelu import linear_gelu


class DropPath(nn.Module):
    """Zero whole samples of a residual branch with probability ``p`` in training (rescaled)."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2 on channels-last input (keys ``fc1``, ``fc2``).

    fc1 and GELU go through :func:`fusion_edge.ops.linear_gelu.linear_gelu`: one GEMM with the GELU in its
    epilogue for half-precision inference on CUDA, the plain linear and the exact GELU otherwise.
    """

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(linear_gelu(x, self.fc1.weight, self.fc1.bias))
