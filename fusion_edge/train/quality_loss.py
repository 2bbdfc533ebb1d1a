"""Differentiable Qabf, VIF and SCD: the fusion metrics the field reports, as a training term.

The reference loss (SSIM, intensity and gradient against max-style targets) is minimised by an image
that no evaluation metric rewards most: in our runs it trades VIF and Qabf for SCD and MS-SSIM, and a
network started at the per-pixel maximum drifts away from the maximum's VIF and Qabf. The ``quality``
term scores each fused crop with the same three measures ``fusion_edge.metrics`` evaluates, in
torch, so the gradient follows them directly:

    L_quality = 1 - (w_Q Qabf + w_V VIF / 2 + w_S SCD / 2) / (w_Q + w_V + w_S)   (per image, batch mean)

with (w_Q, w_V, w_S) = (1, 1, 1) unless given (``--quality-weights``).

Each measure follows its numpy counterpart (CDDFuse's conventions, grey 0..255; tests hold them to
it on real pairs) with two smoothings where the exact formula has no gradient: the Sobel magnitude
is sqrt(Sx^2 + Sy^2 + eps), and Qabf's relative strength is min(g_src, g_F) / max(g_src, g_F)
everywhere (the numpy code takes g_F at exact ties, a measure-zero quirk). Everything is
elementwise or a convolution: no host synchronisation, so the term lives inside a CUDA graph.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from fusion_edge.ops.sobel import sobel_kernels

# Qabf sigmoid constants (Xydeas and Petrovic), as fusion_edge.metrics.gradient.
_TG, _KG, _DG = 0.9994, 15.0, 0.5
_TA, _KA, _DA = 0.9879, 22.0, 0.8
_VIF_SIGMA_NSQ = 2.0
_VIF_EPS = 1e-10
_SOBEL_EPS = 1e-6
# The metrics' scale: grey levels 0..255 (VIF's noise variance and Qabf's ratios assume it).
GREY_SCALE = 255.0
# VIF's coarsest scale filters 'valid' with a 3-tap window after three 2x reductions.
VIF_MIN_SIDE = 41

# (w_Qabf, w_VIF, w_SCD) of the quality term
QUALITY_WEIGHTS = (1.0, 1.0, 1.0)

_CONSTANTS: dict[tuple, torch.Tensor] = {}


def _sobel_kernel(device, dtype) -> torch.Tensor:
    key = ("sobel", str(device), dtype)
    if key not in _CONSTANTS:
        _CONSTANTS[key] = sobel_kernels().to(device=device, dtype=dtype)
    return _CONSTANTS[key]


def _vif_window(n: int, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The separable factors of MATLAB's fspecial('gaussian', n, n / 5) as (1,1,n,1) and (1,1,1,n)."""
    key = ("vif", n, str(device), dtype)
    if key not in _CONSTANTS:
        x = torch.arange(n, dtype=torch.float64) - (n - 1) / 2.0
        k = torch.exp(-(x * x) / (2.0 * (n / 5.0) ** 2))
        k = (k / k.sum()).to(device=device, dtype=dtype)
        _CONSTANTS[key] = k
    k = _CONSTANTS[key]
    return k.view(1, 1, n, 1), k.view(1, 1, 1, n)


