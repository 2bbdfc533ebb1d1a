"""Qabf, the gradient-based edge-preservation measure of Xydeas and Petrovic (2000)."""

from __future__ import annotations

import cv2
import numpy as np

from fusion_edge.metrics.inputs import as_triplet

# Sobel kernels, applied with zero padding ('same' size) as CDDFuse's evaluator does.
_SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=np.float64)
_SOBEL_Y = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], dtype=np.float64)

# Sigmoid constants of the original paper and of every common implementation.
_TG, _KG, _DG = 0.9994, -15.0, 0.5
_TA, _KA, _DA = 0.9879, -22.0, 0.8


def _strength_and_angle(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sobel magnitude g and orientation a = arctan(Sy / Sx) (pi/2 where Sx = 0), zero-padded borders.

    The evaluator convolves (flipped kernels); correlating instead flips the sign of both
    responses, which changes neither g nor Sy / Sx.
    """
    sx = cv2.filter2D(image, cv2.CV_64F, _SOBEL_X, borderType=cv2.BORDER_CONSTANT)
    sy = cv2.filter2D(image, cv2.CV_64F, _SOBEL_Y, borderType=cv2.BORDER_CONSTANT)
    g = np.sqrt(sx * sx + sy * sy)
    a = np.full_like(image, np.pi / 2)
    nz = sx != 0
    a[nz] = np.arctan(sy[nz] / sx[nz])
    return g, a


def _preservation(g_src: np.ndarray, a_src: np.ndarray, g_f: np.ndarray, a_f: np.ndarray) -> np.ndarray:
    """Q^{XF} per pixel: sigmoid(relative strength) * sigmoid(relative orientation)."""
    rel = np.zeros_like(g_src)
    gt, lt, eq = g_src > g_f, g_src < g_f, g_src == g_f
    rel[gt] = g_f[gt] / g_src[gt]
    rel[lt] = g_src[lt] / g_f[lt]
    # Where the strengths are equal the reference code takes g_F itself, not 1 (a quirk every
    # common implementation kept). It only matters where g_F < ~0.8, e.g. 0 on flat areas.
    rel[eq] = g_f[eq]
    orient = 1.0 - np.abs(a_src - a_f) / (np.pi / 2)
    q_g = _TG / (1.0 + np.exp(_KG * (rel - _DG)))
    q_a = _TA / (1.0 + np.exp(_KA * (orient - _DA)))
    return q_g * q_a


def qabf(fused: np.ndarray, ir: np.ndarray, vis: np.ndarray) -> float:
    """Qabf = sum(Q^{AF} g_A + Q^{BF} g_B) / sum(g_A + g_B), range [0, 1], A = IR, B = VIS.

    As CDDFuse's evaluator: Sobel on grey 0..255 with zero padding, orientation from arctan (not
    arctan2, no wrap-around), weights g_A and g_B (exponent L = 1). A fused image equal to one source
    scores highly, which is why Qabf should be read together with VIF and SCD.
    """
    f, a, b = as_triplet(fused, ir, vis)
    g_a, ang_a = _strength_and_angle(a)
    g_b, ang_b = _strength_and_angle(b)
    g_f, ang_f = _strength_and_angle(f)
    denom = float(np.sum(g_a + g_b))
    if denom == 0.0:
        return 0.0
    num = np.sum(_preservation(g_a, ang_a, g_f, ang_f) * g_a + _preservation(g_b, ang_b, g_f, ang_f) * g_b)
    return float(num / denom)
