"""Image operations written once for any array module (numpy or CuPy).

On the host the runtime uses OpenCV; when frames live on the GPU it uses these, so that
registration, resizing and colour conversion never leave the device. Each function mirrors
an OpenCV call (named in its docstring) and the tests check them against it with numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

# OpenCV's BGR <-> YCrCb constants for float images (delta 0.5), see cv2.cvtColor docs.
_Y_WEIGHTS = (0.114, 0.587, 0.299)  # B, G, R
_CR_SCALE, _CB_SCALE = 0.713, 0.564
_R_FROM_CR, _G_FROM_CR, _G_FROM_CB, _B_FROM_CB = 1.403, -0.714, -0.344, 1.773


def full_scale(dtype: Any) -> float:
    """The value that maps to 1.0: 255 for uint8, 65535 for uint16, 1 for floats."""
    dtype = np.dtype(dtype)
    if dtype == np.uint8:
        return 255.0
    if dtype == np.uint16:
        return 65535.0
    if np.issubdtype(dtype, np.floating):
        return 1.0
    raise ValueError(f"unsupported image dtype {dtype}; use uint8, uint16 or float in [0, 1]")


def unit_float(xp, image):
    """uint8 / uint16 / float -> float32 in [0, 1] (like ``image / 255`` with the right scale)."""
    scale = full_scale(image.dtype)
    out = image.astype(xp.float32)
    if scale != 1.0:
        out *= xp.float32(1.0 / scale)
    else:
        out = xp.clip(out, 0.0, 1.0)
    return out


def from_unit_float(xp, image, dtype):
    """float in [0, 1] -> ``dtype`` (rounded and clamped for integer types)."""
    image = xp.clip(image, 0.0, 1.0)
    if np.issubdtype(np.dtype(dtype), np.floating):
        return image.astype(dtype)
    return xp.rint(image * xp.float32(full_scale(dtype))).astype(dtype)


def grey(xp, image):
    """BGR -> grey with OpenCV's weights (``cv2.COLOR_BGR2GRAY``); grey passes through."""
    if image.ndim == 2:
        return image
    b, g, r = image[..., 0], image[..., 1], image[..., 2]
    wb, wg, wr = _Y_WEIGHTS
    return b * xp.float32(wb) + g * xp.float32(wg) + r * xp.float32(wr)


def bgr_to_ycrcb(xp, bgr):
    """Float BGR in [0, 1] -> (Y, CrCb (H, W, 2)), as ``cv2.COLOR_BGR2YCrCb``."""
    y = grey(xp, bgr)
    cr = (bgr[..., 2] - y) * xp.float32(_CR_SCALE) + xp.float32(0.5)
    cb = (bgr[..., 0] - y) * xp.float32(_CB_SCALE) + xp.float32(0.5)
    return y, xp.stack([cr, cb], axis=-1)


def ycrcb_to_bgr(xp, y, crcb):
    """(Y, CrCb) -> float BGR, as ``cv2.COLOR_YCrCb2BGR``."""
    cr = crcb[..., 0] - xp.float32(0.5)
    cb = crcb[..., 1] - xp.float32(0.5)
    r = y + xp.float32(_R_FROM_CR) * cr
    g = y + xp.float32(_G_FROM_CR) * cr + xp.float32(_G_FROM_CB) * cb
    b = y + xp.float32(_B_FROM_CB) * cb
    return xp.stack([b, g, r], axis=-1)


def resize_matrix(src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> np.ndarray:
    """The 3x3 map of source pixel coordinates to destination ones used by ``cv2.resize``
    (pixel centres aligned: ``x_dst = (x_src + 0.5) * dst_w / src_w - 0.5``)."""
    sx, sy = dst_hw[1] / src_hw[1], dst_hw[0] / src_hw[0]
    return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])


