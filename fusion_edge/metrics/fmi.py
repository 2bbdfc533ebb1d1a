"""FMI, the feature mutual information of Haghighat et al. (2011), fast version (Haghighat and Razian, 2014).

Follows the MATLAB ``analysis_fmi(ima, imb, imf, feature, w)`` of the widely used fusion-metric code,
vectorised over all windows instead of two nested loops per pixel.
"""

from __future__ import annotations

import cv2
import numpy as np

from fusion_edge.metrics.inputs import as_triplet

FEATURES = ("edge", "none")
_CHUNK = 16384  # windows per vectorised batch (a few tens of MB of temporaries for w = 3)
_SOBEL_X = np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], dtype=np.float64)  # MATLAB's fspecial('sobel')'


def sobel_edges(image: np.ndarray) -> np.ndarray:
    """MATLAB's default ``edge(I)`` of an image on [0, 1] (im2double): Sobel, automatic threshold,
    thinning; a boolean edge map.

    b = Gx^2 + Gy^2 (Sobel, replicated borders); a pixel is an edge when b > 4 mean(b) and b is a
    local maximum across the dominant gradient direction: horizontally where |Gx| >= |Gy|
    (b[r, c-1] <= b[r, c] > b[r, c+1]), vertically where |Gy| >= |Gx|; neighbours outside the
    image always pass. MATLAB's kernel is divided by 8; here the tolerance is scaled instead.
    """
    gx = cv2.filter2D(image, cv2.CV_64F, _SOBEL_X, borderType=cv2.BORDER_REPLICATE)
    gy = cv2.filter2D(image, cv2.CV_64F, _SOBEL_X.T, borderType=cv2.BORDER_REPLICATE)
    b = gx * gx + gy * gy
    cutoff = 4.0 * b.mean()
    ax, ay = np.abs(gx), np.abs(gy)
    tol = 100 * np.finfo(np.float64).eps * 8.0
    inf = np.full((b.shape[0], 1), -np.inf)
    left = np.concatenate([inf, b[:, :-1]], axis=1)
    right = np.concatenate([b[:, 1:], inf], axis=1)
    infr = np.full((1, b.shape[1]), -np.inf)
    up = np.concatenate([infr, b[:-1]], axis=0)
    down = np.concatenate([b[1:], infr], axis=0)
    horizontal = (ax >= ay - tol) & (left <= b) & (b > right)
    vertical = (ay >= ax - tol) & (up <= b) & (b > down)
    return (b > cutoff) & (horizontal | vertical)


def _features(image: np.ndarray, feature: str) -> np.ndarray:
    """The feature map of a [0, 1] image: 'edge' = sobel_edges as 0/1, 'none' = the pixels."""
    if feature == "none":
        return image
    return sobel_edges(image).astype(np.float64)


def _windows(image: np.ndarray, w: int) -> np.ndarray:
    """Every w x w window, flattened column by column (MATLAB's x(:)): shape (H-w+1, W-w+1, w*w)."""
    view = np.lib.stride_tricks.sliding_window_view(image, (w, w))
    return np.swapaxes(view, -1, -2).reshape(view.shape[0], view.shape[1], w * w)


