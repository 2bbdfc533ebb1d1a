"""Launch parameters of every kernel, in one place (they must match the constants in the .cu files)."""

from __future__ import annotations

import math

SCAN_WARPS_PER_BLOCK = 2         # <= kMaxWarps (4); small blocks spread batch-1 work over all SMs
SCAN_MAX_STATES = 64
SCAN_TARGET_WARPS_PER_SM = 16    # split L into chunks until about this many warps per SM
SCAN_MIN_CHUNK = 256             # shortest chunk worth a first pass
SCAN_CHUNK_ALIGN = 64            # chunks are whole tiles (TL <= 32) of both passes
SCAN_SPLIT = True                # False: never chunk (benchmarks compare both)

ES2D_PROJ_L = 128                # es2d_fwd.cu: kProjL (threads per block)
ES2D_PROJ_C = 16                 # kProjC
ES2D_PROJ_D = 32                 # kProjD
ES2D_DELTA_D = 16                # kDeltaD

LDC_TILE_W, LDC_TILE_H, LDC_OUT, LDC_THREADS = 32, 16, 8, 128  # ldc_conv2d.cu


def scan_layout(n_states: int) -> tuple[int, int]:
    """(lanes per channel, states per lane) of scan_core.cuh for N states: 8 x 2 up to 16, else 16 x N/16."""
    if n_states <= 16:
        return 8, 2
    return 16, math.ceil(n_states / 16)


def scan_suffix(n_states: int) -> str:
    lanes, per_lane = scan_layout(n_states)
    return f"n{lanes * per_lane}"


def scan_chunks(channels: int, length: int, n_states: int, sm_count: int) -> tuple[int, int]:
    """(chunk length, number of chunks): split L when the channels alone leave the GPU idle."""
    lanes, _ = scan_layout(n_states)
    warps = math.ceil(channels / (32 // lanes))
    target = SCAN_TARGET_WARPS_PER_SM * sm_count
    whole = math.ceil(max(length, 1) / SCAN_CHUNK_ALIGN) * SCAN_CHUNK_ALIGN
    if not SCAN_SPLIT or 2 * warps >= target or length < 2 * SCAN_MIN_CHUNK:
        return whole, 1
    chunks = min(math.ceil(target / warps), length // SCAN_MIN_CHUNK)
    chunk_len = math.ceil(math.ceil(length / chunks) / SCAN_CHUNK_ALIGN) * SCAN_CHUNK_ALIGN
    return chunk_len, math.ceil(length / chunk_len)


def scan_state_floats(channels: int, n_states: int, n_chunks: int) -> tuple[int, int]:
    """Floats of the chunk end states and of the chunk delta sums (zero without chunks)."""
    lanes, per_lane = scan_layout(n_states)
    return channels * (n_chunks - 1) * lanes * per_lane, channels * (n_chunks - 1)


def scan_grid(channels: int, n_states: int, n_chunks: int):
    """(grid, block) for ``channels`` = batch * dim scanned channels, chunks on grid.y."""
    lanes, _ = scan_layout(n_states)
    per_block = (32 // lanes) * SCAN_WARPS_PER_BLOCK
    return (math.ceil(channels / per_block), n_chunks, 1), (32 * SCAN_WARPS_PER_BLOCK, 1, 1)


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
