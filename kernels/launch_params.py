"""Launch parameters of every kernel, in one place (they must match the constants in the .cu files)."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

SCAN_WARPS_PER_BLOCK = 2         # <= kMaxWarps (4); small blocks spread batch-1 work over all SMs
SCAN_MAX_STATES = 64
SCAN_TARGET_WARPS_PER_SM = 16    # split L into chunks until about this many warps per SM
SCAN_MIN_CHUNK = 256             # shortest chunk worth a first pass
SCAN_CHUNK_ALIGN = 64            # chunks are whole tiles (TL <= 32) of both passes
SCAN_SPLIT = True                # False: never chunk (benchmarks compare both)

ES2D_PROJ_L = 128                # es2d_fwd.cu: kProjL (threads per block)
ES2D_PROJ_C = 16                 # kProjC (fe_es2d_project_*)
ES2D_PROJ_WIDE_C = 48            # kProjWideC (fe_es2d_project_wide_*)
# The wide projection blocks (all R + 2N rows of a layer in one block, so the map is read once instead of
# once per 16 rows) win where the layer has all its rows in one wide block and either its grid still has
# ES2D_PROJ_WIDE_MIN_BLOCKS_PER_SM blocks an SM, or it has ES2D_PROJ_WIDE_MIN_CHANNELS channels over at
# least two blocks of positions (the map's re-reads then dominate); elsewhere more and shorter blocks win
# (H100 sweep over the presets' layers, benchmarks/results/es2d_project_h100.md).
ES2D_PROJ_WIDE_MIN_BLOCKS_PER_SM = 0.6
ES2D_PROJ_WIDE_MIN_CHANNELS = 192
ES2D_PROJ_D = 32                 # kProjD
ES2D_MERGE_L = 32                # es2d_fwd.cu: kMergeL (route positions per merge/split block)
ES2D_MERGE_D = 64                # kMergeD (channels per merge/split block)
ES2D_MERGE_WARPS = 8             # kMergeWarps
ES2D_NORM_WARPS = 8              # kNormWarps (merge-norm block: a pixel a warp at a time)
ES2D_NORM_SMEM_BYTES = 32768     # kNormSmemBytes (the merge-norm block's D x P tile of rows)
ES2D_NORM_MAX_POSITIONS = 32     # route positions a merge-norm block stages, at most (runs of 64 bytes at 16 bits)
ES2D_NORM_VEC_MAX_CHUNKS = 6     # kNormChunks (16-byte chunks of a pixel a lane owns in the 16-byte form)
ES2D_NORM_MIN_BLOCKS_PER_SM = 2  # merge-norm blocks an SM the launcher aims for (fewer positions a block if need be)
ES2D_CONV_TILE = 16              # route positions a side of a conv split tile (32 x 32 pixels), or half
ES2D_CONV_THREADS = 256          # kConvThreads
ES2D_CONV_BYTES = 16             # kConvBytes (bytes of each pixel's channels a conv split block owns)
ES2D_CONV_MIN_BLOCKS_PER_SM = 2  # below this many blocks an SM at ES2D_CONV_TILE, the half-size tile
ES2D_CONV_MIN_FILL = 0.5         # ... and below this share of the large tiles' positions inside the routes

LDC_TILE_W, LDC_TILE_H, LDC_OUT, LDC_THREADS = 32, 16, 8, 128  # ldc_conv2d.cu

LN_POOL_THREADS = 128            # ln_pool.cu: kPoolThreads
LN_POOL_SLOTS = 8                # kSlots: 16-byte loads in flight a lane
LN_POOL_CHUNKS = (1, 2, 4)       # K: 16-byte words a lane takes of a row (an entry point each)
LN_POOL_WARPS_PER_SM = 16        # a map's row units are shared out until about this many warps an SM ...
LN_POOL_MIN_ROWS = 8             # ... but a block takes this many rows at least (its share is 2 * C floats)
LN_POOL_SUM_THREADS = 1024       # kSumThreads: the shares' sum, a lane an output


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



# Lane-major core (selective_scan/scan_lanes.cuh) for N <= 16: LPC lanes a channel, 16 / LPC states a
# lane. The launcher picks LPC and the chunks of L with a cost model in cycles of one warp scheduler
# (4 a SM), refitted on an H100 sweep that timed every forced plan of every preset, stage and batch
# (benchmarks/scan_variants.py; benchmarks/results/scan_plans_sweep_h100.md). A pass over chunks of
# C timesteps costs C x (issue slots a timestep: sm_90 SASS of the loop, output pass / first pass,
# times a fitted scale) x max(warps a scheduler, a latency floor: a scheduler with fewer warps than
# the floor runs no faster), plus a launch. Chunks add the first pass and a combine term a chunk and
# state. Chunk counts come from a geometric ladder, and a plan holds at most
# SCAN_LANES_MAX_WARPS_PER_SMSP warps a scheduler: beyond that more chunks only add work.
SCAN_LANES = (1, 2, 4, 8)
SCAN_LANES_MAX_STATES = 16
SCAN_LANES_WARPS_PER_BLOCK = 4   # <= lanes::kMaxWarps
SCAN_LANES_TILE = {1: 8, 2: 16, 4: 16, 8: 16, 32: 512}   # timesteps per tile (chunks are whole tiles)
SCAN_LANES_ISSUE = {1: (137, 113), 2: (74, 61), 4: (44, 34), 8: (28, 22)}
SCAN_LANES_STEP_SCALE = {1: 0.943, 2: 0.934, 4: 0.912, 8: 0.809}   # fitted: issue slots -> cycles
SCAN_LANES_ROUTES_SCALE = {1: 1.0, 2: 1.04, 4: 1.04, 8: 1.0}        # ES2D: the map gathers and scatters
SCAN_LANES_LATENCY_WARPS = {1: 1.83, 2: 3.38, 4: 1.81, 8: 1.61}  # fitted latency floor, warps a scheduler
SCAN_LANES_STATES_SCALE = 1.04   # the first pass (chunk end states) against the output pass
SCAN_LANES_CHUNK_CYCLES = 30     # combine: a chunk and state held by a lane
SCAN_LANES_PASS_CYCLES = 1540    # a launch and the warps' start
SCAN_LANES_SMSP = 4              # warp schedulers per SM
SCAN_LANES_MAX_WARPS_PER_SMSP = 16
SCAN_LANES_CHUNK_LADDER = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)
SCAN_LANES_MAX_CHUNKS = 256
# (lanes, n_chunks) forcing one plan (benchmarks and tests); lanes 0 forces the split core.
SCAN_OVERRIDE: tuple[int, int] | None = None

# Time-parallel core (selective_scan/scan_time.cuh), plain scan, N <= 16: all 32 lanes of a warp on one
# channel, each a run of SCAN_TIME_STEPS timesteps (a tile of 32 x that); plan.lanes == SCAN_TIME_LANES.
# It computes every exponential once (no first pass) and, while all its warps fit on the GPU at once, gives a
# channel two warps (each half the states), so a channel's chain of dependent work is half as long. The rule
# in scan_time_preferred is what an H200 sweep of every preset stage shape showed (benchmarks/results/
# scan_time_h200.md): it picks the faster core on each of the 32 shapes. The fused ES2D routes take it only
# when forced: on the models' channels-last maps it was slower there (the same file, second part).
SCAN_TIME_LANES = 32
SCAN_TIME_STEPS = 16             # timepar::kSteps
SCAN_TIME_WARPS_PER_BLOCK = 4    # timepar::kWarps
SCAN_TIME_BLOCKS_PER_SM = 3      # timepar::kMinBlocks (its register cap)
SCAN_TIME_MAX_SPLIT = 2          # timepar::kMaxSplit: warps a channel, each with a share of the states
SCAN_TIME_MIN_LENGTH = 256       # shorter scans leave most lanes of a tile idle
SCAN_TIME_LONG = 1024            # one warp a channel pays from this length on ...
SCAN_TIME_MAX_IDLE = 0.1         # ... with at most this share of the last tile's lanes (or wave's warps) idle
SCAN_TIME_FEW_TILES = 3          # with fewer warps than schedulers, only this many tiles a channel
SCAN_TIME_MAX_WAVES = 2          # one warp a channel, tiles not whole: at most this many waves, the last full


def scan_time_allowed(n_states: int) -> bool:
    """The time-parallel core serves plain scans and the fused ES2D routes of up to 16 states."""
    return n_states <= SCAN_LANES_MAX_STATES


def _scan_time_resident_warps(sm_count: int) -> int:
    """Warps of the time-parallel core the GPU holds at once (its register cap allows this many blocks)."""
    return SCAN_TIME_BLOCKS_PER_SM * SCAN_TIME_WARPS_PER_BLOCK * max(sm_count, 1)


def scan_time_split(channels: int, sm_count: int) -> int:
    """Warps a channel: two (each half the states, so a channel's chain of work is half as long) while
    all of them still fit on the GPU at once, else one."""
    return SCAN_TIME_MAX_SPLIT if channels * SCAN_TIME_MAX_SPLIT <= _scan_time_resident_warps(sm_count) else 1


def scan_time_plan(channels: int, length: int, chunks: int, sm_count: int) -> ScanPlan:
    """The time-parallel core over about ``chunks`` chunks of whole tiles."""
    chunk_len = _lanes_chunk_len(length, SCAN_TIME_LANES, chunks)
    return ScanPlan(SCAN_TIME_LANES, chunk_len, math.ceil(max(length, 1) / chunk_len),
                    scan_time_split(channels * chunks, sm_count))


def scan_time_preferred(channels: int, length: int, n_states: int, sm_count: int, routes: bool = False) -> bool:
    """Whether the time-parallel core beats the lane-major plans on this scan (see above): two warps a
    channel win unless the lane-major core can cut a long scan of few channels into many chunks; one warp a
    channel needs long sequences, and whole tiles unless its warps fit in one wave or in two nearly full ones
    (the shared encoder's batch of two, paper stage 2: 3072 x 1280)."""
    if routes or not scan_time_allowed(n_states) or length < SCAN_TIME_MIN_LENGTH:
        return False  # routes: forced only (see above)
    tile = SCAN_LANES_TILE[SCAN_TIME_LANES]
    tiles = math.ceil(length / tile)
    split = scan_time_split(channels, sm_count)
    if split > 1:
        return channels * split >= SCAN_LANES_SMSP * max(sm_count, 1) or tiles <= SCAN_TIME_FEW_TILES
    whole = tiles * tile <= length * (1 + SCAN_TIME_MAX_IDLE)
    resident = _scan_time_resident_warps(sm_count)
    waves = math.ceil(channels / resident)
    whole_waves = waves <= SCAN_TIME_MAX_WAVES and waves * resident <= channels * (1 + SCAN_TIME_MAX_IDLE)
    return length >= SCAN_TIME_LONG and (whole or channels <= resident or whole_waves)


@dataclass(frozen=True)
class ScanPlan:
    """How one selective scan runs: ``lanes`` lanes a channel on the lane-major core (0: the split
    core of scan_core.cuh; SCAN_TIME_LANES: the time-parallel core with ``split`` warps a channel), L cut
    into ``n_chunks`` chunks of ``chunk_len`` (two passes when > 1)."""

    lanes: int
    chunk_len: int
    n_chunks: int
    split: int = 1


def scan_lanes_fit(channels: int, per_group: int, lanes: int) -> bool:
    """The warps of this layout see at most two B/C groups (what the core stages)."""
    per_warp = 32 // lanes
    return per_group >= per_warp - 1 or channels <= 2 * per_group


def scan_lanes_allowed(channels: int, per_group: int, n_states: int, routes: bool = False) -> tuple[int, ...]:
    """Layouts of the lane-major core that serve this scan. ``routes`` (the ES2D scan): not one lane a
    channel, whose map gathers and scatters touch a cache line per lane and timestep."""
    if n_states > SCAN_LANES_MAX_STATES:
        return ()
    return tuple(lanes for lanes in SCAN_LANES
                 if scan_lanes_fit(channels, per_group, lanes) and not (routes and lanes == 1))


def _lanes_chunk_len(length: int, lanes: int, chunks: int) -> int:
    """Chunk length for about ``chunks`` chunks: whole tiles of the layout."""
    tile = SCAN_LANES_TILE[lanes]
    return math.ceil(math.ceil(max(length, 1) / max(chunks, 1)) / tile) * tile


def _lanes_cycles(channels: int, chunk_len: int, n_chunks: int, lanes: int, sm_count: int,
                  routes: bool = False) -> float:
    """Estimated cycles of the lane-major core over ``n_chunks`` chunks of ``chunk_len`` timesteps."""
    warps = math.ceil(channels * lanes / 32) * n_chunks
    load = max(warps / (SCAN_LANES_SMSP * max(sm_count, 1)), SCAN_LANES_LATENCY_WARPS[lanes])
    scale = SCAN_LANES_STEP_SCALE[lanes] * (SCAN_LANES_ROUTES_SCALE[lanes] if routes else 1.0)

    def one_pass(states: bool) -> float:
        return chunk_len * SCAN_LANES_ISSUE[lanes][int(states)] * scale * load + SCAN_LANES_PASS_CYCLES

    cycles = one_pass(False)
    if n_chunks > 1:
        cycles += SCAN_LANES_STATES_SCALE * one_pass(True)
        cycles += SCAN_LANES_CHUNK_CYCLES * n_chunks * (SCAN_LANES_MAX_STATES // lanes)
    return cycles


def _lanes_candidates(channels: int, length: int, lanes: int, sm_count: int):
    """Plans of one layout worth costing: ladder chunk counts, two tiles a chunk at least, and no more
    than SCAN_LANES_MAX_WARPS_PER_SMSP warps a scheduler once split."""
    tile = SCAN_LANES_TILE[lanes]
    warps = math.ceil(channels * lanes / 32)
    limit = SCAN_LANES_MAX_WARPS_PER_SMSP * SCAN_LANES_SMSP * max(sm_count, 1)
    seen = set()
    for chunks in SCAN_LANES_CHUNK_LADDER:
        if chunks > SCAN_LANES_MAX_CHUNKS or (chunks > 1 and (length < 2 * tile * chunks or warps * chunks > limit)):
            continue
        chunk_len = _lanes_chunk_len(length, lanes, chunks)
        plan = ScanPlan(lanes, chunk_len, math.ceil(max(length, 1) / chunk_len))
        if plan not in seen:
            seen.add(plan)
            yield plan


@functools.lru_cache(maxsize=4096)
def _best_plan(channels: int, length: int, allowed: tuple[int, ...], sm_count: int,
               routes: bool = False) -> ScanPlan:
    best: tuple[float, ScanPlan] | None = None
    for lanes in allowed:
        for plan in _lanes_candidates(channels, length, lanes, sm_count):
            cycles = _lanes_cycles(channels, plan.chunk_len, plan.n_chunks, lanes, sm_count, routes)
            if best is None or cycles < best[0]:
                best = (cycles, plan)
    assert best is not None, "no lane layout allowed"
    return best[1]


def scan_plan(channels: int, length: int, n_states: int, sm_count: int, per_group: int,
              routes: bool = False) -> ScanPlan:
    """The plan for ``channels`` = batch * dim scanned channels in groups of ``per_group`` sharing B/C
    (``routes``: the fused ES2D scan)."""
    if SCAN_OVERRIDE is not None:
        lanes, chunks = SCAN_OVERRIDE
        forced_time = lanes == SCAN_TIME_LANES and scan_time_allowed(n_states)
        if not forced_time and (lanes == 0 or lanes not in scan_lanes_allowed(channels, per_group, n_states)):
            if not SCAN_SPLIT or chunks <= 1:
                return ScanPlan(0, math.ceil(max(length, 1) / SCAN_CHUNK_ALIGN) * SCAN_CHUNK_ALIGN, 1)
            return ScanPlan(0, *scan_chunks(channels, length, n_states, sm_count))
        if forced_time:
            return scan_time_plan(channels, length, chunks, sm_count)
        chunk_len = _lanes_chunk_len(length, lanes, chunks)
        return ScanPlan(lanes, chunk_len, math.ceil(max(length, 1) / chunk_len))
    if scan_time_preferred(channels, length, n_states, sm_count, routes):
        return scan_time_plan(channels, length, 1, sm_count)
    return scan_lane_plan(channels, length, n_states, sm_count, per_group, routes)


def scan_lane_plan(channels: int, length: int, n_states: int, sm_count: int, per_group: int,
                   routes: bool = False) -> ScanPlan:
    """The lane-major core's plan (layout and chunks from the cost model), or the split core's where the
    lane-major core does not serve the scan."""
    allowed = scan_lanes_allowed(channels, per_group, n_states, routes)
    if not allowed:
        return ScanPlan(0, *scan_chunks(channels, length, n_states, sm_count))
    if not SCAN_SPLIT:
        whole = {lanes: _lanes_chunk_len(length, lanes, 1) for lanes in allowed}
        lanes = min(allowed, key=lambda k: _lanes_cycles(channels, whole[k], 1, k, sm_count, routes))
        return ScanPlan(lanes, whole[lanes], 1)
    return _best_plan(channels, length, allowed, sm_count, routes)


def scan_plan_grid(plan: ScanPlan, channels: int, n_states: int, n_chunks: int):
    """(grid, block) of one pass of ``plan`` over ``n_chunks`` chunks (grid.y)."""
    if plan.lanes == 0:
        return scan_grid(channels, n_states, n_chunks)
    if plan.lanes == SCAN_TIME_LANES:
        warps = channels * plan.split
        per_block = min(SCAN_TIME_WARPS_PER_BLOCK, warps)
        return (math.ceil(warps / per_block), n_chunks, 1), (32 * per_block, 1, 1)
    warps = math.ceil(channels * plan.lanes / 32)
    per_block = min(SCAN_LANES_WARPS_PER_BLOCK, warps)
    return (math.ceil(warps / per_block), n_chunks, 1), (32 * per_block, 1, 1)


def scan_plan_state_floats(plan: ScanPlan, channels: int, n_states: int) -> tuple[int, int]:
    """Floats of the chunk end states and of the chunk delta sums (zero without chunks)."""
    if plan.lanes == 0:
        return scan_state_floats(channels, n_states, plan.n_chunks)
    return channels * (plan.n_chunks - 1) * SCAN_LANES_MAX_STATES, channels * (plan.n_chunks - 1)


def scan_workspace_floats(channels: int, length: int, n_states: int, sm_count: int,
                          per_group: int | None = None, routes: bool = False) -> int:
    """Floats of scratch a scan needs; with ``per_group`` None, the most any grouping needs."""
    groupings = [per_group] if per_group is not None else [channels, 31, 15, 7, 3, 1]
    need = 0
    for group in groupings:
        plan = scan_plan(channels, length, n_states, sm_count, max(1, min(group, channels)), routes)
        need = max(need, sum(scan_plan_state_floats(plan, channels, n_states)))
    return need

def es2d_project_splits(batch: int, length: int, proj_rows: int, dim: int, sm_count: int,
                        rows_per_block: int) -> int:
    """Split the channel sum of the projection over blocks when the map is too small to fill the GPU."""
    blocks = math.ceil(length / ES2D_PROJ_L) * math.ceil(proj_rows / rows_per_block) * batch * 4
    want = math.ceil(2 * sm_count / blocks)
    return max(1, min(want, dim // (2 * ES2D_PROJ_D)))


def es2d_project_rows(batch: int, length: int, proj_rows: int, dim: int, sm_count: int) -> int:
    """Rows a projection block computes: ES2D_PROJ_WIDE_C or ES2D_PROJ_C (see the constants above)."""
    if proj_rows > ES2D_PROJ_WIDE_C:
        return ES2D_PROJ_C
    blocks = math.ceil(length / ES2D_PROJ_L) * batch * 4
    wide_map = dim >= ES2D_PROJ_WIDE_MIN_CHANNELS and length >= 2 * ES2D_PROJ_L
    if wide_map or blocks >= ES2D_PROJ_WIDE_MIN_BLOCKS_PER_SM * sm_count:
        return ES2D_PROJ_WIDE_C
    return ES2D_PROJ_C


def es2d_project_grid(batch: int, length: int, proj_rows: int, splits: int, rows_per_block: int):
    grid = (math.ceil(length / ES2D_PROJ_L), math.ceil(proj_rows / rows_per_block), batch * 4 * splits)
    return grid, (ES2D_PROJ_L, 1, 1)


def es2d_merge_grid(batch: int, dim: int, length: int):
    grid = (math.ceil(length / ES2D_MERGE_L), math.ceil(dim / ES2D_MERGE_D), batch * 4)
    return grid, (ES2D_MERGE_WARPS * 32, 1, 1)


def es2d_merge_norm_vectorized(dim: int, itemsize: int, length: int, z_pitch: int) -> bool:
    """Whether the merge-norm kernel can take its 16-byte form (es2d_fwd.cu merge_norm_vec): 16-bit types,
    whole 16-byte chunks of channels (at most ES2D_NORM_VEC_MAX_CHUNKS a lane) and of route positions, z pixels
    at whole chunks (the launcher checks the arrays' alignment too)."""
    chunk = 16 // itemsize
    return (itemsize == 2 and dim % chunk == 0 and dim // chunk <= 32 * ES2D_NORM_VEC_MAX_CHUNKS
            and length % chunk == 0 and z_pitch % chunk == 0)


def es2d_merge_norm_positions(dim: int, itemsize: int, vectorized: bool = False) -> int:
    """Route positions a merge-norm block stages: the most (a power of two up to ES2D_NORM_MAX_POSITIONS) whose
    tile fits the block's shared memory, 0 where none does. The 16-byte form's tile is P x D (P at least 8);
    the other's D x pitch (es2d_fwd.cu norm_pitch: P + 2 elements a channel at 16 bits, P + 1 at 32)."""
    pad = 0 if vectorized else (2 if itemsize == 2 else 1)
    positions = ES2D_NORM_MAX_POSITIONS
    while positions and dim * (positions + pad) * itemsize > ES2D_NORM_SMEM_BYTES:
        positions //= 2
    return positions if positions >= (8 if vectorized else 1) else 0


def es2d_merge_norm_plan(batch: int, dim: int, length: int, itemsize: int, vectorized: bool, sm_count: int) -> int:
    """Route positions a merge-norm block stages for this layer: the most that fit
    (:func:`es2d_merge_norm_positions`), halved while the grid would give fewer than ES2D_NORM_MIN_BLOCKS_PER_SM
    blocks an SM (the narrow maps of the deep stages), down to 8 (the 16-byte form's one run a row) or 1."""
    positions = es2d_merge_norm_positions(dim, itemsize, vectorized)
    least = 8 if vectorized else 1
    while positions > least and math.ceil(length / positions) * 4 * batch < ES2D_NORM_MIN_BLOCKS_PER_SM * sm_count:
        positions //= 2
    return positions


def es2d_merge_norm_grid(batch: int, length: int, positions: int):
    return (math.ceil(length / positions), batch * 4, 1), (ES2D_NORM_WARPS * 32, 1, 1)


def es2d_conv_split_tile(batch: int, dim: int, h: int, w: int, itemsize: int, sm_count: int) -> int:
    """Route positions a side of a conv split tile: ES2D_CONV_TILE, or half of it where the large tiles would
    give fewer than ES2D_CONV_MIN_BLOCKS_PER_SM blocks an SM (small maps, few channels) or lie mostly outside
    the routes (paper stage 4 at 512x640: 8 x 10 positions in a 16 x 16 tile). Fitted on the H200
    (benchmarks/results/conv_gather_h200.md, both tiles forced at batch 1 and 2)."""
    tile = ES2D_CONV_TILE
    blocks = math.prod(es2d_conv_split_grid(batch, dim, h, w, itemsize, tile)[0])
    h2, w2 = (h + 1) // 2, (w + 1) // 2
    fill = h2 * w2 / (math.ceil(h2 / tile) * math.ceil(w2 / tile) * tile * tile)
    return tile if blocks >= ES2D_CONV_MIN_BLOCKS_PER_SM * sm_count and fill >= ES2D_CONV_MIN_FILL else tile // 2


def es2d_conv_split_grid(batch: int, dim: int, h: int, w: int, itemsize: int, tile: int):
    """Channel groups fastest, so the groups of one tile (which share 32-byte sectors) run together."""
    h2, w2 = (h + 1) // 2, (w + 1) // 2
    grid = (math.ceil(dim / (ES2D_CONV_BYTES // itemsize)), math.ceil(h2 / tile) * math.ceil(w2 / tile), batch)
    return grid, (ES2D_CONV_THREADS, 1, 1)


def ldc_grid(batch: int, cout: int, height: int, width: int):
    grid = (math.ceil(width / LDC_TILE_W), math.ceil(height / LDC_TILE_H), batch * math.ceil(cout / LDC_OUT))
    return grid, (LDC_THREADS, 1, 1)


def ln_pool_max_channels(itemsize: int) -> int:
    """Widest row of the pooled LayerNorm: 32 lanes of the largest K, 16 bytes a word."""
    return 32 * max(LN_POOL_CHUNKS) * (16 // itemsize)


def ln_pool_chunks(channels: int, itemsize: int) -> tuple[int, int]:
    """(K, L) of the pooled LayerNorm for rows of ``channels`` (16-byte runs): K the fewest 16-byte words a lane
    that cover a row with 32 lanes (the entry point), L the lanes that read a row."""
    words = max(1, channels * itemsize // 16)
    chunks = next((k for k in LN_POOL_CHUNKS if 32 * k >= words), None)
    if chunks is None:
        raise ValueError(f"rows of {channels} channels are wider than {ln_pool_max_channels(itemsize)}")
    return chunks, 32 if chunks > 1 else min(32, 1 << (words - 1).bit_length())


def ln_pool_blocks(batch: int, rows: int, channels: int, itemsize: int, sm_count: int) -> int:
    """Blocks an image of the pooled LayerNorm's pass: its units (a row group's rows) shared out over about
    LN_POOL_WARPS_PER_SM warps an SM, whole units a warp (LN_POOL_MIN_ROWS rows a block at least). Few units a
    warp on small maps: there the pass waits on its chain of latencies, not on bandwidth."""
    _, width = ln_pool_chunks(channels, itemsize)
    unit_rows, warps = 32 // width, LN_POOL_THREADS // 32
    units = math.ceil(rows / unit_rows) * batch
    units_a_warp = max(1, math.ceil(units / (LN_POOL_WARPS_PER_SM * sm_count)))
    block_rows = warps * unit_rows
    per_block = math.ceil(max(LN_POOL_MIN_ROWS, units_a_warp * block_rows) / block_rows) * block_rows
    return max(1, math.ceil(rows / per_block))


def ln_pool_rows_per_block(rows: int, blocks: int) -> int:
    """Rows a block when an image's rows are shared out over ``blocks`` (the last block may take fewer or none)."""
    return max(1, math.ceil(rows / blocks))


def ln_pool_grid(batch: int, blocks: int):
    return (blocks, batch, 1), (LN_POOL_THREADS, 1, 1)


def ln_pool_sum_grid(batch: int, outputs: int):
    return (math.ceil(outputs / 32), batch, 1), (LN_POOL_SUM_THREADS, 1, 1)


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
