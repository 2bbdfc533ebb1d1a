"""Launch parameters of every kernel, in one place (they must match the constants in the .cu files)."""

from __future__ import annotations

import math

SCAN_CHANNELS_PER_WARP = 2       # scan_core.cuh: two channels of 16 lanes
SCAN_WARPS_PER_BLOCK = 2         # <= kMaxWarps (4); small blocks spread batch-1 work over all SMs
SCAN_MAX_STATES = 64             # four states per lane

ES2D_PROJ_L = 128                # es2d_fwd.cu: kProjL (threads per block)
ES2D_PROJ_C = 16                 # kProjC
ES2D_PROJ_D = 32                 # kProjD
ES2D_DELTA_D = 16                # kDeltaD

LDC_TILE_W, LDC_TILE_H, LDC_OUT, LDC_THREADS = 32, 16, 8, 128  # ldc_conv2d.cu


def scan_states_per_lane(n: int) -> int:
    return max(1, math.ceil(n / 16))


def scan_grid(channels: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """(grid, block) for ``channels`` = batch * dim scanned channels."""
    per_block = SCAN_CHANNELS_PER_WARP * SCAN_WARPS_PER_BLOCK
    return (math.ceil(channels / per_block), 1, 1), (32 * SCAN_WARPS_PER_BLOCK, 1, 1)


def es2d_project_splits(batch: int, length: int, proj_rows: int, dim: int, sm_count: int) -> int:
    """Split the channel sum of the projection over blocks when the map is too small to fill the GPU."""
    blocks = math.ceil(length / ES2D_PROJ_L) * math.ceil(proj_rows / ES2D_PROJ_C) * batch * 4
    want = math.ceil(2 * sm_count / blocks)
    return max(1, min(want, dim // (2 * ES2D_PROJ_D)))


def es2d_project_grid(batch: int, length: int, proj_rows: int, splits: int):
    grid = (math.ceil(length / ES2D_PROJ_L), math.ceil(proj_rows / ES2D_PROJ_C), batch * 4 * splits)
    return grid, (ES2D_PROJ_L, 1, 1)


def es2d_delta_grid(batch: int, length: int, dim: int):
    return (math.ceil(length / ES2D_PROJ_L), math.ceil(dim / ES2D_DELTA_D), batch * 4), (ES2D_PROJ_L, 1, 1)


def ldc_grid(batch: int, cout: int, height: int, width: int):
    grid = (math.ceil(width / LDC_TILE_W), math.ceil(height / LDC_TILE_H), batch * math.ceil(cout / LDC_OUT))
    return grid, (LDC_THREADS, 1, 1)
