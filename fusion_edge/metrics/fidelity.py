"""PSNR of the fused image against the two sources."""

from __future__ import annotations

import numpy as np

from fusion_edge.metrics.inputs import as_triplet


def psnr(fused: np.ndarray, ir: np.ndarray, vis: np.ndarray, peak: float = 255.0) -> float:
    """PSNR = 10 log10(peak^2 / MSE), MSE = (MSE(F, IR) + MSE(F, VIS)) / 2, in dB, peak 255.

    The mean of the two squared errors, as the MATLAB fusion-metric code. CDDFuse's evaluator uses
    max(F)^2 as the peak instead. When F equals both sources, MSE is 0 and PSNR is ``inf``.
    """
    f, a, b = as_triplet(fused, ir, vis)
    mse = (np.mean((f - a) ** 2) + np.mean((f - b) ** 2)) / 2.0
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(peak * peak / mse))
