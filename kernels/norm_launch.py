"""Pooled LayerNorm launcher: the means over a map's pixels of LayerNorm(x) (and of x) in one pass."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from fusion_edge.kernels import launch, launch_params
from fusion_edge.kernels.arrays import ITEMSIZE, TYPE_CODE, as_device_array, check
from fusion_edge.kernels.scan_launch import FLOAT_TYPES


def ln_pool_workspace_floats(x_shape: tuple[int, ...], itemsize: int, sm_count: int, with_raw: bool) -> int:
    """float32 elements of the blocks' shares ``launch_ln_pool`` writes for x of ``x_shape`` (batch, ..., C)."""
    batch, channels, rows = x_shape[0], x_shape[-1], math.prod(x_shape[1:-1])
    blocks = launch_params.ln_pool_blocks(batch, rows, channels, itemsize, sm_count)
    return batch * blocks * (1 + int(with_raw)) * channels


def launch_ln_pool(x: Any, out: Any = None, *, weight: Any = None, bias: Any = None, eps: float,
                   with_raw: bool = False, workspace: Any = None, stream: Any = None) -> Any:
    """out (batch, 1 + with_raw, C) in x's type: out[b, 0] the mean over the pixels of x[b] (rows of C channels;
    x is (batch, ..., C), e.g. a channels-last map (batch, h, w, C)) of LayerNorm(x) ((x - mean) * rstd, eps
    inside the square root, times ``weight`` plus ``bias`` where given, both (C,) in x's type), and with
    ``with_raw`` out[b, 1] the mean of x. Two launches: the pass writes each block's share into ``workspace``
    (float32, ``ln_pool_workspace_floats`` elements at least; allocated when None), the second adds them in a
    fixed order, so calls repeat bitwise. Rows must be whole 16-byte words (C * itemsize a multiple of 16, x
    16-byte aligned) of at most ``launch_params.ln_pool_max_channels(itemsize)`` channels. bfloat16 needs
    ``out`` (CuPy has no bfloat16 to allocate it in)."""
    arrs = {"x": as_device_array(x, "x")}
    for name, value in (("weight", weight), ("bias", bias)):
        arrs[name] = None if value is None else as_device_array(value, name)
    xa = arrs["x"]
    if len(xa.shape) < 2 or xa.dtype not in FLOAT_TYPES:
        raise ValueError(f"x must be (batch, ..., C) float32/float16/bfloat16, got {xa.shape} {xa.dtype}")
    itemsize = ITEMSIZE[xa.dtype]
    batch, channels, rows = xa.shape[0], xa.shape[-1], math.prod(xa.shape[1:-1])
    widest = launch_params.ln_pool_max_channels(itemsize)
    if not 0 < channels <= widest or channels * itemsize % 16:
        raise ValueError(f"x's rows (its last axis) must be 16-byte runs of 1 to {widest} channels, "
                         f"got {channels} {xa.dtype} channels")
    if xa.ptr % 16:
        raise ValueError("x must start on a 16-byte boundary (a dense tensor of its own, not a view into one)")
    for name in ("weight", "bias"):
        if arrs[name] is not None:
            check(arrs[name], name, (channels,), (xa.dtype,))
    kinds = 1 + int(with_raw)
    result, device = launch.checked_out(arrs, out, (batch, kinds, channels), xa.dtype, stream)
    if batch == 0:
        return result
    sms = launch.sm_count(launch.current_device() if device is None else device)
    blocks = launch_params.ln_pool_blocks(batch, rows, channels, itemsize, sms)
    needed = batch * blocks * kinds * channels
    if workspace is None:
        workspace = launch.alloc(needed * 4, "float32", (needed,), device=device, stream=stream)
    ws = as_device_array(workspace, "workspace")
    if ws.dtype != "float32" or math.prod(ws.shape) < needed:
        raise ValueError(f"workspace must be float32 with at least {needed} elements "
                         f"(ln_pool_workspace_floats), got {ws.shape} {ws.dtype}")
    chunks, _ = launch_params.ln_pool_chunks(channels, itemsize)
    code = TYPE_CODE[xa.dtype]
    grid, block = launch_params.ln_pool_grid(batch, blocks)
    args = (launch.ptr(xa), launch.ptr(ws), launch.i32(rows), launch.i32(channels),
            launch.i32(launch_params.ln_pool_rows_per_block(rows, blocks)), launch.i32(kinds - 1), np.float32(eps))
    launch.run("norm", f"fe_ln_pool_{code}_k{chunks}", grid, block, args, device=device, stream=stream)
    grid, block = launch_params.ln_pool_sum_grid(batch, kinds * channels)
    args = (launch.ptr(ws), launch.ptr(arrs["weight"]), launch.ptr(arrs["bias"]), launch.ptr(arrs["out"]),
            launch.i32(blocks), launch.i32(kinds), launch.i32(channels))
    launch.run("norm", f"fe_ln_pool_sum_{code}", grid, block, args, device=device, stream=stream)
    return result
