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


# ---------------------------------------------------------------------------------------------
# BACKWARD of the selective scan (kernels/selective_scan/selective_scan_bwd.cu)
# ---------------------------------------------------------------------------------------------

SCAN_BWD_TILE = 16                   # kT: steps per tile, one checkpoint per tile
SCAN_BWD_SPLIT = True                # False: one segment per channel (tests and benchmarks compare)
SCAN_BWD_TARGET_WARPS_PER_SM = 16    # split L into segments until about this many warps per SM
SCAN_BWD_MIN_SEGMENT = 256           # shortest segment worth its carry (a multiple of the tile)


def scan_bwd_layout(n_states: int) -> tuple[int, int, int]:
    """(lanes per channel, states per lane, warps per block) of the backward kernels for N states."""
    if n_states <= 16:
        return 16, 1, 4
    if n_states <= 32:
        return 32, 1, 4
    return 32, 2, 2


def scan_bwd_suffix(n_states: int) -> str:
    lanes, per_lane, _ = scan_bwd_layout(n_states)
    return f"n{lanes * per_lane}"


def scan_bwd_blocks(batch: int, dim: int, groups: int, n_states: int) -> int:
    """Blocks of one segment: each holds consecutive channels of one group of one batch element."""
    lanes, _, warps = scan_bwd_layout(n_states)
    per_block = 32 * warps // lanes
    return batch * groups * math.ceil(dim // groups / per_block)


def scan_bwd_segments(batch: int, dim: int, groups: int, length: int, n_states: int,
                      sm_count: int) -> tuple[int, int]:
    """(segment length, number of segments): split L when the channels alone leave the GPU idle."""
    tile = SCAN_BWD_TILE
    whole = max(1, math.ceil(length / tile)) * tile
    _, _, warps_per_block = scan_bwd_layout(n_states)
    warps = scan_bwd_blocks(batch, dim, groups, n_states) * warps_per_block
    target = SCAN_BWD_TARGET_WARPS_PER_SM * sm_count
    if not SCAN_BWD_SPLIT or 2 * warps >= target or length < 2 * SCAN_BWD_MIN_SEGMENT:
        return whole, 1
    segments = min(math.ceil(target / warps), length // SCAN_BWD_MIN_SEGMENT)
    seg_len = math.ceil(math.ceil(length / segments) / tile) * tile
    return seg_len, math.ceil(length / seg_len)


def scan_bwd_workspace_floats(channels: int, length: int, n_states: int, seg_len: int,
                              n_segs: int) -> tuple[int, int, int, int, int]:
    """Floats of (checkpoint states, checkpoint dt sums, segment end states, segment adjoints,
    segment dt sums); the last four are zero with one segment."""
    lanes, per_lane, _ = scan_bwd_layout(n_states)
    slots = lanes * per_lane
    tiles = n_segs * (seg_len // SCAN_BWD_TILE)
    if n_segs == 1:
        return channels * tiles * slots, 0, 0, 0, 0
    return (channels * tiles * slots, channels * tiles, channels * n_segs * slots, channels * n_segs * slots,
            channels * n_segs)


def scan_bwd_grid(batch: int, dim: int, groups: int, n_states: int, n_segs: int):
    _, _, warps = scan_bwd_layout(n_states)
    return (scan_bwd_blocks(batch, dim, groups, n_states), n_segs, 1), (32 * warps, 1, 1)
