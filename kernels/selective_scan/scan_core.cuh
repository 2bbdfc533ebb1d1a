// Warp-level selective-scan core shared by the plain scan and the fused ES2D scan.
//
// Layout: a warp scans two channels; the 16 lanes of a channel split its N states
// (lane s owns states s, s+16, s+32, s+48), so a batch-1 problem with a few hundred
// channels still spreads over every SM. Each step costs one exp2 per (channel, state),
// which is the floor for this recurrence; softplus, delta*u and the skip term are
// computed once per timestep by one lane (lane s takes timestep s of every 16) and
// broadcast through shared memory. The per-timestep sum over states is a 16x16
// transpose through shared memory. Inputs are prefetched one tile (B, C) and two
// tiles (u, delta, z) ahead into registers to hide DRAM latency at low occupancy.
#pragma once
#include "../common/fe_types.cuh"

namespace fe {
namespace scan {

constexpr int kLanes = 16;     // lanes per channel
constexpr int kSub = 16;       // timesteps per reduction sub-tile
constexpr int kMaxWarps = 4;   // warps per block, at most (see kernels/scan_launch.py)
constexpr int kRedHalf = 336;  // floats per channel in the transpose buffer (16 rows of 20, +16 banks)

// Tile length: keep one tile of raw B and C of all owned states within 256 bytes a lane.
template <int SPL, typename TW> struct Tiling {
    static constexpr int kBytes = SPL * (int)sizeof(TW);
    static constexpr int TL = kBytes <= 2 ? 64 : (kBytes <= 4 ? 32 : 16);
    static constexpr int M = TL / kSub;                      // timesteps per lane per tile
    static constexpr int W = TL / Word<TW>::kPerWord;        // 32-bit words per row tile
    static constexpr bool kPrefetchBC = 2 * SPL * W <= 64;   // double-buffer B/C in registers
};

template <int TL> struct __align__(16) WarpSmem {
    static constexpr int kStride = ((TL + 31) / 32) * 32 + 16;  // second channel 16 banks over
    float dt[2 * kStride];
    float du[2 * kStride];
    float red[2 * kRedHalf];
};

// Everything a launch passes; ROUTES selects the ES2D addressing of u and out.
struct Params {
    const void* u;           // (batch, dim, L) or, with routes, the map (batch, dim_route, h, w)
    const void* delta;       // (batch, dim, L)
    const float* A;          // (dim, N); with a_is_log, A_logs and A = -exp(A_logs)
    const void* B;           // (batch, groups, N, L); with routes the projections (batch, 4, R+2N, L)
    const void* C;
    const float* D;          // (dim) or null
    const void* z;           // (batch, dim, L) or null
    const float* delta_bias; // (dim) or null
    void* out;               // like u
    int batch, dim, L, N, groups;
    int softplus, vec_bc, a_is_log;
    int dim_route, h, w, h2, w2;  // routes only: map (batch, dim_route, h, w), sub-grid h2 x w2
    int proj_rows, dt_rank;       // routes only: rows R+2N of the projections, and R
};

template <typename T> __device__ __forceinline__ float load_elem(const T* p, long i);
template <> __device__ __forceinline__ float load_elem<float>(const float* p, long i) { return __ldg(p + i); }
template <> __device__ __forceinline__ float load_elem<half_t>(const half_t* p, long i) {
    half_t h; h.bits = __ldg(reinterpret_cast<const unsigned short*>(p) + i); return to_float(h);
}
template <> __device__ __forceinline__ float load_elem<bf16_t>(const bf16_t* p, long i) {
    bf16_t h; h.bits = __ldg(reinterpret_cast<const unsigned short*>(p) + i); return to_float(h);
}

template <typename T> __device__ __forceinline__ unsigned load_bits(const T* p, long i) {
    if constexpr (sizeof(T) == 4) return __float_as_uint(__ldg(reinterpret_cast<const float*>(p) + i));
    else return __ldg(reinterpret_cast<const unsigned short*>(p) + i);
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

// The inputs of one lane for one tile: timesteps l0 + 16*m + s, m < M. Kept as raw bits and
// converted only when used, a tile or two later: converting at load time would stall the warp
// on every load (at one warp per scheduler nothing else hides that latency).
template <int M> struct LaneTile {
    unsigned u[M], d[M], z[M];
    int off[M];     // element index of u/out, or -1 (past L, or an ES2D padding pixel)
    bool tv[M];     // the timestep exists (t < L)
};

// Position of a lane's timestep on an ES2D route: cell (i, j) of the stride-2 sub-grid.
struct RouteCursor {
    int major, minor, extent;  // row-major: (i, j, w2); column-major: (j, i, h2)
    __device__ __forceinline__ void advance(int n) {
        minor += n;
        while (minor >= extent) { minor -= extent; ++major; }
    }
};

template <typename TU, typename TW, typename TO, int SPL, bool ROUTES>
__device__ __forceinline__ void scan_two_channels(const Params& p, char* smem_raw) {
    using Tl = Tiling<SPL, TW>;
    constexpr int TL = Tl::TL, M = Tl::M, W = Tl::W, kPW = Word<TW>::kPerWord;
    WarpSmem<TL>& sm = reinterpret_cast<WarpSmem<TL>*>(smem_raw)[threadIdx.x >> 5];

    const int lane = threadIdx.x & 31, half = lane >> 4, s = lane & 15;
    const long chan_raw = ((long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5)) * 2 + half;
    const bool chan_ok = chan_raw < (long)p.batch * p.dim;
    const int chan = chan_ok ? (int)chan_raw : 0;  // idle halves replay channel 0 and never store
    const int b = chan / p.dim, q = chan % p.dim, L = p.L, N = p.N;

    const TU* u = static_cast<const TU*>(p.u);
    const TU* z = static_cast<const TU*>(p.z);
    TO* out = static_cast<TO*>(p.out);
    const float* dbuf = ROUTES ? static_cast<const float*>(p.delta) : nullptr;
    const TU* delta = ROUTES ? nullptr : static_cast<const TU*>(p.delta);

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
        const int n = s + kLanes * k;
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
    const float Dv = p.D ? __ldg(p.D + q) : 0.f;
    const float bias = p.delta_bias ? __ldg(p.delta_bias + q) : 0.f;
    const bool has_z = !ROUTES && z != nullptr;
    const bool vec = p.vec_bc != 0;
    const long seq_base = (long)chan * L;

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
        cur.advance(s);
        map_base = ((long)b * p.dim_route + d_route) * p.h * p.w;
    }

    auto fetch = [&](int l0, LaneTile<M>& t) {
#pragma unroll
        for (int m = 0; m < M; ++m) {
            const int tt = l0 + kSub * m + s;
            const bool tv = tt < L;
            int off = -1;
            if (ROUTES) {
                const int i = row_major ? cur.major : cur.minor;
                const int j = row_major ? cur.minor : cur.major;
                const int row = 2 * i + rp, col = 2 * j + cp;
                if (tv && row < p.h && col < p.w) off = (int)(row * p.w + col);
                cur.advance(kSub);
            } else if (tv) {
                off = tt;
            }
            t.tv[m] = tv;
            t.off[m] = off;
            t.u[m] = off >= 0 ? load_bits(u, (ROUTES ? map_base : seq_base) + off) : 0u;
            t.d[m] = tv ? (ROUTES ? load_bits(dbuf, seq_base + tt) : load_bits(delta, seq_base + tt)) : 0u;
            t.z[m] = (has_z && tv) ? load_bits(z, seq_base + tt) : 0u;
        }
    };
    // delta -> dt = softplus(delta + bias), and dt * u, for the tile into shared memory.
    auto prepare = [&](const LaneTile<M>& t) {
#pragma unroll
        for (int m = 0; m < M; ++m) {
            float dt = 0.f;
            if (t.tv[m]) {
                dt = (ROUTES ? __uint_as_float(t.d[m]) : Word<TU>::get(t.d[m], 0)) + bias;
                if (p.softplus) dt = softplus(dt);
            }
            sm.dt[half * sm.kStride + kSub * m + s] = dt;
            sm.du[half * sm.kStride + kSub * m + s] = dt * Word<TU>::get(t.u[m], 0);
        }
    };
    auto load_bc = [&](int l0, unsigned (&rb)[SPL][W], unsigned (&rc)[SPL][W]) {
#pragma unroll
        for (int k = 0; k < SPL; ++k) {
            load_row<TW, TL>(brow[k], l0, L, vec, rb[k]);
            load_row<TW, TL>(crow[k], l0, L, vec, rc[k]);
        }
    };

    LaneTile<M> t0, t1, t2;
    unsigned rbA[SPL][W], rcA[SPL][W], rbB[SPL][W], rcB[SPL][W];
    fetch(0, t0);
    fetch(TL, t1);
    if (Tl::kPrefetchBC) load_bc(0, rbA, rcA);
    prepare(t0);

    // One tile: scan timesteps l0 .. l0+TL-1 with B/C in (rb, rc) while the next tile's B/C
    // land in (nb, nc); the two register sets swap roles from tile to tile (no copies).
    auto tile = [&](int l0, unsigned (&rb)[SPL][W], unsigned (&rc)[SPL][W], unsigned (&nb)[SPL][W],
                    unsigned (&nc)[SPL][W]) {
        fetch(l0 + 2 * TL, t2);
        if (Tl::kPrefetchBC) {
            load_bc(l0 + TL, nb, nc);
        } else {
            load_bc(l0, rb, rc);
        }
        __syncwarp();
        const float* sdt = sm.dt + half * sm.kStride;
        const float* sdu = sm.du + half * sm.kStride;
#pragma unroll
        for (int m = 0; m < M; ++m) {
            float part[kSub];
            float dtv[kSub], duv[kSub];
#pragma unroll
            for (int j = 0; j < kSub; j += 4) {
                const float4 a = *reinterpret_cast<const float4*>(sdt + kSub * m + j);
                const float4 c = *reinterpret_cast<const float4*>(sdu + kSub * m + j);
                dtv[j] = a.x; dtv[j + 1] = a.y; dtv[j + 2] = a.z; dtv[j + 3] = a.w;
                duv[j] = c.x; duv[j + 1] = c.y; duv[j + 2] = c.z; duv[j + 3] = c.w;
            }
#pragma unroll
            for (int j = 0; j < kSub; ++j) part[j] = 0.f;
#pragma unroll
            for (int k = 0; k < SPL; ++k) {
#pragma unroll
                for (int j = 0; j < kSub; ++j) {
                    const int e = kSub * m + j;
                    const float bv = Word<TW>::get(rb[k][e / kPW], e % kPW);
                    const float cv = Word<TW>::get(rc[k][e / kPW], e % kPW);
                    const float dA = exp2_fast(dtv[j] * A2[k]);
                    hs[k] = fmaf(dA, hs[k], duv[j] * bv);
                    part[j] = fmaf(cv, hs[k], part[j]);
                }
            }
            // Sum over the 16 lanes of the channel: lane s writes its row, reads column s.
            float4* row4 = reinterpret_cast<float4*>(sm.red + half * kRedHalf + s * 20);
#pragma unroll
            for (int j = 0; j < kSub; j += 4) row4[j / 4] = make_float4(part[j], part[j + 1], part[j + 2], part[j + 3]);
            __syncwarp();
            const float* col = sm.red + half * kRedHalf + s;
            float acc[4];
#pragma unroll
            for (int i = 0; i < 4; ++i) acc[i] = (col[20 * i] + col[20 * (i + 4)]) + (col[20 * (i + 8)] + col[20 * (i + 12)]);
            float y = (acc[0] + acc[1]) + (acc[2] + acc[3]);
            __syncwarp();
            if (chan_ok && t0.off[m] >= 0) {
                y = fmaf(Dv, Word<TU>::get(t0.u[m], 0), y);
                if (has_z) y *= silu(Word<TU>::get(t0.z[m], 0));
                out[(ROUTES ? map_base : seq_base) + t0.off[m]] = from_float<TO>(y);
            }
        }
        __syncwarp();
        prepare(t1);
        t0 = t1;
        t1 = t2;
    };

    for (int l0 = 0; l0 < L; l0 += 2 * TL) {
        tile(l0, rbA, rcA, rbB, rcB);
        if (l0 + TL >= L) break;
        tile(l0 + TL, rbB, rcB, rbA, rcA);
    }
}

}  // namespace scan
}  // namespace fe
