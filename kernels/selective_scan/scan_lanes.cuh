// Lane-major selective-scan core for N <= 16, shared by the plain scan and the fused ES2D scan.
//
// Why: the exponentials bound the scan (one ex2 a state and step; the special-function unit
// does 16 a cycle per SM), so every other instruction is overhead to squeeze. Here LPC lanes
// (1, 2, 4 or 8) own one channel and SPL = 16 / LPC of its states each, so per state and step
// the work is five instructions: dt*A2 (A pre-scaled by log2 e), ex2, du*B, the state update
// and C*h, plus B and C read as float32 from shared memory (16-byte reads, several states at
// once). The per-timestep work (softplus, dt*u, D*u, the gate, loads and stores) is split over
// the lanes of a channel: lane s prepares timesteps s*K .. s*K+K-1 of each tile (K = T / LPC)
// and hands dt and dt*u to the others through shared memory; the partial sums over states are
// added the same way, once per tile, and lane s writes the outputs of its own timesteps.
//
// B and C: the channels of a warp share one B/C group (the launcher makes sure they span at
// most two), so the warp stages each tile of B and C once, converted to float32, for all its
// channels: lane i loads row i & 15 of B (i < 16) or C (i >= 16) of the tile.
//
// Inputs are requested two tiles ahead as raw bits, into two register sets that the tile loop
// (unrolled by two) alternates: copying one set into the other would wait on the requests.
// ES2D routes: delta = sum_r dt_projs_weight[k, d, r] * proj[b, k, r, l] over the R dt rows of
// the projections (float32, ranks added in order). Rank 0 is requested with the other inputs;
// ranks 1..R-1 are read when the lane prepares its timesteps (L1 hits: the channels of a warp
// read the same rows, and the warp's lanes ask for them into L1 two tiles ahead). With a float32
// delta given (p.delta, rows in route order), it is read like the plain scan's instead: for wide
// layers (large R) a library GEMM forms it for less than the rank loop costs here.
// Long sequences with few channels are cut into chunks (grid.y) and scanned in two passes:
// STATES computes each chunk's end state from zero and its sum of delta; the output pass
// starts chunk c from sum_j exp2(A2 * R_j) * end_j over the chunks j < c, R_j being the delta
// sum of chunks j+1 .. c-1 (independent terms, so their loads overlap).
#pragma once
#include "scan_core.cuh"

