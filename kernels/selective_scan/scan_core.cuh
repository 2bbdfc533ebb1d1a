// Warp-level selective-scan core shared by the plain scan and the fused ES2D scan.
//
// Layout: the LPC lanes of a channel split its N states (lane s owns states s, s+LPC, ...),
// 32/LPC channels per warp: LPC = 8 with two states a lane for N <= 16 (fewer instructions
// per state), LPC = 16 above. Per step and state the work is one exp2 (A pre-scaled by
// log2 e), the B and C products and the state update. softplus, delta*u, D*u and the gate are
// computed once per timestep (lane s takes timestep s of every LPC) into shared memory; the
// sum over states is an LPC x LPC transpose through shared memory.
//
// Long sequences with few channels are split into chunks (grid.y) and scanned in two passes:
// STATES computes each chunk's end state from zero and its sum of delta; the full pass starts
// chunk c from the state carried through chunks 0..c-1 (h = exp2(A2 * sum) * h + end).
//
// Inputs are prefetched into registers as raw bits (converting at load time would stall the
// warp): B and C one tile ahead, u, delta and z two tiles ahead, in buffers that swap roles
// from tile to tile.
//
// ES2D routes (ROUTES): unless a float32 delta is given (p.delta, read like the plain scan's),
// delta of channel d of route k at step l is sum_r dt_projs_weight[k, d, r] * proj[b, k, r, l]
// over the R dt rows of the projections; rank 0 is prefetched with the other inputs, ranks
// 1..R-1 are read when a timestep is prepared (route_delta), added in order 0..R-1 in float32.
#pragma once
#include "../common/fe_types.cuh"

