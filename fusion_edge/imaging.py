"""Image I/O and colour handling shared by the fuse, demo and eval commands (numpy + OpenCV)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from fusion_edge.runtime import imageops


def read_image(path: str | Path) -> np.ndarray:
    """Read grey or colour, 8- or 16-bit, keeping depth (BGR order for colour, alpha dropped)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"cannot decode image {path} (not an image OpenCV can read)")
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    return image


def write_image(path: str | Path, image: np.ndarray) -> None:
    """Write atomically (temp file, then rename) so a failure never leaves a truncated file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, encoded = cv2.imencode(path.suffix or ".png", image)
    if not ok:
        raise ValueError(f"cannot encode an image of shape {image.shape} and dtype {image.dtype} as {path.suffix}")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(encoded.tobytes())
    tmp.replace(path)


def to_unit_float(image: np.ndarray) -> np.ndarray:
    """uint8 / uint16 / float image -> float32 in [0, 1] (the runtime's conversion, on the host)."""
    return imageops.unit_float(np, image)


def from_unit_float(image: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """float in [0, 1] -> ``dtype``, clamped and rounded for integer types."""
    return imageops.from_unit_float(np, image, dtype)


def to_grey(image: np.ndarray) -> np.ndarray:
    """BGR -> grey with OpenCV's weights (as the reference's BGR2GRAY); grey passes through."""
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    raise ValueError(f"expected a grey (H, W) or BGR (H, W, 3) image, got shape {image.shape}")


def split_luma(bgr_unit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Float BGR in [0, 1] -> (Y, CrCb) with OpenCV's YCrCb, the convention of the reference scripts."""
    ycrcb = cv2.cvtColor(bgr_unit, cv2.COLOR_BGR2YCrCb)
    return ycrcb[:, :, 0], ycrcb[:, :, 1:]


def merge_luma(y: np.ndarray, crcb: np.ndarray) -> np.ndarray:
    ycrcb = np.concatenate([y[:, :, None], crcb], axis=2).astype(np.float32)
    return cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2BGR)
