// Time-parallel selective-scan core for N <= 16: one warp a channel, each lane a run of K timesteps.
//
// Why: at batch 1 the lane-major core has too few channels to fill the GPU, so it cuts L into chunks and
// scans them twice (end states first, then outputs): every exponential is computed twice, and its warps,
// at 1-3 a scheduler, wait on latency. Here the 32 lanes of a warp split a tile of 32 * K timesteps of
// one channel: lane i owns steps i*K .. i*K+K-1 and all 16 states. Per state a lane forms its steps'
// decays a = exp2(dt * A2) and inputs b = dt * u * B, composes them into one step (A, B), and an
// inclusive scan over the lanes (five shuffles; lane 0 starts from the state entering the tile) gives each
// lane the state entering its run; the lane then walks its K steps again from that state (one multiply-
// add a step, no second exponential) and adds C * h into its outputs. Every exponential is computed
// once and every lane works on its own timesteps (no hand-over of steps between lanes).
// The states run as a loop (the carried states and A live in shared memory, so the loop body is small
// enough for the instruction cache), each state's B/C rows requested while the state before it runs.
// A warp's pace is set by its chain of dependent work (shuffles, the K-step compose and output chains),
// not by the scheduler it shares: so while all warps fit on the GPU at once a channel gets two warps,
// each with half the states, whose partial outputs meet in shared memory once a tile (p.split).
// Long sequences with few channels can still be cut into chunks (grid.y): the first pass (STATES) keeps
// only the carried state and delta sum, the output pass starts from the same combination as the
// lane-major core (chunk_start_state).
#pragma once
#include "scan_lanes.cuh"