def _strength_and_angle(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sobel magnitude (smoothed at 0) and arctan(Sy / Sx) (pi / 2 where Sx = 0), zero padding."""
    s = F.conv2d(x, _sobel_kernel(x.device, x.dtype), padding=1)
    sx, sy = s[:, :1], s[:, 1:]
    g = torch.sqrt(sx * sx + sy * sy + _SOBEL_EPS)
    zero = sx == 0
    angle = torch.atan(sy / torch.where(zero, torch.ones_like(sx), sx))
    return g, torch.where(zero, torch.full_like(angle, math.pi / 2), angle)


def qabf(fused: torch.Tensor, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
    """Qabf per image of (B, 1, H, W) grey 0..255: sum(Q^AF g_A + Q^BF g_B) / sum(g_A + g_B)."""
    g_f, a_f = _strength_and_angle(fused)
    total = torch.zeros(fused.shape[0], device=fused.device, dtype=fused.dtype)
    weight = torch.zeros_like(total)
    for src in (ir, vis):
        g_s, a_s = _strength_and_angle(src)
        rel = torch.minimum(g_s, g_f) / torch.maximum(g_s, g_f)
        orient = 1.0 - (a_s - a_f).abs() / (math.pi / 2)
        q = _TG * torch.sigmoid(_KG * (rel - _DG)) * _TA * torch.sigmoid(_KA * (orient - _DA))
        total = total + (q * g_s).sum((1, 2, 3))
        weight = weight + g_s.sum((1, 2, 3))
    return total / weight


def _filter_valid(x: torch.Tensor, n: int) -> torch.Tensor:
    col, row = _vif_window(n, x.device, x.dtype)
    return F.conv2d(F.conv2d(x, col), row)


def vif_pair(ref: torch.Tensor, dist: torch.Tensor) -> torch.Tensor:
    """VIF(ref -> dist) per image, pixel domain, 4 scales: ``fusion_edge.metrics.vif.vif_pair``."""
    x, y = ref, dist
    num = den = torch.zeros(ref.shape[0], device=ref.device, dtype=ref.dtype)
    for scale in range(1, 5):
        n = 2 ** (4 - scale + 1) + 1
        if scale > 1:
            x = _filter_valid(x, n)[..., ::2, ::2]
            y = _filter_valid(y, n)[..., ::2, ::2]
        mu1, mu2 = _filter_valid(x, n), _filter_valid(y, n)
        s1 = (_filter_valid(x * x, n) - mu1 * mu1).clamp_min(0)
        s2 = (_filter_valid(y * y, n) - mu2 * mu2).clamp_min(0)
        s12 = _filter_valid(x * y, n) - mu1 * mu2
        g = s12 / (s1 + _VIF_EPS)
        sv = s2 - g * s12
        flat_ref = s1 < _VIF_EPS
        g = torch.where(flat_ref, torch.zeros_like(g), g)
        sv = torch.where(flat_ref, s2, sv)
        s1 = torch.where(flat_ref, torch.zeros_like(s1), s1)
        flat_dist = s2 < _VIF_EPS
        g = torch.where(flat_dist, torch.zeros_like(g), g)
        sv = torch.where(flat_dist, torch.zeros_like(sv), sv)
        negative = g < 0
        sv = torch.where(negative, s2, sv)
        g = torch.where(negative, torch.zeros_like(g), g)
        sv = sv.clamp_min(_VIF_EPS)
        num = num + torch.log10(1.0 + g * g * s1 / (sv + _VIF_SIGMA_NSQ)).sum((1, 2, 3))
        den = den + torch.log10(1.0 + s1 / _VIF_SIGMA_NSQ).sum((1, 2, 3))
    return num / den.clamp_min(_VIF_EPS)


def vif(fused: torch.Tensor, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
    """VIF(IR -> F) + VIF(VIS -> F) per image (summed over the sources, CDDFuse's convention)."""
    return vif_pair(ir, fused) + vif_pair(vis, fused)


def _correlation(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    dx = x - x.mean((1, 2, 3), keepdim=True)
    dy = y - y.mean((1, 2, 3), keepdim=True)
    return (dx * dy).sum((1, 2, 3)) / torch.sqrt((dx * dx).sum((1, 2, 3)) * (dy * dy).sum((1, 2, 3)) + 1e-12)


def scd(fused: torch.Tensor, ir: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
    """SCD = corr(F - VIS, IR) + corr(F - IR, VIS) per image."""
    return _correlation(fused - vis, ir) + _correlation(fused - ir, vis)


def checked_weights(weights: Sequence[float], lengths: tuple[int, ...], what: str) -> tuple[float, ...]:
    """Weights as floats: ``lengths`` of them, finite and >= 0, not all 0; else a ValueError naming ``what``."""
    values = tuple(float(w) for w in weights)
    if len(values) not in lengths or any(not math.isfinite(w) or w < 0 for w in values) or not any(values):
        raise ValueError(f"{what}, not all 0; got {list(weights)}")
    return values


def check_quality_weights(weights: Sequence[float]) -> tuple[float, float, float]:
    """(w_Qabf, w_VIF, w_SCD): three finite numbers >= 0, not all 0."""
    return checked_weights(weights, (3,), "quality weights must be three finite numbers >= 0 (Qabf, VIF, SCD)")


def quality_loss(fused: torch.Tensor, vis: torch.Tensor, ir: torch.Tensor,
                 weights: Sequence[float] = QUALITY_WEIGHTS) -> torch.Tensor:
    """1 - (w_Q Qabf + w_V VIF / 2 + w_S SCD / 2) / sum(w), batch mean; images (B, 1, H, W) in [0, 1], at
    least 41x41. VIF and SCD are halved so each measure spans about [0, 1] (VIF sums two sources, SCD
    two correlations).
    """
    if fused.dim() != 4 or fused.shape[1] != 1 or min(fused.shape[-2:]) < VIF_MIN_SIDE:
        raise ValueError(f"the quality term needs (B, 1, H, W) crops of at least {VIF_MIN_SIDE}x{VIF_MIN_SIDE} "
                         f"(VIF's four scales), got {tuple(fused.shape)}")
    w_q, w_v, w_s = check_quality_weights(weights)
    f, v, i = fused * GREY_SCALE, vis * GREY_SCALE, ir * GREY_SCALE
    score = w_q * qabf(f, i, v)
    if w_v:
        score = score + w_v * vif(f, i, v) / 2
    if w_s:
        score = score + w_s * scd(f, i, v) / 2
    return 1.0 - score.mean() / (w_q + w_v + w_s)