namespace fe {
namespace lanes {

constexpr int kStates = 16;   // state slots of a channel (N <= 16)
constexpr int kMaxWarps = 4;  // warps per block, at most (kernels/launch_params.py)

template <bool C, typename A, typename B> struct Pick { using type = A; };
template <typename A, typename B> struct Pick<false, A, B> { using type = B; };

template <int LPC> struct Shape {
    static constexpr int SPL = kStates / LPC;         // states per lane
    static constexpr int CPW = 32 / LPC;              // channels per warp
    static constexpr int T = LPC == 1 ? 8 : 16;       // timesteps per tile
    static constexpr int K = T / LPC;                 // timesteps each lane prepares
    static constexpr int kRow = 2 * kStates;          // staged floats per timestep: B[16], C[16]
    static constexpr int kSlot = T * kRow + kStates;  // floats per staged group (the second 16 banks over)
    static constexpr int kX = T + 4;                  // per-channel stride of the dt / dt*u hand-over
    static constexpr int kRed = T + 4;                // per-lane stride of the partial sums
};

template <int LPC> struct __align__(16) Smem {
    using S = Shape<LPC>;
    float bc[2 * S::kSlot];
    float xdt[LPC > 1 ? S::CPW * S::kX : 4];
    float xdu[LPC > 1 ? S::CPW * S::kX : 4];
    float red[LPC > 1 ? 32 * S::kRed : 4];
};

// K consecutive elements from p as packed 32-bit words; zeros past `valid`. `vec`: p is aligned
// to the run's size (or 16 bytes), so whole runs load with 4-, 8- or 16-byte accesses.
template <typename T, int K>
__device__ __forceinline__ void load_run(const T* p, int valid, bool vec, unsigned (&w)[K / Word<T>::kPerWord]) {
    constexpr int kPW = Word<T>::kPerWord, W = K / kPW, kBytes = K * (int)sizeof(T);
    if (vec && valid >= K) {
        if constexpr (kBytes >= 16) {
#pragma unroll
            for (int v = 0; v < kBytes / 16; ++v) {
                const uint4 q = __ldg(reinterpret_cast<const uint4*>(p) + v);
                w[4 * v] = q.x; w[4 * v + 1] = q.y; w[4 * v + 2] = q.z; w[4 * v + 3] = q.w;
            }
        } else if constexpr (kBytes == 8) {
            const uint2 q = __ldg(reinterpret_cast<const uint2*>(p));
            w[0] = q.x; w[1] = q.y;
        } else {
            w[0] = __ldg(reinterpret_cast<const unsigned*>(p));
        }
    } else {
#pragma unroll
        for (int i = 0; i < W; ++i) {
            unsigned acc = 0;
#pragma unroll
            for (int e = 0; e < kPW; ++e) {
                const int k = i * kPW + e;
                acc |= (k < valid ? scan::load_bits(p, k) : 0u) << (16 * e);
            }
            w[i] = acc;
        }
    }
}

// ES2D: K map values at offsets offset_of(0), offset_of(1), ... (called in that order) packed into words
// (two 16-bit values a word), the offsets kept in off. GUARDED: a negative offset (padding, past the
// chunk) reads as 0; otherwise every offset is known to be in the map and loads without a test.
template <bool GUARDED, typename T, int K, typename OffsetOf>
__device__ __forceinline__ void gather_run(const T* p, OffsetOf offset_of, unsigned (&w)[K / Word<T>::kPerWord],
                                           int (&off)[K]) {
    constexpr int kPW = Word<T>::kPerWord;
#pragma unroll
    for (int i = 0; i < K / kPW; ++i) {
        unsigned acc = 0;
#pragma unroll
        for (int e = 0; e < kPW; ++e) {
            const int k = i * kPW + e;
            off[k] = offset_of(k);
            acc |= (!GUARDED || off[k] >= 0 ? scan::load_bits(p, off[k]) : 0u) << (16 * e);
        }
        w[i] = acc;
    }
}

// K values to p[0..valid); one vector store when `vec` and the run is whole.
template <typename T, int K>
__device__ __forceinline__ void store_run(T* p, int valid, bool vec, const float (&v)[K]) {
    constexpr int kPW = Word<T>::kPerWord, W = K / kPW, kBytes = K * (int)sizeof(T);
    if (vec && valid >= K) {
        unsigned w[W];
#pragma unroll
        for (int i = 0; i < W; ++i) {
            unsigned acc = 0;
#pragma unroll
            for (int e = 0; e < kPW; ++e) acc |= Word<T>::bits(from_float<T>(v[i * kPW + e])) << (16 * e);
            w[i] = acc;
        }
        if constexpr (kBytes >= 16) {
#pragma unroll
            for (int q = 0; q < kBytes / 16; ++q)
                reinterpret_cast<uint4*>(p)[q] = make_uint4(w[4 * q], w[4 * q + 1], w[4 * q + 2], w[4 * q + 3]);
        } else if constexpr (kBytes == 8) {
            *reinterpret_cast<uint2*>(p) = make_uint2(w[0], w[1]);
        } else {
            *reinterpret_cast<unsigned*>(p) = w[0];
        }
    } else {
#pragma unroll
        for (int k = 0; k < K; ++k)
            if (k < valid) p[k] = from_float<T>(v[k]);
    }
}

template <int N> __device__ __forceinline__ void lds(const float* p, float (&v)[N]) {
    if constexpr (N % 4 == 0) {
#pragma unroll
        for (int i = 0; i < N; i += 4) {
            const float4 q = *reinterpret_cast<const float4*>(p + i);
            v[i] = q.x; v[i + 1] = q.y; v[i + 2] = q.z; v[i + 3] = q.w;
        }
    } else if constexpr (N == 2) {
        const float2 q = *reinterpret_cast<const float2*>(p);
        v[0] = q.x; v[1] = q.y;
    } else {
#pragma unroll
        for (int i = 0; i < N; ++i) v[i] = p[i];
    }
}

template <int N> __device__ __forceinline__ void sts(float* p, const float (&v)[N]) {
    if constexpr (N % 4 == 0) {
#pragma unroll
        for (int i = 0; i < N; i += 4) *reinterpret_cast<float4*>(p + i) = make_float4(v[i], v[i + 1], v[i + 2], v[i + 3]);
    } else if constexpr (N == 2) {
        *reinterpret_cast<float2*>(p) = make_float2(v[0], v[1]);
    } else {
#pragma unroll
        for (int i = 0; i < N; ++i) p[i] = v[i];
    }
}

// The state chunk `chunk` of channel `chan` starts from, for the SPL states from `first` on:
// h = sum_j exp2(A2 * R_j) * end_j over the chunks j < chunk, R_j being the delta sum of chunks
// j+1 .. chunk-1 (independent terms, so their loads overlap). end_j and the sums come from the first pass.
template <int SPL>
__device__ __forceinline__ void chunk_start_state(const scan::Params& p, int chan, int chunk, int first,
                                                  const float (&A2)[SPL], float (&h)[SPL]) {
    const int n_prev = p.n_chunks - 1;
    const float* ds = p.dsums + (long)chan * n_prev;
    const float* st = p.states + (long)chan * n_prev * kStates + first;
    float R = 0.f;
    for (int j0 = chunk - 1; j0 >= 0; j0 -= 4) {
        float sums[4], v[4][SPL];
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            const int j = j0 - i;
            sums[i] = 0.f;
#pragma unroll
            for (int k = 0; k < SPL; ++k) v[i][k] = 0.f;
            if (j >= 0) {
                sums[i] = __ldg(ds + j);
                if constexpr (SPL % 4 == 0) {
#pragma unroll
                    for (int k = 0; k < SPL; k += 4) {
                        const float4 x = __ldg(reinterpret_cast<const float4*>(st + (long)j * kStates + k));
                        v[i][k] = x.x; v[i][k + 1] = x.y; v[i][k + 2] = x.z; v[i][k + 3] = x.w;
                    }
                } else {
                    const float2 x = __ldg(reinterpret_cast<const float2*>(st + (long)j * kStates));
                    v[i][0] = x.x; v[i][1] = x.y;
                }
            }
        }
#pragma unroll
        for (int i = 0; i < 4; ++i) {
#pragma unroll
            for (int k = 0; k < SPL; ++k) h[k] = fmaf(exp2_fast(A2[k] * R), v[i][k], h[k]);
            R += sums[i];
        }
    }
}

// STATES: the first pass (chunk end states); otherwise the scan with outputs.
template <typename TU, typename TW, typename TO, int LPC, bool ROUTES, bool STATES>
__device__ __forceinline__ void scan_lanes(const scan::Params& p, Smem<LPC>* smem) {
    using S = Shape<LPC>;
    using TD = typename Pick<ROUTES, float, TU>::type;  // delta; ES2D: the float32 dt rank-0 row
    constexpr int SPL = S::SPL, CPW = S::CPW, T = S::T, K = S::K;
    constexpr int KU = K / Word<TU>::kPerWord, KD = K / Word<TD>::kPerWord;
    constexpr int TS = STATES ? T / 2 : T;          // timesteps of B/C a lane stages per tile
    constexpr int TBS = TS / Word<TW>::kPerWord;    // their words
    Smem<LPC>& sm = smem[threadIdx.x >> 5];

    const int lane = threadIdx.x & 31, slot = lane / LPC, s = lane % LPC;
    const long total = (long)p.batch * p.dim;
    const long warp_first = ((long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5)) * CPW;
    if (warp_first >= total) return;  // whole warp idle (no block-wide barriers below)
    const bool chan_ok = warp_first + slot < total;
    const int chan = (int)(chan_ok ? warp_first + slot : total - 1);  // idle slots replay a channel, never store
    const int b = chan / p.dim, q = chan % p.dim, L = p.L, N = p.N;
    const int g0 = (int)(warp_first / p.per_group);
    const bool two_groups = (min(warp_first + CPW, total) - 1) / p.per_group != g0;
    const int my_g = chan / p.per_group - g0;  // 0 or 1
    const int chunk = blockIdx.y;
    const int l_begin = chunk * p.chunk_len, l_end = min(L, l_begin + p.chunk_len);
    const int n_prev = p.n_chunks - 1;  // chunks with stored end states

    const float Dv = p.D ? __ldg(p.D + q) : 0.f;
    const float bias = p.delta_bias ? __ldg(p.delta_bias + q) : 0.f;
    const bool has_z = !ROUTES && p.z != nullptr;
    const bool vec_bc = p.vec_bc != 0, vec_u = p.vec_u != 0;
    const bool vec_d = ROUTES ? vec_bc : vec_u;  // ES2D: the dt rows are rows of the projections

    // Rows of this channel; with routes u and out are the channel's plane of the map.
    const long seq = (long)chan * L;
    long map_base = 0;
    scan::RouteCursor cur{0, 0, 1};
    int rp = 0, cp = 0;
    bool row_major = true;
    int tile_major = 0, tile_minor = 0;  // the cursor's move from one tile to the next (T steps)
    int run_step = 0;                    // map elements from one step of a route row to the next
    if (ROUTES) {
        const int k_route = q / p.dim_route, d_route = q % p.dim_route;
        rp = k_route & 1;
        cp = k_route >> 1;
        row_major = rp == 0;
        cur.extent = row_major ? p.w2 : p.h2;
        cur.major = (l_begin + s * K) / cur.extent;
        cur.minor = (l_begin + s * K) % cur.extent;
        tile_major = T / cur.extent;
        tile_minor = T % cur.extent;
        run_step = (row_major ? 2 : 2 * p.w) * p.map_ps;
        map_base = (long)b * p.dim_route * p.h * p.w + (long)d_route * p.map_cs;
    }
    const TU* u_ptr = static_cast<const TU*>(p.u) + (ROUTES ? map_base : seq);
    // delta row; ES2D: rank 0 of the route's dt rows, which the channel's weights combine, or the
    // channel's row of a given float32 delta (then one "rank" of weight 1: the rank loops do nothing).
    const bool own_delta = ROUTES && p.delta == nullptr;
    const TD* d_ptr = own_delta ? static_cast<const TD*>(p.B) + (long)chan / p.dim_route * p.proj_rows * L
                                : static_cast<const TD*>(p.delta) + seq;
    const float* dt_w = ROUTES ? p.dt_w + (long)q * p.dt_rank : nullptr;
    const float dt_w0 = own_delta ? __ldg(dt_w) : 1.f;
    const int ranks = own_delta ? p.dt_rank : 1;
    const TU* z_ptr = static_cast<const TU*>(p.z) + (has_z ? seq : 0);
    TO* o_ptr = static_cast<TO*>(p.out) + (ROUTES ? map_base : seq);

    // B/C staging: lane i loads row i & 15 of B (i < 16) or of C. The first pass needs no C: there
    // lane i loads the first (i < 16) or second half of the tile of B row i & 15, so no lane idles.
    const int st_n = lane & 15, st_which = lane >> 4;
    const bool st_on = st_n < N;
    const int st_c = STATES ? 0 : st_which;   // 1: a C row
    const int st_t0 = STATES ? st_which * TS : 0;  // first timestep of the lane's run in the tile
    auto bc_row = [&](int g) -> const TW* {
        const long row = ROUTES ? (long)g * p.proj_rows + p.dt_rank + st_c * N + st_n : (long)g * N + st_n;
        return static_cast<const TW*>(st_c && !ROUTES ? p.C : p.B) + row * L;
    };
    const TW* st_row0 = bc_row(g0);
    auto fetch_bc = [&](const TW* row, int l0, unsigned (&w)[TBS]) {
        load_run<TW, TS>(row + l0 + st_t0, st_on ? l_end - l0 - st_t0 : 0, vec_bc, w);
    };
    auto stage_bc = [&](float* dst, const unsigned (&w)[TBS]) {
#pragma unroll
        for (int t = 0; t < TS; ++t)
            dst[(st_t0 + t) * S::kRow + st_c * kStates + st_n] = Word<TW>::get(w[t / Word<TW>::kPerWord], t % Word<TW>::kPerWord);
    };

    struct Raw {
        unsigned u[KU], d[KD], z[KU];
        int off[ROUTES ? K : 1];
    };
    // Raw inputs of this lane's K timesteps of the tile at l0 (tiles are fetched in order).
    auto fetch = [&](int l0, Raw& r) {
        const int t0 = l0 + s * K, valid = l_end - t0;
        if constexpr (ROUTES) {
            // The lane's K steps usually lie on one route row inside the map: then their map offsets
            // are off0 + k * run_step and load without a test each; otherwise step by step.
            const int ii = row_major ? cur.major : cur.minor, jj = row_major ? cur.minor : cur.major;
            const int row0 = 2 * ii + rp, col0 = 2 * jj + cp;
            const int row_last = row_major ? row0 : row0 + 2 * (K - 1);
            const int col_last = row_major ? col0 + 2 * (K - 1) : col0;
            if (valid >= K && cur.minor + K <= cur.extent && row_last < p.h && col_last < p.w) {
                const int off0 = (row0 * p.w + col0) * p.map_ps;
                gather_run<false>(u_ptr, [&](int k) { return off0 + k * run_step; }, r.u, r.off);
            } else {
                scan::RouteCursor c = cur;
                gather_run<true>(u_ptr, [&](int k) {
                    const int ci = row_major ? c.major : c.minor, cj = row_major ? c.minor : c.major;
                    const int row = 2 * ci + rp, col = 2 * cj + cp;
                    c.advance(1);
                    return (k < valid && row < p.h && col < p.w) ? (row * p.w + col) * p.map_ps : -1;
                }, r.u, r.off);
            }
            cur.step(tile_major, tile_minor);
            // dt ranks 1..R-1 of this tile into L1 for prepare(): rows split over the warp's channels.
            if (valid > 0) {
                for (int rank = 1 + slot; rank < ranks; rank += CPW)
                    scan::prefetch_l1(reinterpret_cast<const float*>(d_ptr) + (long)rank * L + t0);
            }
        } else {
            load_run<TU, K>(u_ptr + t0, valid, vec_u, r.u);
            if (has_z) {
                load_run<TU, K>(z_ptr + t0, valid, vec_u, r.z);
            } else {
#pragma unroll
                for (int i = 0; i < KU; ++i) r.z[i] = 0u;
            }
        }
        load_run<TD, K>(d_ptr + t0, valid, vec_d, r.d);
    };

    // Per-tile products of this lane's timesteps: dt and dt*u (handed to the other lanes), D*u,
    // the gate and (routes) the map offsets.
    float dtc[LPC == 1 ? T : 1], duc[LPC == 1 ? T : 1];
    float dus[K], gz[K];
    int off[ROUTES ? K : 1];
    float dsum = 0.f;  // STATES: this lane's share of the chunk's sum of dt
    auto prepare = [&](int l0, const Raw& r) {
        float dt[K], du[K];
        float dl[ROUTES ? K : 1];  // ES2D: delta
        if constexpr (ROUTES) {
            // Rank 0 fetched ahead, ranks 1..R-1 now, kRB ranks' loads issued together.
            constexpr int kRB = K >= 8 ? 2 : 16 / K;
            const int t0 = l0 + s * K, valid = l_end - t0;
            const float* rows = reinterpret_cast<const float*>(d_ptr) + t0;
#pragma unroll
            for (int k = 0; k < K; ++k) dl[k] = dt_w0 * __uint_as_float(r.d[k]);
            for (int r0 = 1; r0 < ranks; r0 += kRB) {
                unsigned v[kRB][K];
                float wv[kRB];
#pragma unroll
                for (int j = 0; j < kRB; ++j) {
                    // Past the last rank: the last row again with weight 0 (adds an exact 0), so every
                    // load of the batch takes the same path.
                    const bool on = r0 + j < ranks;
                    const int rank = on ? r0 + j : ranks - 1;
                    load_run<float, K>(rows + (long)rank * L, valid, vec_d, v[j]);
                    wv[j] = on ? __ldg(dt_w + rank) : 0.f;
                }
#pragma unroll
                for (int j = 0; j < kRB; ++j)
#pragma unroll
                    for (int k = 0; k < K; ++k) dl[k] = fmaf(wv[j], __uint_as_float(v[j][k]), dl[k]);
            }
        }
#pragma unroll
        for (int k = 0; k < K; ++k) {
            const bool tv = l0 + s * K + k < l_end;
            float dtv;
            if constexpr (ROUTES) dtv = dl[k] + bias;
            else dtv = Word<TD>::get(r.d[k / Word<TD>::kPerWord], k % Word<TD>::kPerWord) + bias;
            if (p.softplus) dtv = softplus(dtv);
            dtv = tv ? dtv : 0.f;
            const float uv = Word<TU>::get(r.u[k / Word<TU>::kPerWord], k % Word<TU>::kPerWord);
            dt[k] = dtv;
            du[k] = dtv * uv;
            if (STATES) {
                dsum += dtv;
            } else {
                dus[k] = Dv * uv;
                gz[k] = has_z ? silu(Word<TU>::get(r.z[k / Word<TU>::kPerWord], k % Word<TU>::kPerWord)) : 1.f;
                if (ROUTES) off[k] = r.off[k];
            }
        }
        if constexpr (LPC == 1) {
#pragma unroll
            for (int k = 0; k < K; ++k) { dtc[k] = dt[k]; duc[k] = du[k]; }
        } else {
            sts<K>(sm.xdt + slot * S::kX + s * K, dt);
            sts<K>(sm.xdu + slot * S::kX + s * K, du);
        }
    };

    // The first two tiles' inputs are requested before anything waits on memory.
    Raw ra, rb;
    unsigned wa[TBS], wb[TBS];
    fetch(l_begin, ra);
    fetch_bc(st_row0, l_begin, wa);
    fetch(l_begin + T, rb);
    fetch_bc(st_row0, l_begin + T, wb);

    float A2[SPL], h[SPL];
#pragma unroll
    for (int k = 0; k < SPL; ++k) {
        const int n = s * SPL + k;
        h[k] = 0.f;
        A2[k] = 0.f;
        if (n < N) {
            float a = __ldg(p.A + (long)q * N + n);
            if (p.a_is_log) a = -expf(a);
            A2[k] = a * kLog2e;
        }
    }
    if (!STATES && chunk > 0) chunk_start_state<SPL>(p, chan, chunk, s * SPL, A2, h);
    prepare(l_begin, ra);
    stage_bc(sm.bc, wa);
    if (two_groups) {
        fetch_bc(bc_row(g0 + 1), l_begin, wa);
        stage_bc(sm.bc + S::kSlot, wa);
    }
    __syncwarp();

    const float* bcs = sm.bc + my_g * S::kSlot + s * SPL;
    // One tile at l0 with the next tile's raw inputs in (rn, wn); the tile after next is requested
    // into (rf, wf) first, so each request has two tiles of work to arrive. The loop below
    // alternates the two register sets (no copies, which would wait on the requests).
    auto tile = [&](int l0, Raw& rn, unsigned (&wn)[TBS], Raw& rf, unsigned (&wf)[TBS]) {
        fetch(l0 + 2 * T, rf);
        fetch_bc(st_row0, l0 + 2 * T, wf);

        float y[T], dq[4], uq[4];
#pragma unroll
        for (int t = 0; t < T; ++t) {
            float dtv, duv;
            if constexpr (LPC == 1) {
                dtv = dtc[t];
                duv = duc[t];
            } else {
                if (t % 4 == 0) {
                    lds<4>(sm.xdt + slot * S::kX + t, dq);
                    lds<4>(sm.xdu + slot * S::kX + t, uq);
                }
                dtv = dq[t % 4];
                duv = uq[t % 4];
            }
            float bv[SPL], cv[SPL];
            lds<SPL>(bcs + t * S::kRow, bv);
            if (!STATES) lds<SPL>(bcs + t * S::kRow + kStates, cv);
            float acc = (LPC == 1 && !STATES) ? dus[t % K] : 0.f;
#pragma unroll
            for (int k = 0; k < SPL; ++k) {
                const float dA = exp2_fast(dtv * A2[k]);
                h[k] = fmaf(dA, h[k], duv * bv[k]);
                if (!STATES) acc = fmaf(cv[k], h[k], acc);
            }
            y[t] = acc;
        }

        if (!STATES) {
            float yk[K];
            if constexpr (LPC == 1) {
#pragma unroll
                for (int k = 0; k < K; ++k) yk[k] = y[k];
                __syncwarp();
            } else {
                // Sum over the LPC lanes of the channel: lane s adds up its own K timesteps.
                sts<T>(sm.red + lane * S::kRed, y);
                __syncwarp();
                lds<K>(sm.red + slot * LPC * S::kRed + s * K, yk);
#pragma unroll
                for (int s2 = 1; s2 < LPC; ++s2) {
                    float part[K];
                    lds<K>(sm.red + (slot * LPC + s2) * S::kRed + s * K, part);
#pragma unroll
                    for (int k = 0; k < K; ++k) yk[k] += part[k];
                }
#pragma unroll
                for (int k = 0; k < K; ++k) yk[k] += dus[k];
            }
#pragma unroll
            for (int k = 0; k < K; ++k) yk[k] *= gz[k];
            const int t0 = l0 + s * K;
            if (chan_ok) {
                if (ROUTES) {
#pragma unroll
                    for (int k = 0; k < K; ++k)
                        if (off[k] >= 0) o_ptr[off[k]] = from_float<TO>(yk[k]);
                } else {
                    store_run<TO, K>(o_ptr + t0, l_end - t0, vec_u, yk);
                }
            }
        } else {
            __syncwarp();
        }

        prepare(l0 + T, rn);
        stage_bc(sm.bc, wn);
        if (two_groups) {
            fetch_bc(bc_row(g0 + 1), l0 + T, wn);
            stage_bc(sm.bc + S::kSlot, wn);
        }
        __syncwarp();
    };

    for (int l0 = l_begin; l0 < l_end; l0 += 2 * T) {
        tile(l0, rb, wb, ra, wa);
        if (l0 + T >= l_end) break;
        tile(l0 + T, ra, wa, rb, wb);
    }

    if (STATES) {
#pragma unroll
        for (int o = LPC / 2; o > 0; o /= 2) dsum += __shfl_xor_sync(0xffffffffu, dsum, o);
        if (chan_ok) {
            float* st = p.states + ((long)chan * n_prev + chunk) * kStates + s * SPL;
            sts<SPL>(st, h);
            if (s == 0) p.dsums[(long)chan * n_prev + chunk] = dsum;
        }
    }
}

}  // namespace lanes
}  // namespace fe
