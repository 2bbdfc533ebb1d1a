"""Turn a raw IR/VIS frame pair into the model's two inputs.

Steps: check the frames, scale to [0, 1], split a colour VIS into luma (fused) and chroma
(kept for the output), warp IR onto the VIS grid with the calibration homography and resize
both to the engine's size in one resampling, pad dynamic models to their size multiple.
Host frames go through OpenCV; GPU frames through ``imageops`` on CuPy, never leaving the GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from fusion_edge.runtime import imageops
from fusion_edge.runtime.arrays import array_module, is_array, is_device_array, to_device, to_host
from fusion_edge.runtime.calibration import Calibration
from fusion_edge.runtime.engines import ModelInfo

SUPPORTED_DTYPES = (np.uint8, np.uint16, np.float32, np.float64, np.float16)
COLOUR_MODES = ("auto", "grey")
OUTPUT_SIZES = ("input", "engine")
IR_RANGES = ("scale", "minmax")


class FrameError(ValueError):
    """A frame the runtime cannot use; the message says what was wrong with it."""


def check_frame(image: Any, name: str) -> Any:
    """Return ``image`` as (H, W) or (H, W, 3), or raise FrameError naming the problem.

    One-channel (H, W, 1) images are squeezed and an alpha channel is dropped.
    """
    if image is None:
        raise FrameError(f"{name}: no image (the decoder returned nothing)")
    shape = getattr(image, "shape", None)
    if shape is None:
        raise FrameError(f"{name}: expected an image array, got {type(image).__name__}")
    if len(shape) not in (2, 3) or 0 in shape:
        raise FrameError(f"{name}: expected a non-empty (H, W) or (H, W, 3) image, got shape {tuple(shape)}")
    if len(shape) == 3:
        if shape[2] == 1:
            image = image[:, :, 0]
        elif shape[2] == 4:
            image = image[:, :, :3]
        elif shape[2] != 3:
            raise FrameError(f"{name}: expected 1, 3 or 4 channels, got {shape[2]}")
    if np.dtype(image.dtype) not in [np.dtype(d) for d in SUPPORTED_DTYPES]:
        raise FrameError(f"{name}: unsupported dtype {image.dtype}; use uint8, uint16 or float in [0, 1]")
    if min(image.shape[:2]) < 2:
        raise FrameError(f"{name}: image {tuple(image.shape)} is too small")
    return image


def as_image_array(image: Any) -> Any:
    """numpy and CuPy arrays as they are; other GPU arrays (CUDA torch tensors, DLPack) as CuPy
    views, other host arrays (CPU tensors, buffers) as numpy, so that shape and dtype checks
    see numpy dtypes. Anything else is returned for ``check_frame`` to name."""
    if image is None or isinstance(image, np.ndarray):
        return image
    if is_device_array(image):
        return to_device(image)
    if is_array(image):
        return to_host(image)
    return image


@dataclass
class Prepared:
    """The engine inputs for one pair and what postprocessing needs to rebuild the output."""

    vis: Any  # (1, 1, h, w) float32, numpy or cupy
    ir: Any
    # The VIS colour at the output size, or None for grey output. Host: the VIS image in YCrCb
    # (uint8 or float32, 3 channels; the fused luma replaces channel 0). GPU: its Cr/Cb (H, W, 2).
    chroma: Any
    work_hw: tuple[int, int]  # the valid region of the engine input (before padding)
    out_hw: tuple[int, int]
    out_dtype: np.dtype
    on_device: bool


class Preprocessor:
    """Frames -> engine inputs for one model, one calibration and one set of options.

    ``colour``: "auto" fuses a colour VIS on its luma and returns colour; "grey" returns grey.
    ``output_size``: "input" gives the VIS frame's size, "engine" the engine's.
    ``ir_range``: "scale" maps the dtype's full range to [0, 1]; "minmax" stretches each IR
    frame (for raw 14/16-bit thermal data that uses a small part of the range).
    ``out_dtype``: None returns the VIS dtype.
    """

    def __init__(self, info: ModelInfo, calibration: Calibration | None = None, *, colour: str = "auto",
                 output_size: str = "input", ir_range: str = "scale", out_dtype: Any = None) -> None:
        for value, allowed, what in ((colour, COLOUR_MODES, "colour"), (output_size, OUTPUT_SIZES, "output_size"),
                                     (ir_range, IR_RANGES, "ir_range")):
            if value not in allowed:
                raise ValueError(f"{what} must be one of {allowed}, got {value!r}")
        self.info = info
        self.calibration = calibration
        self.colour = colour
        self.output_size = output_size
        self.ir_range = ir_range
        self.out_dtype = None if out_dtype is None else np.dtype(out_dtype)
        self._maps: dict = {}  # cached GPU resampling maps

    # ----------------------------------------------------------------- sizes
    def work_size(self, vis_hw: tuple[int, int]) -> tuple[int, int]:
        """The size both inputs are resampled to (before padding)."""
        fixed = self.info.fixed_hw
        if fixed is not None:
            return fixed
        h, w = vis_hw
        scale = 1.0
        if self.info.max_hw is not None:
            scale = min(scale, self.info.max_hw[0] / h, self.info.max_hw[1] / w)
        if self.info.min_hw is not None:
            scale = max(scale, self.info.min_hw[0] / h, self.info.min_hw[1] / w)
        if scale != 1.0:
            m = self.info.size_multiple
            h = max(m, int(h * scale) // m * m) if scale < 1 else int(round(h * scale))
            w = max(m, int(w * scale) // m * m) if scale < 1 else int(round(w * scale))
        return h, w

    def padding(self, work_hw: tuple[int, int]) -> tuple[int, int]:
        if self.info.fixed_hw is not None:
            return 0, 0
        m = max(1, self.info.size_multiple)
        return (-work_hw[0]) % m, (-work_hw[1]) % m

    def ir_to_work(self, ir_hw: tuple[int, int], vis_hw: tuple[int, int], work_hw: tuple[int, int]) -> np.ndarray:
        """IR pixel -> engine-input pixel: calibration homography (or a plain resize onto the
        VIS grid), then VIS -> engine resize."""
        if self.calibration is not None:
            ir_to_vis = self.calibration.for_sizes(ir_hw, vis_hw)
        else:
            ir_to_vis = imageops.resize_matrix(ir_hw, vis_hw)
        return imageops.resize_matrix(vis_hw, work_hw) @ ir_to_vis

    # --------------------------------------------------------------- prepare
    def prepare(self, ir: Any, vis: Any) -> Prepared:
        ir = check_frame(as_image_array(ir), "ir")
        vis = check_frame(as_image_array(vis), "vis")
        if is_device_array(ir) or is_device_array(vis):
            return self._prepare_device(ir, vis)
        return self._prepare_host(np.asarray(ir), np.asarray(vis))

    def _out_dtype(self, vis) -> np.dtype:
        if self.out_dtype is not None:
            return self.out_dtype
        dtype = np.dtype(vis.dtype)
        return np.dtype(np.float32) if np.issubdtype(dtype, np.floating) else dtype

    def _prepare_host(self, ir: np.ndarray, vis: np.ndarray) -> Prepared:
        vis_hw, ir_hw = vis.shape[:2], ir.shape[:2]
        work_hw = self.work_size(vis_hw)
        out_hw = vis_hw if self.output_size == "input" else work_hw
        out_dtype = self._out_dtype(vis)
        vis_f = imageops.unit_float(np, vis)
        chroma = None
        if vis_f.ndim == 3:
            vis_y = cv2.cvtColor(vis_f, cv2.COLOR_BGR2GRAY)  # the same weights as YCrCb's Y, contiguous
            if self.colour == "auto":
                # 8-bit in and out: OpenCV's integer YCrCb (fast, exact to the output's precision)
                eight_bit = vis.dtype == np.uint8 and out_dtype == np.uint8
                chroma = cv2.cvtColor(vis if eight_bit else vis_f, cv2.COLOR_BGR2YCrCb)
                if out_hw != vis_hw:
                    chroma = cv2.resize(chroma, (out_hw[1], out_hw[0]), interpolation=_interp(vis_hw, out_hw))
        else:
            vis_y = vis_f
        if work_hw != vis_hw:
            vis_y = cv2.resize(vis_y, (work_hw[1], work_hw[0]), interpolation=_interp(vis_hw, work_hw))
        ir_f = self._ir_unit_host(ir)
        if self.calibration is None and ir_hw == work_hw:
            ir_w = ir_f
        elif self.calibration is None:
            ir_w = cv2.resize(ir_f, (work_hw[1], work_hw[0]), interpolation=_interp(ir_hw, work_hw))
        else:
            m = self.ir_to_work(ir_hw, vis_hw, work_hw)
            ir_w = cv2.warpPerspective(ir_f, m, (work_hw[1], work_hw[0]), flags=cv2.INTER_LINEAR,
                                       borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        pad_h, pad_w = self.padding(work_hw)
        if pad_h or pad_w:
            vis_y = imageops.pad_reflect(np, vis_y, pad_h, pad_w)
            ir_w = imageops.pad_reflect(np, ir_w, pad_h, pad_w)
        return Prepared(
            vis=np.ascontiguousarray(vis_y, dtype=np.float32)[None, None],
            ir=np.ascontiguousarray(ir_w, dtype=np.float32)[None, None],
            chroma=chroma, work_hw=work_hw, out_hw=out_hw, out_dtype=out_dtype, on_device=False,
        )

    def _ir_unit_host(self, ir: np.ndarray) -> np.ndarray:
        f = ir.astype(np.float32) if self.ir_range == "minmax" else imageops.unit_float(np, ir)
        if f.ndim == 3:
            f = cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)
        if self.ir_range == "minmax":
            lo, hi = float(f.min()), float(f.max())
            return (f - lo) * np.float32(1.0 / max(hi - lo, 1e-6))
        return f

    # ------------------------------------------------------------ GPU path
    def _prepare_device(self, ir: Any, vis: Any) -> Prepared:
        ir, vis = to_device(ir), to_device(vis)
        xp = array_module(vis)
        return self.prepare_xp(xp, ir, vis)

    def prepare_xp(self, xp, ir, vis) -> Prepared:
        """The array-module path (CuPy on the GPU; numpy in tests, where it must agree with OpenCV)."""
        vis_hw, ir_hw = tuple(vis.shape[:2]), tuple(ir.shape[:2])
        work_hw = self.work_size(vis_hw)
        out_hw = vis_hw if self.output_size == "input" else work_hw
        vis_f = imageops.unit_float(xp, vis)
        crcb = None
        if vis_f.ndim == 3:
            vis_y, chroma = imageops.bgr_to_ycrcb(xp, vis_f)
            if self.colour == "auto":
                crcb = chroma if out_hw == vis_hw else self._map(xp, imageops.resize_matrix(vis_hw, out_hw),
                                                                 vis_hw, out_hw, "clamp").apply(xp, chroma)
        else:
            vis_y = vis_f
        if work_hw != vis_hw:
            vis_y = self._map(xp, imageops.resize_matrix(vis_hw, work_hw), vis_hw, work_hw, "clamp").apply(xp, vis_y)
        ir_f = imageops.grey(xp, ir.astype(xp.float32) if ir.ndim == 3 else ir)
        if self.ir_range == "minmax":
            ir_f = ir_f.astype(xp.float32)
            lo, hi = ir_f.min(), ir_f.max()
            ir_f = (ir_f - lo) / xp.maximum(hi - lo, xp.float32(1e-6))
        elif ir.ndim == 3:
            ir_f = xp.clip(ir_f * xp.float32(1.0 / imageops.full_scale(ir.dtype)), 0.0, 1.0)
        else:
            ir_f = imageops.unit_float(xp, ir_f)
        if not (self.calibration is None and ir_hw == work_hw):
            border = "zero" if self.calibration is not None else "clamp"
            ir_f = self._map(xp, self.ir_to_work(ir_hw, vis_hw, work_hw), ir_hw, work_hw, border).apply(xp, ir_f)
        pad_h, pad_w = self.padding(work_hw)
        if pad_h or pad_w:
            vis_y = imageops.pad_reflect(xp, vis_y, pad_h, pad_w)
            ir_f = imageops.pad_reflect(xp, ir_f, pad_h, pad_w)
        return Prepared(
            vis=xp.ascontiguousarray(vis_y, dtype=xp.float32)[None, None],
            ir=xp.ascontiguousarray(ir_f, dtype=xp.float32)[None, None],
            chroma=crcb, work_hw=work_hw, out_hw=out_hw, out_dtype=self._out_dtype(vis), on_device=xp is not np,
        )

    def _map(self, xp, matrix: np.ndarray, src_hw, dst_hw, border: str) -> imageops.BilinearMap:
        key = (xp.__name__, tuple(src_hw), tuple(dst_hw), border, np.asarray(matrix, np.float64).round(9).tobytes())
        m = self._maps.get(key)
        if m is None:
            if len(self._maps) > 16:  # sizes changed (e.g. a camera mode switch): drop stale maps
                self._maps.clear()
            m = self._maps[key] = imageops.BilinearMap.build(xp, matrix, src_hw, dst_hw, border)
        return m


def _interp(src_hw, dst_hw) -> int:
    """Area averaging when shrinking (no aliasing), bilinear when enlarging."""
    return cv2.INTER_AREA if dst_hw[0] < src_hw[0] and dst_hw[1] < src_hw[1] else cv2.INTER_LINEAR
