"""Turn the engine's fused luma back into an image like the input: crop the padding, resize
to the output size, put the VIS chroma back for colour, clamp and convert the dtype.
OpenCV on the host, ``imageops`` on the GPU (the result stays there until asked for)."""

from __future__ import annotations

import cv2
import numpy as np
from fusion_edge.runtime import imageops
from fusion_edge.runtime.preprocess import Prepared


class Postprocessor:
    def __init__(self) -> None:
        self._maps: dict = {}

    def finish(self, fused, prep: Prepared):
        """fused (B, 1, H, W) float32 from the engine -> (H, W) or (H, W, 3) image of ``prep.out_dtype``."""
        if fused.ndim != 4 or fused.shape[1] != 1:
            raise ValueError(f"engine output must be (B, 1, H, W), got shape {tuple(fused.shape)}")
        h, w = prep.work_hw
        if fused.shape[2] < h or fused.shape[3] < w:
            raise ValueError(f"engine output {tuple(fused.shape[2:])} is smaller than its input {prep.work_hw}")
        if prep.on_device:
            return self.finish_xp(_cupy_of(fused), fused, prep)
        y = np.ascontiguousarray(fused[0, 0, :h, :w], dtype=np.float32)
        if prep.out_hw != (h, w):
            y = cv2.resize(y, (prep.out_hw[1], prep.out_hw[0]), interpolation=cv2.INTER_LINEAR)
        if prep.chroma is None:
            return _host_from_unit(y, prep.out_dtype)
        # the luma into channel 0 of a copy of the chroma (OpenCV: a third of numpy's strided write)
        luma = _host_from_unit(y, np.uint8) if prep.chroma.dtype == np.uint8 else y
        ycrcb = cv2.insertChannel(luma, prep.chroma.copy(), 0)
        bgr = cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2BGR)
        return bgr if bgr.dtype == prep.out_dtype else _host_from_unit(bgr, prep.out_dtype)

    def finish_xp(self, xp, fused, prep: Prepared):
        """The array-module path (CuPy on the GPU; numpy in tests, checked against OpenCV)."""
        h, w = prep.work_hw
        y = fused[0, 0, :h, :w].astype(xp.float32, copy=False)  # read only below: no copy of the output
        if prep.out_hw != (h, w):
            key = (xp.__name__, (h, w), prep.out_hw)
            m = self._maps.get(key)
            if m is None:
                self._maps.clear()
                m = self._maps[key] = imageops.BilinearMap.build(
                    xp, imageops.resize_matrix((h, w), prep.out_hw), (h, w), prep.out_hw, "clamp")
            y = m.apply(xp, y)
        if prep.chroma is not None:
            y = imageops.ycrcb_to_bgr(xp, y, prep.chroma)
        return imageops.from_unit_float(xp, y, prep.out_dtype)


def _host_from_unit(image: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """float [0, 1] -> dtype; OpenCV's saturating conversion for 8-bit (several times numpy's speed)."""
    if np.dtype(dtype) == np.uint8 and image.dtype == np.float32:
        # negatives to 0 first (convertScaleAbs takes |x|); threshold is OpenCV's fastest pass for it
        return cv2.convertScaleAbs(cv2.threshold(image, 0.0, 0.0, cv2.THRESH_TOZERO)[1], alpha=255.0)
    if np.dtype(dtype) == np.uint8:
        return cv2.convertScaleAbs(cv2.max(image, 0.0), alpha=255.0)
    return imageops.from_unit_float(np, image, dtype)


def _cupy_of(x):
    from fusion_edge.runtime.arrays import array_module

    return array_module(x)
