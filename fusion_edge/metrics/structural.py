"""Structural similarity: SSIM (per source, summed) and the fusion MS-SSIM of the MATLAB metric code."""

from __future__ import annotations

import cv2
import numpy as np

from fusion_edge.metrics.inputs import as_pair, as_triplet, require_min_side

_EPS = np.finfo(np.float64).eps


# ----------------------------------------------------------------------------- SSIM
def ssim_index(x: np.ndarray, y: np.ndarray, data_range: float = 255.0, win_size: int = 7) -> float:
    """SSIM(x, y) with scikit-image's defaults: a uniform win_size x win_size window, sample
    covariances (N / (N - 1)), K1 = 0.01, K2 = 0.03, the mean over the map less a border of
    win_size // 2. SSIM(x, x) = 1.

    ``data_range`` is 255 for grey 0..255. CDDFuse's evaluator passes float images without a
    data range, which scikit-image 0.19 takes as 2 (the float dtype range -1..1); pass
    ``data_range=2`` to reproduce its numbers.
    """
    gx, gy = as_pair(x, y)
    if win_size < 3 or win_size % 2 == 0:
        raise ValueError(f"win_size must be odd and at least 3, got {win_size}")
    require_min_side(gx.shape, win_size, "SSIM")
    n = win_size * win_size
    cov_norm = n / (n - 1.0)

    def mean(z: np.ndarray) -> np.ndarray:
        return cv2.blur(z, (win_size, win_size), borderType=cv2.BORDER_REFLECT)

    ux, uy = mean(gx), mean(gy)
    vx = cov_norm * (mean(gx * gx) - ux * ux)
    vy = cov_norm * (mean(gy * gy) - uy * uy)
    vxy = cov_norm * (mean(gx * gy) - ux * uy)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    pad = (win_size - 1) // 2
    return float(s[pad : s.shape[0] - pad, pad : s.shape[1] - pad].mean())


def ssim(fused: np.ndarray, ir: np.ndarray, vis: np.ndarray, data_range: float = 255.0) -> float:
    """SSIM = SSIM(F, IR) + SSIM(F, VIS), summed over the two sources (CDDFuse's convention, range
    up to 2; the MATLAB code averages instead). See ``ssim_index`` for the window and constants.
    """
    f, a, b = as_triplet(fused, ir, vis)
    return ssim_index(f, a, data_range) + ssim_index(f, b, data_range)


# ----------------------------------------------------------------------------- MS-SSIM
# The MATLAB fusion-metric code's ``analysis_ms_ssim(imgSeq, fused)`` is the multi-exposure-fusion
# MS-SSIM of Ma, Zeng and Wang (MEF-SSIM, IEEE TIP 2015) with its defaults, below.
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001)  # normalised to sum 1 before use
MS_SSIM_K = 0.03
_WIN = 11  # box window for the patch statistics, Gaussian window (sigma 1.5) for the SSIM terms
_GAUSS = cv2.getGaussianKernel(_WIN, 1.5, cv2.CV_64F).ravel()


def _box_sum_valid(z: np.ndarray) -> np.ndarray:
    """Sums over every 11x11 window that fits ('valid'), from an integral image.

    For the integer (and, after 2x2 averaging, dyadic) values used here the sums are exact, so a
    flat window has exactly zero variance, as in the reference's per-pixel loop.
    """
    ii = np.zeros((z.shape[0] + 1, z.shape[1] + 1), dtype=np.float64)
    np.cumsum(np.cumsum(z, axis=0), axis=1, out=ii[1:, 1:])
    w = _WIN
    return ii[w:, w:] - ii[:-w, w:] - ii[w:, :-w] + ii[:-w, :-w]


def _gauss_valid(z: np.ndarray) -> np.ndarray:
    r = _WIN // 2
    out = cv2.sepFilter2D(z, cv2.CV_64F, _GAUSS, _GAUSS, borderType=cv2.BORDER_REFLECT)
    return out[r : z.shape[0] - r, r : z.shape[1] - r]


