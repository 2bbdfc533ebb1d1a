"""Classical reference fusions for the metric tables: average, per-pixel maximum, Laplacian pyramid.

They show what a learned model must beat: each metric rewards something a trivial rule already
does well (the maximum keeps the brighter thermal targets, the average keeps both sources' content,
the pyramid keeps the strongest detail at every scale). numpy + OpenCV only.

Every function takes two grey images of one size and dtype (uint8, uint16 or float) and returns a
float64 image on the same scale, not rounded, so that metrics see the exact fusion; pass
``keep_dtype=True`` for an image of the input dtype (rounded and clipped) to save.
"""

from __future__ import annotations

import cv2
import numpy as np


def fuse_average(ir: np.ndarray, vis: np.ndarray, keep_dtype: bool = False) -> np.ndarray:
    """(IR + VIS) / 2 per pixel."""
    a, b, dtype = _check(ir, vis)
    return _finish(0.5 * (a + b), dtype, keep_dtype)


def fuse_max(ir: np.ndarray, vis: np.ndarray, keep_dtype: bool = False) -> np.ndarray:
    """max(IR, VIS) per pixel."""
    a, b, dtype = _check(ir, vis)
    return _finish(np.maximum(a, b), dtype, keep_dtype)


def max_pyramid_levels(shape: tuple[int, int]) -> int:
    """The most pyramid levels an image of this size supports (its coarsest level at least 2 px)."""
    return max(int(np.floor(np.log2(min(shape)))), 1)


def fuse_laplacian_pyramid(ir: np.ndarray, vis: np.ndarray, levels: int = 4, keep_dtype: bool = False) -> np.ndarray:
    """Laplacian-pyramid fusion (Burt and Adelson): at each of ``levels`` detail levels keep the
    coefficient of larger magnitude (choose-max), average the two coarsest (base) images, rebuild.

    OpenCV's 5x5 Gaussian pyrDown/pyrUp. The result is clipped to the range the two sources span,
    since the rebuild can overshoot at strong edges.
    """
    a, b, dtype = _check(ir, vis)
    most = max_pyramid_levels(a.shape)
    if not isinstance(levels, (int, np.integer)) or levels < 1:
        raise ValueError(f"levels must be a positive integer, got {levels!r}")
    if levels > most:
        raise ValueError(f"levels={levels} is too many for a {a.shape[1]}x{a.shape[0]} image (at most {most})")
    detail_a, base_a = _laplacian_pyramid(a, levels)
    detail_b, base_b = _laplacian_pyramid(b, levels)
    fused = 0.5 * (base_a + base_b)
    for da, db in zip(reversed(detail_a), reversed(detail_b)):
        detail = np.where(np.abs(da) >= np.abs(db), da, db)
        fused = cv2.pyrUp(fused, dstsize=(detail.shape[1], detail.shape[0])) + detail
    lo, hi = min(a.min(), b.min()), max(a.max(), b.max())
    return _finish(np.clip(fused, lo, hi), dtype, keep_dtype)


BASELINES = {
    "average": fuse_average,
    "max": fuse_max,
    "laplacian pyramid": fuse_laplacian_pyramid,
}


def _laplacian_pyramid(image: np.ndarray, levels: int) -> tuple[list[np.ndarray], np.ndarray]:
    details = []
    current = image
    for _ in range(levels):
        down = cv2.pyrDown(current)
        details.append(current - cv2.pyrUp(down, dstsize=(current.shape[1], current.shape[0])))
        current = down
    return details, current


def _check(ir: np.ndarray, vis: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.dtype]:
    for name, image in (("ir", ir), ("vis", vis)):
        if not isinstance(image, np.ndarray):
            raise ValueError(f"{name} must be a numpy array, got {type(image).__name__}")
        if image.ndim != 2 or min(image.shape) < 1:
            raise ValueError(f"{name} must be a grey (H, W) image, got shape {image.shape}")
        if not (image.dtype in (np.uint8, np.uint16) or np.issubdtype(image.dtype, np.floating)):
            raise ValueError(f"{name} has unsupported dtype {image.dtype}; use uint8, uint16 or float")
    if ir.shape != vis.shape:
        raise ValueError(f"ir and vis must have the same size, got {ir.shape} and {vis.shape}")
    if ir.dtype != vis.dtype:
        raise ValueError(f"ir and vis must have the same dtype (one scale), got {ir.dtype} and {vis.dtype}")
    return ir.astype(np.float64), vis.astype(np.float64), ir.dtype


def _finish(image: np.ndarray, dtype: np.dtype, keep_dtype: bool) -> np.ndarray:
    if not keep_dtype:
        return image
    if np.issubdtype(dtype, np.floating):
        return image.astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(np.round(image), info.min, info.max).astype(dtype)
