"""Pooled LayerNorm launcher: the means over a map's pixels of LayerNorm(x) (and of x) in one pass."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from fusion_edge.kernels import launch, launch_params
from fusion_edge.kernels.arrays import ITEMSIZE, TYPE_CODE, as_device_array
from fusion_edge.kernels.scan_launch import FLOAT_TYPES


def launch_ln_pool(x: Any, out: Any = None, *, eps: float, with_raw: bool = False, stream: Any = None) -> Any:
    """out (batch, 2, C) float32: out[b, 0] the mean over the pixels of x[b] (rows of C channels; x is
    (batch, ..., C), e.g. a channels-last map (batch, h, w, C)) of (x - mean) * rstd, the LayerNorm without its
    weight and bias (eps inside the square root); out[b, 1] the mean of x itself with ``with_raw`` (else 0).
    Zeroed and filled on ``stream``; C <= launch_params.LN_POOL_MAX_C."""
    arrs = {"x": as_device_array(x, "x")}
    xa = arrs["x"]
    if len(xa.shape) < 2 or xa.dtype not in FLOAT_TYPES:
        raise ValueError(f"x must be (batch, ..., C) float32/float16/bfloat16, got {xa.shape} {xa.dtype}")
    batch, channels, rows = xa.shape[0], xa.shape[-1], math.prod(xa.shape[1:-1])
    if not 0 < channels <= launch_params.LN_POOL_MAX_C:
        raise ValueError(f"x must have 1 to {launch_params.LN_POOL_MAX_C} channels (its last axis), got {channels}")
    result, device = launch.checked_out(arrs, out, (batch, 2, channels), "float32", stream)
    if batch == 0:
        return result
    launch.memset_async(arrs["out"].ptr, batch * 2 * channels * 4, device=device, stream=stream)
    if rows == 0:
        return result
    sms = launch.sm_count(launch.current_device() if device is None else device)
    tile, per_block = launch_params.ln_pool_plan(batch, rows, channels, ITEMSIZE[xa.dtype], sms)
    grid, block = launch_params.ln_pool_grid(batch, rows, per_block)
    args = (launch.ptr(xa), launch.ptr(arrs["out"]), launch.i32(rows), launch.i32(channels), launch.i32(tile),
            launch.i32(per_block), launch.i32(int(with_raw)), np.float32(eps))
    launch.run("norm", f"fe_ln_pool_{TYPE_CODE[xa.dtype]}", grid, block, args, device=device, stream=stream)
    return result
