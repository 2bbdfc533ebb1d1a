"""Input checks shared by every metric: grey images on the 0-255 scale, as float64.

The field's reference evaluators read 8-bit images and work on grey values 0..255, so every metric
here does the same: uint8 is taken as is, uint16 is scaled by 255/65535, float arrays must already be
on the 0-255 scale, and a BGR image is converted to grey (OpenCV's weights, then rounded, as the
reference scripts read colour files).
"""

from __future__ import annotations

import cv2
import numpy as np


def as_grey(image: np.ndarray, name: str = "image") -> np.ndarray:
    """One image as a 2-D float64 array of grey values in [0, 255]; ValueError naming what is wrong."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(image).__name__}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))):
        raise ValueError(f"{name} must be a grey (H, W) or BGR (H, W, 3) image, got shape {image.shape}")
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise ValueError(f"{name} is too small ({image.shape[1]}x{image.shape[0]}); metrics need at least 2x2")
    grey = _scale_to_255(image, name)
    if grey.ndim == 3:
        grey = np.round(cv2.cvtColor(grey[:, :, :3].astype(np.float32), cv2.COLOR_BGR2GRAY)).astype(np.float64)
    return grey


def as_triplet(fused: np.ndarray, ir: np.ndarray, vis: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The fused image and its two sources, checked to be images of one size."""
    f, a, b = as_grey(fused, "fused"), as_grey(ir, "ir"), as_grey(vis, "vis")
    if not (f.shape == a.shape == b.shape):
        raise ValueError(f"fused, ir and vis must have the same size, got fused {f.shape}, ir {a.shape}, vis {b.shape}")
    return f, a, b


def as_pair(x: np.ndarray, y: np.ndarray, names: tuple[str, str] = ("x", "y")) -> tuple[np.ndarray, np.ndarray]:
    gx, gy = as_grey(x, names[0]), as_grey(y, names[1])
    if gx.shape != gy.shape:
        raise ValueError(f"{names[0]} and {names[1]} must have the same size, got {gx.shape} and {gy.shape}")
    return gx, gy


def require_min_side(shape: tuple[int, ...], minimum: int, metric: str) -> None:
    if min(shape) < minimum:
        raise ValueError(f"{metric} needs images of at least {minimum}x{minimum} pixels, got {shape[1]}x{shape[0]}")


def to_uint8_levels(grey: np.ndarray) -> np.ndarray:
    """Grey values rounded to the 256 integer levels (the histogram-based metrics work on these)."""
    return np.clip(np.round(grey), 0, 255).astype(np.uint8)


def _scale_to_255(image: np.ndarray, name: str) -> np.ndarray:
    if image.dtype == np.uint8:
        return image.astype(np.float64)
    if image.dtype == np.uint16:
        return image.astype(np.float64) * (255.0 / 65535.0)
    if not np.issubdtype(image.dtype, np.floating):
        raise ValueError(
            f"{name} has unsupported dtype {image.dtype}; use uint8, uint16 or float grey values in [0, 255]"
        )
    grey = image.astype(np.float64)
    if not np.all(np.isfinite(grey)):
        raise ValueError(f"{name} contains NaN or infinite values")
    lo, hi = float(grey.min()), float(grey.max())
    if lo < 0.0 or hi > 255.0:
        raise ValueError(f"{name} has values in [{lo:.4g}, {hi:.4g}]; float images must be grey values in [0, 255]")
    return grey