def _normalise(x: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1] per window; a flat window becomes all ones."""
    lo, hi = x.min(axis=1, keepdims=True), x.max(axis=1, keepdims=True)
    span = hi - lo
    flat = span == 0
    return np.where(flat, 1.0, (x - lo) / np.where(flat, 1.0, span))


def _plogp(p: np.ndarray) -> np.ndarray:
    """-p log2 |p| where p != 0, else 0 (MATLAB's real(-p log2 p) also for small negative p)."""
    out = np.zeros_like(p)
    nz = p != 0
    out[nz] = -p[nz] * np.log2(np.abs(p[nz]))
    return out


def _window_fmi(src: np.ndarray, fus: np.ndarray) -> np.ndarray:
    """Normalised MI between each pair of windows (already min-max normalised), shape (N,)."""
    l = src.shape[1]
    p_s = src / src.sum(axis=1, keepdims=True)
    p_f = fus / fus.sum(axis=1, keepdims=True)
    cdf_s, cdf_f = np.cumsum(p_s, axis=1), np.cumsum(p_f, axis=1)

    # Pearson correlation of the two marginal PDFs (0 when the raw sum of products is 0).
    d_s, d_f = p_s - p_s.mean(axis=1, keepdims=True), p_f - p_f.mean(axis=1, keepdims=True)
    prod = np.sum(d_s * d_f, axis=1)
    denom = np.sqrt(np.sum(d_s * d_s, axis=1) * np.sum(d_f * d_f, axis=1))
    c = np.where(prod == 0, 0.0, prod / np.where(denom == 0, 1.0, denom))

    # Population standard deviations of the PDFs over positions 1..l.
    i = np.arange(1, l + 1, dtype=np.float64)
    sd_s = np.sqrt(np.maximum(p_s @ (i * i) - (p_s @ i) ** 2, 0.0))
    sd_f = np.sqrt(np.maximum(p_f @ (i * i) - (p_f @ i) ** 2, 0.0))

    # Joint PDF by the simplified Nelsen method: a mix of the Frechet bound (upper when c >= 0,
    # lower when c < 0) and independence, matched to the correlation c.
    fi, sj = cdf_f[:, :, None], cdf_s[:, None, :]
    positive = c >= 0
    bound = np.where(positive[:, None, None], np.minimum(fi, sj), np.maximum(fi + sj - 1.0, 0.0))
    independent = fi * sj
    cov_bound = np.sum(bound - independent, axis=(1, 2))
    degenerate = (sd_s == 0) | (sd_f == 0) | (positive & (c == 0))
    corr_bound = cov_bound / np.where(degenerate, 1.0, sd_f * sd_s)
    mix = np.where(degenerate, 0.0, c / np.where(degenerate | (corr_bound == 0), 1.0, corr_bound))
    # Probability mass of each cell of the bound copula (differences of the 2-D CDF).
    padded = np.zeros((bound.shape[0], l + 1, l + 1))
    padded[:, 1:, 1:] = bound
    cell = padded[:, 1:, 1:] - padded[:, :-1, 1:] - padded[:, 1:, :-1] + padded[:, :-1, :-1]
    joint = mix[:, None, None] * cell + (1.0 - mix[:, None, None]) * (p_f[:, :, None] * p_s[:, None, :])

    h_joint = _plogp(joint).sum(axis=(1, 2))
    h_s, h_f = _plogp(p_s).sum(axis=1), _plogp(p_f).sum(axis=1)
    mi = h_s + h_f - h_joint
    return np.where(mi == 0, 0.0, 2.0 * mi / np.where(h_s + h_f == 0, 1.0, h_s + h_f))


def fmi(fused: np.ndarray, ir: np.ndarray, vis: np.ndarray, feature: str = "edge", w: int = 3) -> float:
    """FMI = mean over w x w windows of (NFMI(IR, F) + NFMI(VIS, F)) / 2, range [0, 1].

    NFMI(X, F) = 2 MI / (H(X) + H(F)) in bits: each window of the feature map, min-max normalised,
    is read as a probability distribution over its w*w positions, the joint distribution is built
    by the Nelsen method, and identical windows score 1. Only windows that fit ('valid') count.

    The default is what the fusion-metric code computes for the column it calls "FMI_pixel":
    ``analysis_fmi(ir, vis, fused)`` without a feature argument, which falls back to
    feature = 'edge' (MATLAB's ``edge``, see ``sobel_edges``) and w = 3, on images scaled to
    [0, 1]. ``feature="none"`` uses the raw pixels instead (Haghighat's documented default; values
    are much lower, 0.44-0.57 for the baselines on tno21). The reference's quirk of testing the
    second source's window against the fused window as normalised by the first comparison is kept.
    """
    if feature not in FEATURES:
        raise ValueError(f"unknown FMI feature {feature!r}; choose one of: {', '.join(FEATURES)}")
    if w < 2:
        raise ValueError(f"FMI window must be at least 2, got {w}")
    f, a, b = as_triplet(fused, ir, vis)
    if min(f.shape) < w:
        raise ValueError(f"FMI needs images of at least {w}x{w} pixels, got {f.shape[1]}x{f.shape[0]}")
    fa, fb, ff = (_features(x / 255.0, feature) for x in (a, b, f))
    wa, wb, wf = (_windows(x, w).reshape(-1, w * w) for x in (fa, fb, ff))
    total = 0.0
    for start in range(0, wa.shape[0], _CHUNK):
        sa, sb, sf = (x[start : start + _CHUNK] for x in (wa, wb, wf))
        same_a = np.all(sa == sf, axis=1)
        nf = _normalise(sf)
        # The reference compares the second source with the fused window as left by the first
        # comparison: raw if that was a perfect match, min-max normalised otherwise.
        same_b = np.all(sb == np.where(same_a[:, None], sf, nf), axis=1)
        score = np.count_nonzero(same_a) + np.count_nonzero(same_b)
        for src, same in ((sa, same_a), (sb, same_b)):
            todo = ~same
            if np.any(todo):
                score += float(np.sum(_window_fmi(_normalise(src[todo]), nf[todo])))
        total += score / 2.0
    return total / wa.shape[0]
