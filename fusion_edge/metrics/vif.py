"""VIF for fusion: the pixel-domain visual information fidelity of Sheikh and Bovik, per source."""

from __future__ import annotations

import cv2
import numpy as np

from fusion_edge.metrics.inputs import as_pair, as_triplet, require_min_side

_SIGMA_NSQ = 2.0  # the HVS noise variance of the pixel-domain VIF
_EPS = 1e-10
# Four scales; below 41 pixels the coarsest scale's 'valid' filtering leaves nothing.
MIN_SIDE = 41


def _gaussian_1d(n: int) -> np.ndarray:
    """The normalised 1-D factor of MATLAB's fspecial('gaussian', n, n / 5) (which is separable)."""
    x = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
    k = np.exp(-(x * x) / (2.0 * (n / 5.0) ** 2))
    return k / k.sum()


def _filter_valid(image: np.ndarray, k: np.ndarray) -> np.ndarray:
    r = len(k) // 2
    out = cv2.sepFilter2D(image, cv2.CV_64F, k, k, borderType=cv2.BORDER_REFLECT)
    return out[r : image.shape[0] - r, r : image.shape[1] - r]


def vif_pair(ref: np.ndarray, dist: np.ndarray) -> float:
    """VIF(ref -> dist), pixel domain, 4 scales (Gaussian windows 17, 9, 5, 3 with sigma N/5, 'valid').

    VIF = sum_scales sum log10(1 + g^2 s_ref^2 / (s_v^2 + 2)) / sum_scales sum log10(1 + s_ref^2 / 2),
    with the eps guards of the reference code. Equals 1 when dist is ref; NaN (no texture at all)
    gives 1, as in the reference.
    """
    x, y = as_pair(ref, dist, ("ref", "dist"))
    require_min_side(x.shape, MIN_SIDE, "VIF")
    num = den = 0.0
    for scale in range(1, 5):
        k = _gaussian_1d(2 ** (4 - scale + 1) + 1)
        if scale > 1:
            x = _filter_valid(x, k)[::2, ::2]
            y = _filter_valid(y, k)[::2, ::2]
        mu1, mu2 = _filter_valid(x, k), _filter_valid(y, k)
        s1 = _filter_valid(x * x, k) - mu1 * mu1
        s2 = _filter_valid(y * y, k) - mu2 * mu2
        s12 = _filter_valid(x * y, k) - mu1 * mu2
        s1[s1 < 0] = 0.0
        s2[s2 < 0] = 0.0
        g = s12 / (s1 + _EPS)
        sv = s2 - g * s12
        flat_ref = s1 < _EPS
        g[flat_ref] = 0.0
        sv[flat_ref] = s2[flat_ref]
        s1[flat_ref] = 0.0
        flat_dist = s2 < _EPS
        g[flat_dist] = 0.0
        sv[flat_dist] = 0.0
        negative = g < 0
        sv[negative] = s2[negative]
        g[negative] = 0.0
        sv[sv <= _EPS] = _EPS
        num += float(np.sum(np.log10(1.0 + g * g * s1 / (sv + _SIGMA_NSQ))))
        den += float(np.sum(np.log10(1.0 + s1 / _SIGMA_NSQ)))
    if den == 0.0:
        return 1.0 if num == 0.0 else float("inf")
    return num / den


def vif(fused: np.ndarray, ir: np.ndarray, vis: np.ndarray) -> float:
    """VIF = VIF(IR -> F) + VIF(VIS -> F), summed over the two sources (CDDFuse's ``VIFF``).

    Grey 0..255. Some papers average the two instead (half this value). Images must be at
    least 41x41.
    """
    f, a, b = as_triplet(fused, ir, vis)
    return vif_pair(a, f) + vif_pair(b, f)