@dataclass
class BilinearMap:
    """A precomputed bilinear resampling: four gather indices and weights per output pixel.

    Computing the map once per (matrix, sizes) and reusing it makes a per-frame warp four
    gathers and a weighted sum. ``border="zero"`` is ``cv2.BORDER_CONSTANT`` with 0 (pixels
    that map outside the source are black, as in ``cv2.warpPerspective``); ``"clamp"`` is
    ``cv2.BORDER_REPLICATE`` (as in ``cv2.resize``).
    """

    indices: tuple
    weights: tuple
    src_hw: tuple[int, int]
    dst_hw: tuple[int, int]

    @classmethod
    def build(cls, xp, src_to_dst: np.ndarray, src_hw, dst_hw, border: str = "zero") -> BilinearMap:
        if border not in ("zero", "clamp"):
            raise ValueError(f"border must be 'zero' or 'clamp', got {border!r}")
        # destination -> source, as Python floats (numpy scalars do not mix with CuPy arrays everywhere)
        m = np.linalg.inv(np.asarray(src_to_dst, dtype=np.float64)).tolist()
        h, w = int(dst_hw[0]), int(dst_hw[1])
        sh, sw = int(src_hw[0]), int(src_hw[1])
        ys, xs = xp.meshgrid(xp.arange(h, dtype=xp.float64), xp.arange(w, dtype=xp.float64), indexing="ij")
        den = m[2][0] * xs + m[2][1] * ys + m[2][2]
        den = xp.where(xp.abs(den) < 1e-12, 1e-12, den)
        sx = (m[0][0] * xs + m[0][1] * ys + m[0][2]) / den
        sy = (m[1][0] * xs + m[1][1] * ys + m[1][2]) / den
        if border == "clamp":
            sx = xp.clip(sx, 0.0, sw - 1.0)
            sy = xp.clip(sy, 0.0, sh - 1.0)
        x0f, y0f = xp.floor(sx), xp.floor(sy)
        fx, fy = (sx - x0f).astype(xp.float32), (sy - y0f).astype(xp.float32)
        x0 = x0f.astype(xp.int64)
        y0 = y0f.astype(xp.int64)
        indices, weights = [], []
        for dy, dx, wgt in ((0, 0, (1 - fx) * (1 - fy)), (0, 1, fx * (1 - fy)), (1, 0, (1 - fx) * fy), (1, 1, fx * fy)):
            xi, yi = x0 + dx, y0 + dy
            inside = (xi >= 0) & (xi < sw) & (yi >= 0) & (yi < sh)
            xi, yi = xp.clip(xi, 0, sw - 1), xp.clip(yi, 0, sh - 1)
            indices.append((yi * sw + xi).astype(xp.int32 if sh * sw < 2**31 else xp.int64))
            weights.append(xp.where(inside, wgt, xp.float32(0.0)).astype(xp.float32))
        return cls(tuple(indices), tuple(weights), (sh, sw), (h, w))

    def apply(self, xp, image):
        """Resample a float (H, W) or (H, W, C) image onto the destination grid."""
        if tuple(image.shape[:2]) != self.src_hw:
            raise ValueError(f"map was built for {self.src_hw} images, got {tuple(image.shape[:2])}")
        if image.ndim == 3:
            return xp.stack([self.apply(xp, image[..., c]) for c in range(image.shape[2])], axis=-1)
        flat = xp.ascontiguousarray(image).reshape(-1)
        out = flat[self.indices[0]] * self.weights[0]
        for idx, wgt in zip(self.indices[1:], self.weights[1:]):
            out += flat[idx] * wgt
        return out


def pad_reflect(xp, image, pad_h: int, pad_w: int):
    """Pad bottom/right by mirroring without repeating the edge (``cv2.BORDER_REFLECT_101``,
    the model's own padding), so a padded input gives the model's own result."""
    if not pad_h and not pad_w:
        return image
    widths = [(0, pad_h), (0, pad_w)] + [(0, 0)] * (image.ndim - 2)
    mode = "reflect" if pad_h < image.shape[0] and pad_w < image.shape[1] else "edge"
    return xp.pad(image, widths, mode=mode)