def _mef_ssim_scale(sources: list[np.ndarray], fused: np.ndarray) -> float:
    """One scale of MEF-SSIM: the mean quality map of the fused image against a reference patch
    built from the sources (the strongest source contrast, the consistent source structure).

    Per 11x11 patch position, with x_k the source patches and mu_k their means:
      c_k = ||x_k - mu_k|| + 0.001 (contrast), R = ||sum_k (x_k - mu_k)|| / sum_k ||x_k - mu_k||,
      p = min(tan(pi R / 2), 10), w_k = (c_k / 11)^p normalised over k,
      r = max_k c_k * s / ||s||, s = sum_k w_k (x_k - mu_k) / c_k,
      q = (2 cov(r, f) + C) / (var(r) + var(f) + C), C = (0.03 * 255)^2,
    the (co)variances Gaussian-weighted (11x11, sigma 1.5). All written in closed form on window
    sums instead of the reference's per-pixel loop.
    """
    n = float(_WIN * _WIN)
    k = len(sources)
    sums = [_box_sum_valid(x) for x in sources]
    # Centred cross-products P_kl = sum (x_k - mu_k)(x_l - mu_l) = (n sum x_k x_l - S_k S_l) / n.
    cross = {}
    for i in range(k):
        for j in range(i, k):
            cross[i, j] = (n * _box_sum_valid(sources[i] * sources[j]) - sums[i] * sums[j]) / n
    spread = [np.sqrt(np.maximum(cross[i, i], 0.0)) for i in range(k)]
    contrast = [s + 0.001 for s in spread]
    total_var = sum(cross[i, i] for i in range(k)) + 2.0 * sum(cross[i, j] for i in range(k) for j in range(i + 1, k))
    consistency = (np.sqrt(np.maximum(total_var, 0.0)) + _EPS) / (sum(spread) + _EPS)
    consistency[consistency > 1] = 1 - _EPS
    consistency[consistency < 0] = _EPS
    power = np.minimum(np.tan(np.pi / 2 * consistency), 10.0)
    weights = [(c / _WIN) ** power + _EPS for c in contrast]
    normaliser = sum(weights)
    coef = [w / normaliser / c for w, c in zip(weights, contrast)]
    max_contrast = np.maximum.reduce(contrast)

    norm2 = sum(coef[i] * coef[i] * cross[i, i] for i in range(k)) + 2.0 * sum(
        coef[i] * coef[j] * cross[i, j] for i in range(k) for j in range(i + 1, k)
    )
    scale = np.zeros_like(norm2)
    has_structure = norm2 > 0
    scale[has_structure] = max_contrast[has_structure] / np.sqrt(norm2[has_structure])

    g_mean = [_gauss_valid(x) for x in sources]
    g_f = _gauss_valid(fused)
    var_f = _gauss_valid(fused * fused) - g_f * g_f
    cov_rf = sum(coef[i] * (_gauss_valid(sources[i] * fused) - g_mean[i] * g_f) for i in range(k))
    var_r = np.zeros_like(var_f)
    for i in range(k):
        for j in range(i, k):
            cov = _gauss_valid(sources[i] * sources[j]) - g_mean[i] * g_mean[j]
            var_r += (1.0 if i == j else 2.0) * coef[i] * coef[j] * cov
    c = (MS_SSIM_K * 255.0) ** 2
    q = (2.0 * scale * cov_rf + c) / (scale * scale * var_r + var_f + c)
    return float(q.mean())


def _halve(z: np.ndarray) -> np.ndarray:
    """MATLAB's imfilter(z, ones(2)/4, 'symmetric') then z(1:2:end, 1:2:end): 2x2 block means,
    the last row/column repeated when the size is odd."""
    if z.shape[0] % 2:
        z = np.concatenate([z, z[-1:]], axis=0)
    if z.shape[1] % 2:
        z = np.concatenate([z, z[:, -1:]], axis=1)
    return (z[0::2, 0::2] + z[1::2, 0::2] + z[0::2, 1::2] + z[1::2, 1::2]) / 4.0


def ms_ssim(fused: np.ndarray, ir: np.ndarray, vis: np.ndarray) -> float:
    """MS-SSIM of the MATLAB fusion-metric code: MEF-SSIM over 3 scales, weights (0.0448, 0.2856,
    0.3001) normalised to sum 1, result prod_s Q_s^w_s, range up to 1, grey 0..255.

    Both sources form one reference (see ``_mef_ssim_scale``), so it is symmetric in the sources.
    Scales are 2x2 block means. Images must be at least 44x44 (11 pixels at the coarsest scale).
    A negative scale score (anti-correlated structure) is taken as 0.
    """
    f, a, b = as_triplet(fused, ir, vis)
    levels = len(MS_SSIM_WEIGHTS)
    require_min_side(f.shape, _WIN * 2 ** (levels - 1), "MS-SSIM")
    weights = np.array(MS_SSIM_WEIGHTS) / sum(MS_SSIM_WEIGHTS)
    sources = [a, b]
    scores = []
    for level in range(levels):
        if level:
            sources, f = [_halve(x) for x in sources], _halve(f)
        scores.append(_mef_ssim_scale(sources, f))
    return float(np.prod(np.maximum(scores, 0.0) ** weights))
