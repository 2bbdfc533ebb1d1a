"""Two-scale fusion prior: the global residual of ``residual="twoscale"`` models.

Why: the head of a fusion network only has to add what its global residual misses, and the residual
decides where training starts. The reference adds 2 * (vis + ir) (the head must first undo the
doubled brightness); the per-pixel maximum keeps hot targets but drops the visible texture wherever
the infrared is brighter. This prior follows the two-scale family of classical fusions (a Gaussian
base layer and a detail layer per source, the detail chosen by local activity, as in guided-filter
fusion, Li et al. 2013): it keeps both sources' large-scale content and, at every place, the detail of
the more active source, so a network started from it begins where the maximum and the Laplacian
pyramid are already beaten on Qabf, VIF and SCD together (TNO table in ``docs/training.md``).

    base_s   = G_base * s,                   detail_s = s - base_s        (s = vis, ir)
    activity = G_act * (Sx(s)^2 + Sy(s)^2)                               (Sobel energy)
    w        = G_mask * [activity_vis > activity_ir]                      (0..1, soft near switches)
    prior    = base_vis + base_ir - (mean(base_vis) + mean(base_ir)) / 2
               + gain * (w * detail_vis + (1 - w) * detail_ir)

G_x are Gaussian blurs (sigma 16, 8 and 8 pixels, replicate borders, truncated at 3 sigma); the
means are per image, so the base keeps the mean brightness of the average of the sources. No
parameters: it is computed in float32 (outside autocast) whatever the model's dtype, since a
bfloat16 prior would add about one grey level of rounding noise, which gradient metrics punish.
Only the base and mask blurs' matrix products follow the inputs: with half-precision inputs (a float16
model at inference) they take float16 operands with float32 accumulation, on tensor cores, which rounds
those maps by about 1e-4, below the float16 output's own rounding (``blur``); the activity blur stays
float32 (``_activity``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from fusion_edge.models.graph_state import is_capturing, is_tracing
from fusion_edge.ops.sobel import sobel_kernels

# Blur widths in pixels and the detail gain, picked by a small sweep scored on the 221 RoadScene
# training pairs (docs/training.md); fixed, so the prior is the same for every model and input.
BASE_SIGMA = 16.0
ACTIVITY_SIGMA = 8.0
MASK_SIGMA = 8.0
DETAIL_GAIN = 1.3


def gaussian_taps(sigma: float, device: torch.device | str | None = None) -> torch.Tensor:
    """Normalised 1-D Gaussian of radius ceil(3 sigma), float32, made on ``device`` (no host copy)."""
    radius = max(int(math.ceil(3.0 * sigma)), 1)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64, device=device)
    taps = torch.exp(-(x * x) / (2.0 * sigma * sigma))
    return (taps / taps.sum()).to(torch.float32)


def blur_matrix(n: int, taps: torch.Tensor) -> torch.Tensor:
    """(n, n) M with (M @ x)[i] = sum_k taps[k] x[clamp(i + k - r, 0, n - 1)]: a 1-D blur, replicate borders.

    Why a matrix: a 97-tap single-channel convolution runs at a few GB/s in cuDNN (about 2 ms for the
    prior at 512x640 on an H100), while the same blur as a banded matrix product is a small GEMM. Built
    from shape arithmetic only, so exported graphs rebuild it for every input size.
    """
    taps = taps.float()
    r = taps.numel() // 2
    i = torch.arange(n, device=taps.device)
    offset = i[None, :] - i[:, None]  # column j - row i
    inside = torch.where(offset.abs() <= r, taps[(offset + r).clamp(0, 2 * r)], torch.zeros((), device=taps.device))
    cumulative = torch.cumsum(taps, 0)
    # taps that fall before column 0 (k < r - i) or after column n - 1 (k > n - 1 - i + r) land on the border
    below = torch.where(r - i - 1 >= 0, cumulative[(r - i - 1).clamp(0, 2 * r)], torch.zeros((), device=taps.device))
    above = torch.where(n - i + r <= 2 * r, 1.0 - cumulative[(n - 1 - i + r).clamp(0, 2 * r)],
                        torch.zeros((), device=taps.device))
    first, last = (i == 0).float(), (i == n - 1).float()
    return inside + below[:, None] * first[None, :] + above[:, None] * last[None, :]


class TwoScaleFusion(nn.Module):
    """``prior(vis, ir)`` for (B, 1, H, W) images in [0, 1]; returns (B, 1, H, W) in the input dtype."""

    def __init__(self, base_sigma: float = BASE_SIGMA, activity_sigma: float = ACTIVITY_SIGMA,
                 mask_sigma: float = MASK_SIGMA, detail_gain: float = DETAIL_GAIN) -> None:
        super().__init__()
        self.detail_gain = float(detail_gain)
        # Widths, not tap buffers: a model cast to half precision must not round the taps.
        self.sigmas = {"base": float(base_sigma), "activity": float(activity_sigma), "mask": float(mask_sigma)}
        # Not a state_dict entry (checkpoints stay plain); small integers, exact in any float dtype.
        self.register_buffer("sobel", sobel_kernels(), persistent=False)
        self._matrices: dict[tuple, torch.Tensor] = {}

    def _matrix(self, n: int, which: str, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """``blur_matrix`` of the ``which`` blur in ``dtype``, kept per size, device and dtype. Traced,
        exported or compiled code builds it in its graph; a CUDA-graph capture uses a kept one (made by the
        warm-up calls) or builds one inside the graph without keeping it (it would live in the graph's
        private memory)."""
        key = (which, n, device, dtype)
        traced = is_tracing()
        if not traced and key in self._matrices:
            return self._matrices[key]
        matrix = blur_matrix(n, gaussian_taps(self.sigmas[which], device)).to(dtype)
        if not traced and not is_capturing():
            if len(self._matrices) > 48:  # a stream of ever new sizes: keep memory bounded
                self._matrices.clear()
            self._matrices[key] = matrix
        return matrix

    def blur(self, x: torch.Tensor, which: str, operands: torch.dtype = torch.float32) -> torch.Tensor:
        """Separable Gaussian blur ``which`` (base, activity, mask) of (B, C, H, W) float32, replicate
        borders, as two matrix products; returns float32.

        ``operands=torch.float16``: the products take float16 operands (float32 accumulation), which
        runs them on tensor cores, several times faster than float32 products on a GPU. The maps it
        blurs are bounded (images in [0, 1], a 0/1 mask), so nothing overflows;
        the rounding is about 1e-4 relative."""
        rows = self._matrix(x.shape[-2], which, x.device, operands)
        cols = self._matrix(x.shape[-1], which, x.device, operands)
        return (rows @ x.to(operands) @ cols.transpose(0, 1)).float()

    def _activity(self, x: torch.Tensor) -> torch.Tensor:
        """Blurred Sobel energy, always from float32 products: the mask compares two of these, and where
        the sources are about as active, a rounding error would flip which detail is taken."""
        g = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), self.sobel.float())
        return self.blur((g * g).sum(1, keepdim=True), "activity")

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        dtype = vis.dtype
        # half-precision inputs: float16 products for base and mask (their rounding is below the output's)
        operands = torch.float16 if dtype in (torch.float16, torch.bfloat16) else torch.float32
        with torch.autocast(device_type=vis.device.type, enabled=False):
            both = torch.cat([vis, ir]).float()  # one pass over the two sources
            base = self.blur(both, "base", operands)
            detail = both - base
            activity = self._activity(both)
            batch = vis.shape[0]
            choose_vis = (activity[:batch] > activity[batch:]).float()
            w = self.blur(choose_vis, "mask", operands)
            base_vis, base_ir = base[:batch], base[batch:]
            level = 0.5 * (base_vis.mean((2, 3), keepdim=True) + base_ir.mean((2, 3), keepdim=True))
            detail_ir = detail[batch:]
            fused_detail = detail_ir + w * (detail[:batch] - detail_ir)
            prior = base_vis + base_ir - level + self.detail_gain * fused_detail
        return prior.to(dtype)