namespace fe {
namespace timepar {

constexpr int kStates = 16;  // state slots of a channel (N <= 16)
constexpr int kWarps = 4;    // warps per block (launch_params.SCAN_TIME_WARPS_PER_BLOCK)
constexpr int kSteps = 16;   // timesteps a lane (launch_params.SCAN_TIME_STEPS); a tile is 32 * kSteps
constexpr int kGroup = 1;    // states a lane advances together (two were slower under the register cap)
constexpr int kMaxSplit = 2;  // warps a channel at most, each with its share of the states (p.split)
constexpr int kMinBlocks = 3;  // blocks an SM (launch_params.SCAN_TIME_BLOCKS_PER_SM): at most 168 registers
constexpr int kYStride = kSteps + 4;  // a lane's partial outputs in the hand-over (16-byte stores, no conflicts)

// Per warp: A (pre-scaled by log2 e) and the state carried into the next tile, one slot a state; every
// lane reads them (broadcast) and every lane writes the same carried value (no hand-over to wait on).
// y: the partial outputs the other warps of a channel hand to its first, by tile parity.
struct __align__(16) Smem {
    float A2[kStates];
    float h[kStates];
    float y[2][32 * kYStride];
};

// The split warps of one channel wait for each other (named barrier 1 + the channel's slot in the block).
__device__ __forceinline__ void channel_barrier(int slot, int split) {
    asm volatile("bar.sync %0, %1;" ::"r"(1 + slot), "r"(32 * split) : "memory");
}

// SPLIT: warps a channel (a template parameter, so each form gets its own register allocation).
// ROUTES: the fused ES2D scan: u gathered from the map along the channel's route, delta the caller's float32
// rows or formed from the projections' R dt rows, B/C the projections' rows, outputs (TO, float32) written
// into the map at the route's pixels (padding positions are scanned, not written).
template <typename TU, typename TW, typename TO, bool ROUTES, bool STATES, int SPLIT>
__device__ __forceinline__ void scan_time_split(const scan::Params& p, Smem* smem) {
    using TD = typename lanes::Pick<ROUTES, float, TU>::type;  // delta rows
    constexpr int K = kSteps, TL = 32 * K, KG = kGroup;
    constexpr int KU = K / Word<TU>::kPerWord, KW = K / Word<TW>::kPerWord, KD = K / Word<TD>::kPerWord;
    // 16-bit B/C: the next group's rows are requested while a group runs (two register sets); float32
    // rows take twice the registers, which the cap of kMinBlocks blocks an SM does not leave.
    constexpr bool kRowsAhead = sizeof(TW) < 4;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    Smem& sm = smem[warp];
    constexpr int split = SPLIT, share = kStates / SPLIT;   // warps a channel; states a warp
    const int part = warp % split, slot = warp / split;      // share of the states; channel in the block
    float (&ybuf)[2][32 * kYStride] = smem[slot * split].y;  // the channel's hand-over
    const int s0 = part * share;                             // first state of this warp's share
    const long total = (long)p.batch * p.dim;
    const long chan_l = ((long)blockIdx.x * (blockDim.x >> 5) + warp) / split;
    if (chan_l >= total) return;  // the channel's warps all idle (no block-wide barriers below)
    const int chan = (int)chan_l;
    const int b = chan / p.dim, q = chan % p.dim, L = p.L, N = p.N;
    const int g = q / p.per_group;
    const int chunk = blockIdx.y;
    const int l_begin = chunk * p.chunk_len, l_end = min(L, l_begin + p.chunk_len);
    const long seq = (long)chan * L;
    // Routes: the channel's plane of the map and the route's place in it (step l of the route is pixel
    // (2i + rp, 2j + cp), (i, j) running row by row (rp = 0) or column by column).
    long map_base = 0;
    int rp = 0, cp = 0, extent = 1;
    bool row_major = true;
    if (ROUTES) {
        const int k_route = q / p.dim_route, d_route = q % p.dim_route;
        rp = k_route & 1;
        cp = k_route >> 1;
        row_major = rp == 0;
        extent = row_major ? p.w2 : p.h2;
        map_base = (long)b * p.dim_route * p.h * p.w + (long)d_route * p.map_cs;
    }
    // Map offsets of route steps t0 .. t0+K-1 (-1: padding, or past the end): one division, then a step at
    // a time along the route.
    auto route_offsets = [&](int t0, int valid, int (&off)[K]) {
        scan::RouteCursor c{t0 / extent, t0 % extent, extent};
#pragma unroll
        for (int k = 0; k < K; ++k) {
            const int row = 2 * (row_major ? c.major : c.minor) + rp, col = 2 * (row_major ? c.minor : c.major) + cp;
            off[k] = k < valid && row < p.h && col < p.w ? (row * p.w + col) * p.map_ps : -1;
            c.advance(1);
        }
    };
    const TU* u_ptr = static_cast<const TU*>(p.u) + (ROUTES ? map_base : seq);
    // delta rows: the caller's (plain scan; ES2D when given), or ES2D's R dt rows with the channel's weights
    const bool own_delta = ROUTES && p.delta == nullptr;
    // rows of the channel's B/C group (routes: of its projections: R dt rows, then N of B and N of C)
    const long group_base = ((long)b * p.groups + g) * (ROUTES ? p.proj_rows : N) * L;
    const TD* d_ptr = own_delta ? static_cast<const TD*>(p.B) + group_base : static_cast<const TD*>(p.delta) + seq;
    const float* dt_w = own_delta ? p.dt_w + (long)q * p.dt_rank : nullptr;
    const int ranks = own_delta ? p.dt_rank : 1;
    const bool has_z = !ROUTES && !STATES && p.z != nullptr;
    const TU* z_ptr = static_cast<const TU*>(p.z) + (has_z ? seq : 0);
    TO* o_ptr = static_cast<TO*>(p.out) + (ROUTES ? map_base : seq);
    const long bc_base = group_base + (ROUTES ? (long)p.dt_rank * L : 0);
    const TW* B_ptr = static_cast<const TW*>(p.B) + bc_base;
    const TW* C_ptr = static_cast<const TW*>(p.C) + bc_base + (ROUTES ? (long)N * L : 0);
    const float Dv = p.D ? __ldg(p.D + q) : 0.f;
    const float bias = p.delta_bias ? __ldg(p.delta_bias + q) : 0.f;
    const bool vec_u = p.vec_u != 0, vec_bc = p.vec_bc != 0;

    // A pre-scaled by log2 e (0 past N) and the state entering the first tile, of every state (each warp
    // of a split channel then uses its share).
    {
        float A2[kStates], h[kStates];
#pragma unroll
        for (int n = 0; n < kStates; ++n) {
            h[n] = 0.f;
            float a = n < N ? __ldg(p.A + (long)q * N + n) : 0.f;
            if (p.a_is_log && n < N) a = -expf(a);
            A2[n] = a * kLog2e;
        }
        if (!STATES && chunk > 0) lanes::chunk_start_state<kStates>(p, chan, chunk, 0, A2, h);
        if (lane == 0) {
            lanes::sts<kStates>(sm.A2, A2);
            lanes::sts<kStates>(sm.h, h);
        }
        __syncwarp();
    }
    const int s_end = min(N, s0 + share);

    // B/C of the lane's steps for KG states as raw words.
    struct Rows {
        unsigned b[KG][KW], c[KG][KW];
    };
    // Whole tiles with aligned rows and all KG states present: 16-byte loads, no tests.
    auto load_rows = [&](int n0, int t0, Rows& r) {
#pragma unroll
        for (int j = 0; j < KG; ++j)
#pragma unroll
            for (int v = 0; v < KW / 4; ++v) {
                const uint4 qb = __ldg(reinterpret_cast<const uint4*>(B_ptr + (long)(n0 + j) * L + t0) + v);
                r.b[j][4 * v] = qb.x; r.b[j][4 * v + 1] = qb.y; r.b[j][4 * v + 2] = qb.z; r.b[j][4 * v + 3] = qb.w;
                if (!STATES) {
                    const uint4 qc = __ldg(reinterpret_cast<const uint4*>(C_ptr + (long)(n0 + j) * L + t0) + v);
                    r.c[j][4 * v] = qc.x; r.c[j][4 * v + 1] = qc.y; r.c[j][4 * v + 2] = qc.z; r.c[j][4 * v + 3] = qc.w;
                }
            }
    };
    // Anywhere else: element by element where needed, zeros past the end and for states past N
    // (which then keep h = 0 and add nothing).
    auto load_rows_checked = [&](int n0, int t0, int valid, Rows& r) {
#pragma unroll
        for (int j = 0; j < KG; ++j) {
            const int rv = n0 + j < N ? valid : 0;
            lanes::load_run<TW, K>(B_ptr + (long)(n0 + j) * L + t0, rv, vec_bc, r.b[j]);
            if (!STATES) lanes::load_run<TW, K>(C_ptr + (long)(n0 + j) * L + t0, rv, vec_bc, r.c[j]);
        }
    };

    float dt[K], du[K], y[K], dts = 0.f;
    // States n0 .. n0+KG-1 over the tile (independent chains for the scheduler).
    auto run_group = [&](int n0, const Rows& r) {
        float A2[KG], hin[KG];
        lanes::lds<KG>(sm.A2 + n0, A2);
        lanes::lds<KG>(sm.h + n0, hin);
        float a[KG][K], bx[KG][K], Al[KG], Bl[KG];
#pragma unroll
        for (int j = 0; j < KG; ++j) {
#pragma unroll
            for (int k = 0; k < K; ++k) {
                a[j][k] = exp2_fast(dt[k] * A2[j]);
                bx[j][k] = du[k] * Word<TW>::get(r.b[j][k / Word<TW>::kPerWord], k % Word<TW>::kPerWord);
            }
            // The lane's K steps as one: h -> Al * h + Bl (lane 0 from the state entering the tile);
            // Al = exp2(A2 * the lane's delta sum), the product of the steps' decays.
            Al[j] = exp2_fast(dts * A2[j]);
            Bl[j] = bx[j][0];
        }
#pragma unroll
        for (int k = 1; k < K; ++k)
#pragma unroll
            for (int j = 0; j < KG; ++j) Bl[j] = fmaf(a[j][k], Bl[j], bx[j][k]);
#pragma unroll
        for (int j = 0; j < KG; ++j)
            if (lane == 0) Bl[j] = fmaf(Al[j], hin[j], Bl[j]);
        // Inclusive scan over the lanes: Bl becomes the state after this lane's run.
#pragma unroll
        for (int off = 1; off < 32; off *= 2) {
            float Ap[KG], Bp[KG];
#pragma unroll
            for (int j = 0; j < KG; ++j) {
                Ap[j] = __shfl_up_sync(0xffffffffu, Al[j], off);
                Bp[j] = __shfl_up_sync(0xffffffffu, Bl[j], off);
            }
#pragma unroll
            for (int j = 0; j < KG; ++j)
                if (lane >= off) {
                    Bl[j] = fmaf(Al[j], Bp[j], Bl[j]);
                    Al[j] *= Ap[j];
                }
        }
        float hout[KG];
#pragma unroll
        for (int j = 0; j < KG; ++j) {
            if (!STATES) {
                float hs = __shfl_up_sync(0xffffffffu, Bl[j], 1);
                if (lane == 0) hs = hin[j];
#pragma unroll
                for (int k = 0; k < K; ++k) {
                    hs = fmaf(a[j][k], hs, bx[j][k]);
                    y[k] = fmaf(Word<TW>::get(r.c[j][k / Word<TW>::kPerWord], k % Word<TW>::kPerWord), hs, y[k]);
                }
            }
            hout[j] = __shfl_sync(0xffffffffu, Bl[j], 31);
        }
        lanes::sts<KG>(sm.h + n0, hout);  // every lane the same values: each reads back its own write
    };

    float dsum = 0.f;  // STATES: this lane's share of the chunk's sum of dt
    for (int l0 = l_begin; l0 < l_end; l0 += TL) {
        const int t0 = l0 + lane * K, valid = l_end - t0;
        unsigned ru[KU], rd[KD], rz[KU];
        float dl[ROUTES ? K : 1];  // ES2D: delta before bias and softplus
        if constexpr (ROUTES) {
            // u along the route (step by step: each lands on its own pixel), delta from its rows
            int off[K];
            route_offsets(t0, valid, off);
            lanes::gather_run<true, TU, K>(u_ptr, [&](int k) { return off[k]; }, ru, off);
#pragma unroll
            for (int k = 0; k < K; ++k) dl[k] = 0.f;
            for (int r = 0; r < ranks; ++r) {
                lanes::load_run<TD, K>(d_ptr + (long)r * L + t0, valid, vec_bc, rd);
                const float wr = own_delta ? __ldg(dt_w + r) : 1.f;
#pragma unroll
                for (int k = 0; k < K; ++k) dl[k] = fmaf(wr, __uint_as_float(rd[k]), dl[k]);
            }
        } else {
            lanes::load_run<TU, K>(u_ptr + t0, valid, vec_u, ru);
            lanes::load_run<TU, K>(d_ptr + t0, valid, vec_u, rd);
            if (has_z && part == 0) lanes::load_run<TU, K>(z_ptr + t0, valid, vec_u, rz);  // the gate: first warp only
        }
        const bool whole = vec_bc && l0 + TL <= l_end && N % KG == 0;  // rows load as 16-byte vectors
        Rows ra, rb;
        if (whole && kRowsAhead && s0 < s_end) load_rows(s0, t0, ra);

        // Per-step products: dt (0 past the end, so those steps keep the state), dt*u, D*u.
        dts = 0.f;
#pragma unroll
        for (int k = 0; k < K; ++k) {
            float dtv;
            if constexpr (ROUTES) dtv = dl[k] + bias;
            else dtv = Word<TU>::get(rd[k / Word<TU>::kPerWord], k % Word<TU>::kPerWord) + bias;
            if (p.softplus) dtv = softplus(dtv);
            dtv = k < valid ? dtv : 0.f;
            const float uv = Word<TU>::get(ru[k / Word<TU>::kPerWord], k % Word<TU>::kPerWord);
            dt[k] = dtv;
            du[k] = dtv * uv;
            dts += dtv;
            if (!STATES) y[k] = part == 0 ? Dv * uv : 0.f;
        }
        if (STATES) dsum += dts;

        if (whole && kRowsAhead) {
            // Two groups an iteration, alternating register sets: a group's rows arrive while the
            // group before it runs.
#pragma unroll 1
            for (int n0 = s0; n0 < s_end; n0 += 2 * KG) {
                const bool second = n0 + KG < s_end;
                if (second) load_rows(n0 + KG, t0, rb);
                run_group(n0, ra);
                if (!second) break;
                if (n0 + 2 * KG < s_end) load_rows(n0 + 2 * KG, t0, ra);
                run_group(n0 + KG, rb);
            }
        } else {
#pragma unroll 1
            for (int n0 = s0; n0 < s_end; n0 += KG) {
                if (whole) load_rows(n0, t0, ra);
                else load_rows_checked(n0, t0, valid, ra);
                run_group(n0, ra);
            }
        }

        if (!STATES) {
            // The other warps' partial sums over their states go to the first, which writes the outputs.
            // Two buffers by tile parity: a warp writes one again only after the barrier of the tile
            // between, which the first passes only once it has read it.
            float* yb = ybuf[((l0 - l_begin) / TL) & 1];
            if constexpr (SPLIT > 1) {
                if (part != 0) lanes::sts<K>(yb + lane * kYStride, y);
                channel_barrier(slot, split);
            }
            if (part == 0 && valid > 0) {
                if constexpr (SPLIT > 1) {
                    float other[K];
                    lanes::lds<K>(yb + lane * kYStride, other);
#pragma unroll
                    for (int k = 0; k < K; ++k) y[k] += other[k];
                }
                if constexpr (ROUTES) {
                    int off[K];
                    route_offsets(t0, valid, off);
#pragma unroll
                    for (int k = 0; k < K; ++k)
                        if (off[k] >= 0) o_ptr[off[k]] = from_float<TO>(y[k]);
                } else {
#pragma unroll
                    for (int k = 0; k < K; ++k)
                        if (has_z) y[k] *= silu(Word<TU>::get(rz[k / Word<TU>::kPerWord], k % Word<TU>::kPerWord));
                    lanes::store_run<TO, K>(o_ptr + t0, valid, vec_u, y);
                }
            }
        }
    }

    if (STATES) {
#pragma unroll
        for (int o = 16; o > 0; o /= 2) dsum += __shfl_xor_sync(0xffffffffu, dsum, o);
        const int n_prev = p.n_chunks - 1;
        if (lane == 0) {
            float* st = p.states + ((long)chan * n_prev + chunk) * kStates;
            for (int n = s0; n < s0 + share; ++n) st[n] = sm.h[n];
            if (part == 0) p.dsums[(long)chan * n_prev + chunk] = dsum;
        }
    }
}

template <typename TU, typename TW, typename TO, bool ROUTES, bool STATES>
__device__ __forceinline__ void scan_time(const scan::Params& p, Smem* smem) {
    if (p.split == kMaxSplit) scan_time_split<TU, TW, TO, ROUTES, STATES, kMaxSplit>(p, smem);
    else scan_time_split<TU, TW, TO, ROUTES, STATES, 1>(p, smem);
}

}  // namespace timepar
}  // namespace fe
