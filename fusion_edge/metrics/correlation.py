"""SCD, the sum of the correlations of differences (Aslantas and Bendes, 2015)."""

from __future__ import annotations

import numpy as np

from fusion_edge.metrics.inputs import as_triplet


def correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of two arrays; 0 when either is constant (no variation to correlate)."""
    dx, dy = x - x.mean(), y - y.mean()
    denom = np.sqrt(np.sum(dx * dx) * np.sum(dy * dy))
    if denom == 0.0:
        return 0.0
    return float(np.sum(dx * dy) / denom)


def scd(fused: np.ndarray, ir: np.ndarray, vis: np.ndarray) -> float:
    """SCD = corr(F - VIS, IR) + corr(F - IR, VIS), range [-2, 2], as CDDFuse's evaluator.

    F - VIS is what the fused image took from the infrared image, and vice versa. When a difference
    image is constant (the fused image *is* a source) its correlation counts as 0, where CDDFuse's
    evaluator returns NaN.
    """
    f, a, b = as_triplet(fused, ir, vis)
    return correlation(f - b, a) + correlation(f - a, b)
