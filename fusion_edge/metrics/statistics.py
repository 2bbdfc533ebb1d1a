"""No-reference statistics of the fused image alone: EN, SD, SF and AG.

Conventions of CDDFuse's Python evaluator (``utils/Evaluator.py``), on grey values 0..255.
Each takes the fused image only; the ``(fused, ir, vis)`` wrappers live in the metric registry.
"""

from __future__ import annotations

import numpy as np

from fusion_edge.metrics.inputs import as_grey, to_uint8_levels


def entropy(image: np.ndarray) -> float:
    """EN, Shannon entropy of the 256-level grey histogram, in bits.

    EN = -sum_i p_i log2 p_i over the grey levels (values rounded to integers first).
    A constant image has EN 0; an image with two equally frequent levels has EN 1.
    """
    levels = to_uint8_levels(as_grey(image))
    p = np.bincount(levels.ravel(), minlength=256) / levels.size
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def standard_deviation(image: np.ndarray) -> float:
    """SD, the population standard deviation of the grey values (contrast), 0..255 scale."""
    return float(np.std(as_grey(image)))


def spatial_frequency(image: np.ndarray) -> float:
    """SF = sqrt(RF^2 + CF^2): RF^2 = mean (I[i, j+1] - I[i, j])^2, CF^2 = mean (I[i+1, j] - I[i, j])^2.

    Each mean is over the forward differences that exist (W-1 per row, H-1 per column).
    """
    g = as_grey(image)
    rf2 = np.mean(np.diff(g, axis=1) ** 2)
    cf2 = np.mean(np.diff(g, axis=0) ** 2)
    return float(np.sqrt(rf2 + cf2))


def average_gradient(image: np.ndarray) -> float:
    """AG = mean sqrt((Gx^2 + Gy^2) / 2) over all pixels.

    Gx, Gy: central differences (I[j+1] - I[j-1]) / 2 inside, one-sided differences on the border
    (numpy.gradient's rule), as in CDDFuse's evaluator.
    """
    g = as_grey(image)
    gy, gx = np.gradient(g)
    return float(np.mean(np.sqrt((gx**2 + gy**2) / 2.0)))