namespace fe {
namespace scan {

constexpr int kMaxWarps = 4;   // warps per block, at most (see kernels/launch_params.py)

template <int LPC, int SPL, typename TW> struct Tiling {
    static constexpr int kSub = LPC;                       // timesteps per reduction sub-tile
    static constexpr int kCPW = 32 / LPC;                  // channels per warp
    static constexpr int kPW = Word<TW>::kPerWord;
    static constexpr int kTLBudget = 64 / (SPL * (int)sizeof(TW));  // raw B/C of a tile in 32 registers
    static constexpr int TL = kTLBudget >= 32 ? 32 : (kTLBudget >= 16 ? 16 : (LPC <= 8 ? 8 : 16));
    static constexpr int M = TL / kSub;                    // timesteps per lane per tile
    static constexpr int W = TL / kPW;                     // 32-bit words per row tile
    static constexpr bool kPrefetchBC = 2 * SPL * W <= 32;
    static constexpr int kStride = TL + 4;                 // per-channel stride of the tile arrays
    static constexpr int kRedRow = LPC + 4;                // transpose row (16-byte aligned, skewed)
    static constexpr int kRedChan = LPC * kRedRow + LPC;    // next channel LPC banks over
};

template <int LPC, int TL> struct __align__(16) WarpSmem {
    static constexpr int kCPW = 32 / LPC;
    static constexpr int kStride = TL + 4;
    float dt[kCPW * kStride];
    float du[kCPW * kStride];
    float dus[kCPW * kStride];  // D * u
    float gz[kCPW * kStride];   // silu(z), or 1
    int off[kCPW * kStride];    // element index of out, or -1
    float red[kCPW * (LPC * (LPC + 4) + LPC)];
};

// Everything a launch passes; ROUTES selects the ES2D addressing of u and out.
struct Params {
    const void* u;           // (batch, dim, L) or, with routes, the map (batch, dim_route, h, w)
    const void* delta;       // (batch, dim, L); with routes optional (float32): null, the scan forms it
    const float* A;          // (dim, N); with a_is_log, A_logs and A = -exp(A_logs)
    const void* B;           // (batch, groups, N, L); with routes the projections (batch, 4, R+2N, L)
    const void* C;
    const float* D;          // (dim) or null
    const void* z;           // (batch, dim, L) or null
    const float* delta_bias; // (dim) or null
    void* out;               // like u
    float* states;           // (batch*dim, n_chunks-1, LPC*SPL) chunk end states
    float* dsums;            // (batch*dim, n_chunks-1) chunk sums of delta
    int batch, dim, L, N, groups;
    int softplus, vec_bc, a_is_log;
    int chunk_len, n_chunks;
    int dim_route, h, w, h2, w2;  // routes only: map (batch, dim_route, h, w), sub-grid h2 x w2
    int map_cs = 0, map_ps = 1;   // routes only: element strides of a channel and of a pixel in the map
                                  // (planes: h * w and 1; channels-last: 1 and dim_route)
    int proj_rows, dt_rank;       // routes only: rows R+2N of the projections, and R
    const float* dt_w = nullptr;  // routes only: dt_projs_weight (4 * dim_route, R), row q per channel q
    int per_group = 1;            // lane-major core: consecutive channels that share one B/C group
    int vec_u = 0;                // lane-major core: per-channel rows allow 16-byte access
    int split = 1;                // time-parallel core: warps a channel (each a share of the states)
};

template <typename T> __device__ __forceinline__ unsigned load_bits(const T* p, long i) {
    if constexpr (sizeof(T) == 4) return __float_as_uint(__ldg(reinterpret_cast<const float*>(p) + i));
    else return __ldg(reinterpret_cast<const unsigned short*>(p) + i);
}

// A hint: bring the line holding p into L1 (no register, no fault).
__device__ __forceinline__ void prefetch_l1(const void* p) { asm volatile("prefetch.global.L1 [%0];" ::"l"(p)); }

template <typename T> __device__ __forceinline__ float load_elem(const T* p, long i) {
    return Word<T>::get(load_bits(p, i), 0);
}

// One row tile (TL timesteps from l0) of B or C as raw 32-bit words; zeros past L or for a null row.
template <typename TW, int TL>
__device__ __forceinline__ void load_row(const TW* row, int l0, int L, bool vec, unsigned (&w)[TL / Word<TW>::kPerWord]) {
    constexpr int kPW = Word<TW>::kPerWord;
    constexpr int W = TL / kPW;
    if (row != nullptr && vec && l0 + TL <= L) {
        const uint4* p = reinterpret_cast<const uint4*>(row + l0);
#pragma unroll
        for (int v = 0; v < W / 4; ++v) {
            uint4 q = __ldg(p + v);
            w[4 * v] = q.x; w[4 * v + 1] = q.y; w[4 * v + 2] = q.z; w[4 * v + 3] = q.w;
        }
    } else {
#pragma unroll
        for (int i = 0; i < W; ++i) {
            unsigned acc = 0;
#pragma unroll
            for (int e = 0; e < kPW; ++e) {
                const int l = l0 + i * kPW + e;
                const unsigned b = (row != nullptr && l < L) ? load_bits(row, l) : 0u;
                acc |= b << (16 * e);
            }
            w[i] = acc;
        }
    }
}

// Raw inputs of one lane for one tile: timesteps l0 + LPC*m + s, m < M.
template <int M> struct LaneTile {
    unsigned u[M], d[M], z[M];
    int off[M];     // element index of u/out, or -1 (past the chunk, or an ES2D padding pixel)
    bool tv[M];     // the timestep is in the chunk
};

// Position of a lane's timestep on an ES2D route: cell (i, j) of the stride-2 sub-grid.
struct RouteCursor {
    int major, minor, extent;  // row-major: (i, j, w2); column-major: (j, i, h2)
    __device__ __forceinline__ void advance(int n) {
        minor += n;
        while (minor >= extent) { minor -= extent; ++major; }
    }
    // A fixed stride of d_major * extent + d_minor steps (d_minor < extent): no loop.
    __device__ __forceinline__ void step(int d_major, int d_minor) {
        minor += d_minor;
        major += d_major;
        if (minor >= extent) { minor -= extent; ++major; }
    }
};

// ES2D: delta at step l of rows[0..R) (stride L) with weights w[0..R), rank 0's value given
// (`first`, fetched ahead). One rank at a time: the split core's ES2D entries run at their
// register cap (n16, n32), where batching the loads spilled.
__device__ __forceinline__ float route_delta(float first, const float* rows, long L, const float* w, int R, int l) {
    float acc = __ldg(w) * first;
    const float* row = rows + l;
#pragma unroll 1
    for (int r = 1; r < R; ++r) acc = fmaf(__ldg(w + r), __ldg(row + r * L), acc);
    return acc;
}

// STATES: the first pass (chunk end states); otherwise the scan with outputs.
template <typename TU, typename TW, typename TO, int LPC, int SPL, bool ROUTES, bool STATES>
__device__ __forceinline__ void scan_warp(const Params& p, char* smem_raw) {
    using Tl = Tiling<LPC, SPL, TW>;
    constexpr int TL = Tl::TL, M = Tl::M, W = Tl::W, kPW = Tl::kPW, kSub = Tl::kSub, kCPW = Tl::kCPW;
    constexpr int NP = LPC * SPL;
    WarpSmem<LPC, TL>& sm = reinterpret_cast<WarpSmem<LPC, TL>*>(smem_raw)[threadIdx.x >> 5];

    const int lane = threadIdx.x & 31, slot = lane / LPC, s = lane % LPC;
    const long chan_raw = ((long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5)) * kCPW + slot;
    const bool chan_ok = chan_raw < (long)p.batch * p.dim;
    const int chan = chan_ok ? (int)chan_raw : 0;  // idle slots replay channel 0 and never store
    const int b = chan / p.dim, q = chan % p.dim, L = p.L, N = p.N;
    const int chunk = blockIdx.y;
    const int l_begin = chunk * p.chunk_len, l_end = min(L, l_begin + p.chunk_len);
    const int n_prev = p.n_chunks - 1;  // chunks with stored end states

    const TU* u = static_cast<const TU*>(p.u);
    const TU* z = static_cast<const TU*>(p.z);
    TO* out = static_cast<TO*>(p.out);
    const TU* delta = static_cast<const TU*>(p.delta);

    // Rows of B and C this lane reads, and exp2-scaled A.
    const TW* brow[SPL];
    const TW* crow[SPL];
    float A2[SPL], hs[SPL];
    long bc_base;
    int k_route = 0, d_route = 0;
    if (ROUTES) {
        k_route = q / p.dim_route;
        d_route = q % p.dim_route;
        bc_base = ((long)b * 4 + k_route) * p.proj_rows + p.dt_rank;  // row of B[0]; C follows N rows on
    } else {
        bc_base = ((long)b * p.groups + q / (p.dim / p.groups)) * N;
    }
#pragma unroll
    for (int k = 0; k < SPL; ++k) {
        const int n = s + LPC * k;
        hs[k] = 0.f;
        if (n < N) {
            float a = __ldg(p.A + (long)q * N + n);
            if (p.a_is_log) a = -expf(a);
            A2[k] = a * kLog2e;
            brow[k] = static_cast<const TW*>(p.B) + (bc_base + n) * L;
            crow[k] = static_cast<const TW*>(ROUTES ? p.B : p.C) + (bc_base + (ROUTES ? N : 0) + n) * L;
        } else {
            A2[k] = 0.f;
            brow[k] = nullptr;
            crow[k] = nullptr;
        }
    }
    // The state this chunk starts from: chunks 0..chunk-1 carried through.
    if (!STATES && chunk > 0) {
        const float* ds = p.dsums + (long)chan * n_prev;
        const float* st = p.states + (long)chan * n_prev * NP;
        for (int j = 0; j < chunk; ++j) {
            const float sum = __ldg(ds + j);
#pragma unroll
            for (int k = 0; k < SPL; ++k) hs[k] = fmaf(exp2_fast(A2[k] * sum), hs[k], __ldg(st + j * NP + s + LPC * k));
        }
    }
    const float Dv = p.D ? __ldg(p.D + q) : 0.f;
    const float bias = p.delta_bias ? __ldg(p.delta_bias + q) : 0.f;
    const bool has_z = !ROUTES && z != nullptr;
    const bool vec = p.vec_bc != 0;
    const long seq_base = (long)chan * L;
    // ES2D: the route's dt rows (rank 0 is fetched ahead), or the channel's row of a given delta.
    const bool own_delta = ROUTES && p.delta == nullptr;
    const float* dt_rows = !ROUTES ? nullptr
                           : own_delta ? static_cast<const float*>(p.B) + (bc_base - p.dt_rank) * L
                                       : static_cast<const float*>(p.delta) + seq_base;

    // ES2D addressing: where this lane's timestep sits in the (batch, dim_route, h, w) map.
    RouteCursor cur{0, 0, 1};
    long map_base = 0;
    int rp = 0, cp = 0;
    bool row_major = true;
    if (ROUTES) {
        rp = k_route & 1;
        cp = k_route >> 1;
        row_major = (k_route & 1) == 0;
        cur.extent = row_major ? p.w2 : p.h2;
        cur.major = (l_begin + s) / cur.extent;
        cur.minor = (l_begin + s) % cur.extent;
        map_base = (long)b * p.dim_route * p.h * p.w + (long)d_route * p.map_cs;
    }

    // Row pointers of this channel (loads then take one address computation each).
    const TU* u_row = u + seq_base;
    const TU* u_map = u + map_base;
    const TU* delta_row = delta + seq_base;
    const TU* z_row = has_z ? z + seq_base : z;
    TO* out_row = out + (ROUTES ? map_base : seq_base);

    auto fetch = [&](int l0, LaneTile<M>& t) {
#pragma unroll
        for (int m = 0; m < M; ++m) {
            const int tt = l0 + kSub * m + s;
            const bool tv = tt < l_end;
            int off = -1;
            if (ROUTES) {
                const int i = row_major ? cur.major : cur.minor;
                const int j = row_major ? cur.minor : cur.major;
                const int row = 2 * i + rp, col = 2 * j + cp;
                if (tv && row < p.h && col < p.w) off = (row * p.w + col) * p.map_ps;
                cur.advance(kSub);
            } else if (tv) {
                off = tt;
            }
            t.tv[m] = tv;
            t.off[m] = off;
            if (ROUTES) {
                t.u[m] = off >= 0 ? load_bits(u_map, off) : 0u;
                t.d[m] = tv ? load_bits(dt_rows, tt) : 0u;  // dt rank 0
            } else {
                t.u[m] = tv ? load_bits(u_row, tt) : 0u;
                t.d[m] = tv ? load_bits(delta_row, tt) : 0u;
                t.z[m] = (has_z && tv) ? load_bits(z_row, tt) : 0u;
            }
        }
    };
    float dsum = 0.f;  // STATES: this lane's share of the chunk's sum of dt
    // Raw inputs of the tile at l0 -> shared memory: dt = softplus(delta + bias), dt * u, D * u, gate, offset.
    auto prepare = [&](int l0, const LaneTile<M>& t) {
#pragma unroll
        for (int m = 0; m < M; ++m) {
            float dt = 0.f;
            if (t.tv[m]) {
                if constexpr (ROUTES) {
                    dt = own_delta ? route_delta(__uint_as_float(t.d[m]), dt_rows, L, p.dt_w + (long)q * p.dt_rank,
                                                 p.dt_rank, l0 + kSub * m + s)
                                   : __uint_as_float(t.d[m]);
                } else {
                    dt = Word<TU>::get(t.d[m], 0);
                }
                dt += bias;
                if (p.softplus) dt = softplus(dt);
            }
            const float uv = Word<TU>::get(t.u[m], 0);
            const int i = slot * Tl::kStride + kSub * m + s;
            sm.dt[i] = dt;
            sm.du[i] = dt * uv;
            if (STATES) {
                dsum += dt;
            } else {
                sm.dus[i] = Dv * uv;
                sm.gz[i] = has_z ? silu(Word<TU>::get(t.z[m], 0)) : 1.f;
                sm.off[i] = t.off[m];
            }
        }
    };
    auto load_bc = [&](int l0, unsigned (&rb)[SPL][W], unsigned (&rc)[SPL][W]) {
#pragma unroll
        for (int k = 0; k < SPL; ++k) {
            load_row<TW, TL>(brow[k], l0, L, vec, rb[k]);
            if (!STATES) load_row<TW, TL>(crow[k], l0, L, vec, rc[k]);
        }
    };

    LaneTile<M> tA, tB;
    unsigned rbA[SPL][W], rcA[SPL][W], rbB[SPL][W], rcB[SPL][W];
    fetch(l_begin, tA);
    fetch(l_begin + TL, tB);
    if (Tl::kPrefetchBC) load_bc(l_begin, rbA, rcA);
    prepare(l_begin, tA);

    // One tile: scan l0 .. l0+TL-1 with B/C in (rb, rc) while the next tile's B/C land in
    // (nb, nc) and the raw inputs two tiles on land in `far`; `near` (next tile) is prepared last.
    auto tile = [&](int l0, unsigned (&rb)[SPL][W], unsigned (&rc)[SPL][W], unsigned (&nb)[SPL][W],
                    unsigned (&nc)[SPL][W], LaneTile<M>& far, LaneTile<M>& near) {
        fetch(l0 + 2 * TL, far);
        if (Tl::kPrefetchBC) {
            load_bc(l0 + TL, nb, nc);
        } else {
            load_bc(l0, rb, rc);
        }
        __syncwarp();
        const float* sdt = sm.dt + slot * Tl::kStride;
        const float* sdu = sm.du + slot * Tl::kStride;
#pragma unroll
        for (int m = 0; m < M; ++m) {
            float part[kSub];
#pragma unroll
            for (int j = 0; j < kSub; ++j) part[j] = 0.f;
#pragma unroll
            for (int j4 = 0; j4 < kSub; j4 += 4) {
                const float4 dt4 = *reinterpret_cast<const float4*>(sdt + kSub * m + j4);
                const float4 du4 = *reinterpret_cast<const float4*>(sdu + kSub * m + j4);
                const float dtv[4] = {dt4.x, dt4.y, dt4.z, dt4.w};
                const float duv[4] = {du4.x, du4.y, du4.z, du4.w};
#pragma unroll
                for (int jj = 0; jj < 4; ++jj) {
                    const int j = j4 + jj, e = kSub * m + j;
#pragma unroll
                    for (int k = 0; k < SPL; ++k) {
                        const float bv = Word<TW>::get(rb[k][e / kPW], e % kPW);
                        const float dA = exp2_fast(dtv[jj] * A2[k]);
                        hs[k] = fmaf(dA, hs[k], duv[jj] * bv);
                        if (!STATES) {
                            const float cv = Word<TW>::get(rc[k][e / kPW], e % kPW);
                            part[j] = fmaf(cv, hs[k], part[j]);
                        }
                    }
                }
            }
            if (!STATES) {
                // Sum over the LPC lanes of the channel: lane s writes its row, reads column s.
                float* red = sm.red + slot * Tl::kRedChan;
                float4* row4 = reinterpret_cast<float4*>(red + s * Tl::kRedRow);
#pragma unroll
                for (int j = 0; j < kSub; j += 4) row4[j / 4] = make_float4(part[j], part[j + 1], part[j + 2], part[j + 3]);
                __syncwarp();
                const float* col = red + s;
                float acc[4];
#pragma unroll
                for (int i = 0; i < 4; ++i) {
                    acc[i] = col[Tl::kRedRow * i];
#pragma unroll
                    for (int r = i + 4; r < kSub; r += 4) acc[i] += col[Tl::kRedRow * r];
                }
                float y = (acc[0] + acc[1]) + (acc[2] + acc[3]);
                __syncwarp();
                const int i = slot * Tl::kStride + kSub * m + s;
                const int off = sm.off[i];
                if (chan_ok && off >= 0) {
                    y = (y + sm.dus[i]) * sm.gz[i];
                    out_row[off] = from_float<TO>(y);
                }
            }
        }
        __syncwarp();
        prepare(l0 + TL, near);
    };

    for (int l0 = l_begin; l0 < l_end; l0 += 2 * TL) {
        tile(l0, rbA, rcA, rbB, rcB, tA, tB);
        if (l0 + TL >= l_end) break;
        tile(l0 + TL, rbB, rcB, rbA, rcA, tB, tA);
    }

    if (STATES) {
#pragma unroll
        for (int o = LPC / 2; o > 0; o /= 2) dsum += __shfl_xor_sync(0xffffffffu, dsum, o);
        if (chan_ok) {
            float* st = p.states + ((long)chan * n_prev + chunk) * NP;
#pragma unroll
            for (int k = 0; k < SPL; ++k) st[s + LPC * k] = hs[k];
            if (s == 0) p.dsums[(long)chan * n_prev + chunk] = dsum;
        }
    }
}

}  // namespace scan
}  // namespace fe
