// Selective scan backward (mamba_ssm's selective_scan_fn): the gradients of u, delta, A, B, C,
// D, z and delta_bias from the gradient of the output, in two launches.
//
// Layout. The LPC lanes of a channel split its N states (lane s owns states s, s + LPC, ...:
// SPL of them). A block holds CPB = 32 * W / LPC consecutive channels of ONE group of one batch
// element, so a tile of B and C (kT timesteps) is read once per block into shared memory, and dB,
// dC (sums over the group's channels) are first summed over the block's channels in shared
// memory: one atomic add per (state, timestep) and block. n16: 16 lanes x 1 state, 4 warps;
// n32: 32 x 1, 4 warps; n64: 32 x 2, 2 warps. States, adjoints and sums are float32.
//
// Passes. L is cut into segments (grid.y; one unless the channels alone leave the GPU idle) and
// each segment into tiles of kT steps.
//  prep (fe_selective_scan_bwd_prep_*): per segment, the forward recurrence from a zero state,
//    storing the state at the start of every tile (the checkpoints) and, with several segments,
//    the sum of dt up to each tile, the segment's end state and dt sum, and the adjoint walked
//    backward over the segment from zero (what the segment hands to the one before it).
//  main (fe_selective_scan_bwd_*): per segment, the state entering it (earlier segments' end
//    states carried forward) and the adjoint entering it from the right (later segments'
//    adjoints carried backward); then tiles from last to first: the tile's states recomputed
//    from its checkpoint into shared memory, the output y recomputed for dz, then the adjoint
//    g_t = dy_t C_t + exp(dt_{t+1} A) g_{t+1} walked backward with every gradient:
//      dB_t += g_t dt_t u_t        dC_t += dy_t h_t        du_t = dt_t sum_n g_t B_t + D dy_t
//      ddt_t = sum_n g_t (B_t u_t + A exp(dt_t A) h_{t-1})     dA += g_t dt_t exp(dt_t A) h_{t-1}
//    with dy = dout silu(z), dz = dout y silu'(z), ddelta = ddt softplus'(delta + bias).
//    Sums over states go through shared memory (each lane adds up its channel's lanes for the
//    timesteps it owns); dA, dD and ddelta_bias are summed in registers over the segment and
//    added atomically once per channel. Gradient outputs that are null are not computed.
//
// Entry points are extern "C" (stable names); the loader compiles only the one it needs
// (-DFE_ONLY_<name>), -DFE_ALL_KERNELS builds them all.
#include "../common/fe_types.cuh"

namespace fe {
namespace scan_bwd {

constexpr int kT = 16;  // timesteps per tile (kernels/launch_params.py: SCAN_BWD_TILE)

template <int LPC, int SPL, int W> struct Shape {
    static constexpr int NT = 32 * W;     // threads per block
    static constexpr int NTP = NT + 1;    // row stride of the per-lane arrays (rows start on other banks)
    static constexpr int NP = LPC * SPL;  // state slots per channel
    static constexpr int NPP = NP + 1;    // row stride of the B/C tile
    static constexpr int CPB = NT / LPC;  // channels per block
};

// One tile's inputs, shared by the block (both passes).
template <int LPC, int SPL, int W> struct TileSmem {
    using S = Shape<LPC, SPL, W>;
    float b[kT * S::NPP];      // B[t][n], zero past L and for n >= N
    float c[kT * S::NPP];
    float dt[S::CPB * kT];     // softplus(delta + bias) (or delta + bias); 0 past L or for an idle slot
    float u[S::CPB * kT];
    float dy[S::CPB * kT];     // dout * silu(z) (or dout)
    float dzf[S::CPB * kT];    // dout * silu'(z): dz = y * dzf
    float sf[S::CPB * kT];     // softplus'(delta + bias) (or 1): ddelta = ddt * sf
};

template <int LPC, int SPL, int W> struct MainSmem {
    using S = Shape<LPC, SPL, W>;
    TileSmem<LPC, SPL, W> tile;
    float hs[SPL * kT * S::NTP];  // per lane: h_{t-1}, then the lane's dB term
    float cs[SPL * kT * S::NTP];  // per lane: the dC term
    float p1[kT * S::NTP];        // per lane, summed over its states: C h (for y), then g B
    float p2[kT * S::NTP];        // g (B u + A exp(dt A) h_{t-1})
};

struct Params {
    const void* u;
    const void* delta;
    const float* A;
    const void* B;
    const void* C;
    const float* D;
    const void* z;
    const float* delta_bias;
    const void* dout;
    void* du;
    void* ddelta;
    void* dz;
    float* dA;
    float* dB;
    float* dC;
    float* dD;
    float* ddelta_bias;
    float* ck_h;     // (batch*dim, n_segs*tiles_per_seg, NP): state at each tile start, from 0 at the segment start
    float* ck_cum;   // (batch*dim, n_segs*tiles_per_seg): sum of dt from the segment start to the tile start
    float* seg_h;    // (batch*dim, n_segs, NP): segment end state from 0
    float* seg_g;    // (batch*dim, n_segs, NP): adjoint the segment hands back, from 0 at its end
    float* seg_sum;  // (batch*dim, n_segs): sum of dt over the segment
    int batch, dim, L, N, groups, softplus, seg_len, n_segs, tiles_per_seg;
};

__device__ __forceinline__ float ld(const float* p, long i) { return __ldg(p + i); }
__device__ __forceinline__ float ld(const half_t* p, long i) {
    half_t h;
    h.bits = __ldg(reinterpret_cast<const unsigned short*>(p) + i);
    return to_float(h);
}
__device__ __forceinline__ float ld(const bf16_t* p, long i) {
    bf16_t h;
    h.bits = __ldg(reinterpret_cast<const unsigned short*>(p) + i);
    return to_float(h);
}

template <typename T> __device__ __forceinline__ void st(void* p, long i, float v) {
    static_cast<T*>(p)[i] = from_float<T>(v);
}

__device__ __forceinline__ float sigmoid(float x) { return 1.f / (1.f + expf(-x)); }

// Where this thread sits: its channel, states, segment, and the rows it reads.
template <int LPC, int SPL, int W> struct Lane {
    int tid, slot, s, q, seg, l_begin, l_end, n_tiles;
    bool chan_ok;   // false for the idle slots of a group's last block (they carry zeros)
    long chan;      // b * dim + q
    long seq;       // chan * L: this channel's row of u, delta, z, dout, du, ...
    long bc;        // (b * groups + g) * N: the group's first row of B and C
    long ck;        // chan's first checkpoint of this segment
    float A2[SPL];  // A * log2(e), 0 for n >= N
    float Av[SPL];  // A, 0 for n >= N
    float bias;

    __device__ __forceinline__ void init(const Params& p) {
        using S = Shape<LPC, SPL, W>;
        tid = threadIdx.x;
        slot = tid / LPC;
        s = tid % LPC;
        const int cpg = p.dim / p.groups;
        const int bpg = (cpg + S::CPB - 1) / S::CPB;
        const int blk = blockIdx.x;
        const int j = blk % bpg, bg = blk / bpg;
        const int g = bg % p.groups, b = bg / p.groups;
        const int ci = j * S::CPB + slot;
        chan_ok = ci < cpg;
        q = g * cpg + (chan_ok ? ci : 0);
        chan = (long)b * p.dim + q;
        seq = chan * p.L;
        bc = ((long)b * p.groups + g) * p.N;
        seg = blockIdx.y;
        l_begin = seg * p.seg_len;
        l_end = min(p.L, l_begin + p.seg_len);
        n_tiles = (l_end - l_begin + kT - 1) / kT;
        ck = (chan * p.n_segs + seg) * p.tiles_per_seg;
#pragma unroll
        for (int k = 0; k < SPL; ++k) {
            const int n = s + LPC * k;
            const float a = n < p.N ? __ldg(p.A + (long)q * p.N + n) : 0.f;
            Av[k] = a;
            A2[k] = a * kLog2e;
        }
        bias = p.delta_bias != nullptr ? __ldg(p.delta_bias + q) : 0.f;
    }
};

// Tile l0 .. l0+kT-1 into shared memory: B and/or C rows, and the channel's per-step values.
template <typename TU, typename TW, int LPC, int SPL, int W>
__device__ __forceinline__ void load_tile(const Params& p, const Lane<LPC, SPL, W>& ln, int l0, bool need_b,
                                          bool need_c, bool need_dy, TileSmem<LPC, SPL, W>& sm) {
    using S = Shape<LPC, SPL, W>;
    const TW* Bp = static_cast<const TW*>(p.B);
    const TW* Cp = static_cast<const TW*>(p.C);
    for (int i = ln.tid; i < kT * S::NP; i += S::NT) {
        const int n = i / kT, t = i % kT, l = l0 + t;
        const bool ok = n < p.N && l < ln.l_end;
        const long o = (ln.bc + (ok ? n : 0)) * p.L + (ok ? l : 0);
        if (need_b) sm.b[t * S::NPP + n] = ok ? ld(Bp, o) : 0.f;
        if (need_c) sm.c[t * S::NPP + n] = ok ? ld(Cp, o) : 0.f;
    }
    const TU* up = static_cast<const TU*>(p.u);
    const TU* dp = static_cast<const TU*>(p.delta);
    const TU* gp = static_cast<const TU*>(p.dout);
    const TU* zp = static_cast<const TU*>(p.z);
    for (int t = ln.s; t < kT; t += LPC) {
        const int l = l0 + t;
        float dt = 0.f, uv = 0.f, dy = 0.f, dzf = 0.f, sf = 0.f;
        if (ln.chan_ok && l < ln.l_end) {
            const float x = ld(dp, ln.seq + l) + ln.bias;
            if (p.softplus) {
                dt = softplus(x);
                sf = x > 20.f ? 1.f : sigmoid(x);  // torch's softplus backward, threshold 20
            } else {
                dt = x;
                sf = 1.f;
            }
            uv = ld(up, ln.seq + l);
            if (need_dy) {
                const float go = ld(gp, ln.seq + l);
                if (zp != nullptr) {
                    const float zv = ld(zp, ln.seq + l);
                    const float sg = sigmoid(zv);
                    dy = go * zv * sg;
                    dzf = go * sg * fmaf(zv, 1.f - sg, 1.f);
                } else {
                    dy = go;
                }
            }
        }
        const int i = ln.slot * kT + t;
        sm.dt[i] = dt;
        sm.u[i] = uv;
        sm.dy[i] = dy;
        sm.dzf[i] = dzf;
        sm.sf[i] = sf;
    }
}

template <typename TU, typename TW, int LPC, int SPL, int W>
__device__ __forceinline__ void prep_block(const Params& p, TileSmem<LPC, SPL, W>& sm) {
    using S = Shape<LPC, SPL, W>;
    Lane<LPC, SPL, W> ln;
    ln.init(p);
    const bool multi = p.n_segs > 1;
    const float* dts = sm.dt + ln.slot * kT;
    const float* us = sm.u + ln.slot * kT;
    const float* dys = sm.dy + ln.slot * kT;

    float h[SPL];
#pragma unroll
    for (int k = 0; k < SPL; ++k) h[k] = 0.f;
    float cum = 0.f;
    for (int it = 0; it < ln.n_tiles; ++it) {
        const int l0 = ln.l_begin + it * kT;
        if (ln.chan_ok) {
#pragma unroll
            for (int k = 0; k < SPL; ++k) p.ck_h[(ln.ck + it) * S::NP + ln.s + LPC * k] = h[k];
            if (multi && ln.s == 0) p.ck_cum[ln.ck + it] = cum;
        }
        load_tile<TU, TW>(p, ln, l0, true, false, false, sm);
        __syncthreads();
        for (int t = 0; t < kT; ++t) {
            const float dt = dts[t], dtu = dt * us[t];
#pragma unroll
            for (int k = 0; k < SPL; ++k)
                h[k] = fmaf(exp2_fast(dt * ln.A2[k]), h[k], dtu * sm.b[t * S::NPP + ln.s + LPC * k]);
            cum += dt;
        }
        __syncthreads();
    }
    if (!multi) return;

    const long sg = ln.chan * p.n_segs + ln.seg;
    if (ln.chan_ok) {
#pragma unroll
        for (int k = 0; k < SPL; ++k) p.seg_h[sg * S::NP + ln.s + LPC * k] = h[k];
        if (ln.s == 0) p.seg_sum[sg] = cum;
    }
    // The adjoint from zero at the segment's end back to its start.
    float gn[SPL];
#pragma unroll
    for (int k = 0; k < SPL; ++k) gn[k] = 0.f;
    for (int it = ln.n_tiles - 1; it >= 0; --it) {
        load_tile<TU, TW>(p, ln, ln.l_begin + it * kT, false, true, true, sm);
        __syncthreads();
        for (int t = kT - 1; t >= 0; --t) {
            const float dt = dts[t], dy = dys[t];
#pragma unroll
            for (int k = 0; k < SPL; ++k) {
                const float g = fmaf(dy, sm.c[t * S::NPP + ln.s + LPC * k], gn[k]);
                gn[k] = exp2_fast(dt * ln.A2[k]) * g;
            }
        }
        __syncthreads();
    }
    if (ln.chan_ok) {
#pragma unroll
        for (int k = 0; k < SPL; ++k) p.seg_g[sg * S::NP + ln.s + LPC * k] = gn[k];
    }
}

template <typename TU, typename TW, int LPC, int SPL, int W>
__device__ __forceinline__ void main_block(const Params& p, MainSmem<LPC, SPL, W>& sm) {
    using S = Shape<LPC, SPL, W>;
    Lane<LPC, SPL, W> ln;
    ln.init(p);
    const int tid = ln.tid, s = ln.s, slot = ln.slot;
    const bool multi = p.n_segs > 1;

    // h_in: the state entering the segment; gn: exp(dt A) g of the step after the current one.
    float h_in[SPL], gn[SPL], dA_acc[SPL];
#pragma unroll
    for (int k = 0; k < SPL; ++k) h_in[k] = gn[k] = dA_acc[k] = 0.f;
    if (multi && ln.chan_ok) {
        const long base = ln.chan * p.n_segs;
        for (int j = 0; j < ln.seg; ++j) {
            const float sum = p.seg_sum[base + j];
#pragma unroll
            for (int k = 0; k < SPL; ++k)
                h_in[k] = fmaf(exp2_fast(ln.A2[k] * sum), h_in[k], p.seg_h[(base + j) * S::NP + s + LPC * k]);
        }
        for (int j = p.n_segs - 1; j > ln.seg; --j) {
            const float sum = p.seg_sum[base + j];
#pragma unroll
            for (int k = 0; k < SPL; ++k)
                gn[k] = fmaf(exp2_fast(ln.A2[k] * sum), gn[k], p.seg_g[(base + j) * S::NP + s + LPC * k]);
        }
    }
    const float Dv = p.D != nullptr ? __ldg(p.D + ln.q) : 0.f;
    const bool want_dz = p.dz != nullptr && p.z != nullptr;
    const bool want_bc = p.dB != nullptr || p.dC != nullptr;
    const float* dts = sm.tile.dt + slot * kT;
    const float* us = sm.tile.u + slot * kT;
    const float* dys = sm.tile.dy + slot * kT;
    const float* bt = sm.tile.b + s;
    const float* ct = sm.tile.c + s;
    float dD_acc = 0.f, db_acc = 0.f;

    for (int it = ln.n_tiles - 1; it >= 0; --it) {
        const int l0 = ln.l_begin + it * kT;
        float h[SPL];
#pragma unroll
        for (int k = 0; k < SPL; ++k) h[k] = 0.f;
        if (ln.chan_ok) {
            const float cum = multi ? p.ck_cum[ln.ck + it] : 0.f;
#pragma unroll
            for (int k = 0; k < SPL; ++k) {
                h[k] = p.ck_h[(ln.ck + it) * S::NP + s + LPC * k];
                if (multi) h[k] = fmaf(exp2_fast(ln.A2[k] * cum), h_in[k], h[k]);
            }
        }
        load_tile<TU, TW>(p, ln, l0, true, true, true, sm.tile);
        __syncthreads();

        // 1. The tile's states from the checkpoint (h_{t-1} kept per step), and C h for y.
        for (int t = 0; t < kT; ++t) {
            const float dt = dts[t], dtu = dt * us[t];
            float yp = 0.f;
#pragma unroll
            for (int k = 0; k < SPL; ++k) {
                sm.hs[(k * kT + t) * S::NTP + tid] = h[k];
                h[k] = fmaf(exp2_fast(dt * ln.A2[k]), h[k], dtu * bt[t * S::NPP + LPC * k]);
                yp = fmaf(ct[t * S::NPP + LPC * k], h[k], yp);
            }
            sm.p1[t * S::NTP + tid] = yp;
        }
        __syncthreads();
        if (want_dz) {
            for (int t = s; t < kT; t += LPC) {
                const int l = l0 + t;
                if (ln.chan_ok && l < ln.l_end) {
                    const float* row = sm.p1 + t * S::NTP + slot * LPC;
                    float y = 0.f;
#pragma unroll
                    for (int j = 0; j < LPC; ++j) y += row[j];
                    y = fmaf(Dv, us[t], y);
                    st<TU>(p.dz, ln.seq + l, y * sm.tile.dzf[slot * kT + t]);
                }
            }
        }
        __syncthreads();

        // 2. The adjoint backward through the tile, with the per-lane gradient terms.
        for (int t = kT - 1; t >= 0; --t) {
            const float dt = dts[t], uv = us[t], dy = dys[t], dtu = dt * uv;
            float pu = 0.f, pd = 0.f;
#pragma unroll
            for (int k = 0; k < SPL; ++k) {
                const int r = (k * kT + t) * S::NTP + tid;
                const float hp = sm.hs[r];
                const float a = exp2_fast(dt * ln.A2[k]);
                const float bv = bt[t * S::NPP + LPC * k], cv = ct[t * S::NPP + LPC * k];
                const float ahp = a * hp;
                const float g = fmaf(dy, cv, gn[k]);
                sm.hs[r] = g * dtu;
                sm.cs[r] = dy * fmaf(a, hp, dtu * bv);
                pu = fmaf(g, bv, pu);
                pd = fmaf(g, fmaf(bv, uv, ln.Av[k] * ahp), pd);
                dA_acc[k] = fmaf(g * dt, ahp, dA_acc[k]);
                gn[k] = a * g;
            }
            sm.p1[t * S::NTP + tid] = pu;
            sm.p2[t * S::NTP + tid] = pd;
        }
        __syncthreads();

        // 3. du, ddelta of the steps this lane owns (sums over the channel's lanes).
        for (int t = s; t < kT; t += LPC) {
            const int l = l0 + t;
            if (ln.chan_ok && l < ln.l_end) {
                const float* r1 = sm.p1 + t * S::NTP + slot * LPC;
                const float* r2 = sm.p2 + t * S::NTP + slot * LPC;
                float su = 0.f, sd = 0.f;
#pragma unroll
                for (int j = 0; j < LPC; ++j) {
                    su += r1[j];
                    sd += r2[j];
                }
                const float dt = dts[t], uv = us[t], dy = dys[t];
                const float dd = sd * sm.tile.sf[slot * kT + t];
                if (p.du != nullptr) st<TU>(p.du, ln.seq + l, fmaf(dt, su, Dv * dy));
                if (p.ddelta != nullptr) st<TU>(p.ddelta, ln.seq + l, dd);
                dD_acc = fmaf(dy, uv, dD_acc);
                db_acc += dd;
            }
        }
        // 4. dB, dC: the block's channels summed, one atomic add per (state, step).
        if (want_bc) {
            for (int i = tid; i < kT * p.N; i += S::NT) {
                const int t = i % kT, n = i / kT, l = l0 + t;
                if (l >= ln.l_end) continue;
                const int k = n / LPC, j = n % LPC;
                const float* rb = sm.hs + (k * kT + t) * S::NTP + j;
                const float* rc = sm.cs + (k * kT + t) * S::NTP + j;
                float sb = 0.f, sc = 0.f;
#pragma unroll
                for (int c = 0; c < S::CPB; ++c) {
                    sb += rb[c * LPC];
                    sc += rc[c * LPC];
                }
                const long o = (ln.bc + n) * p.L + l;
                if (p.dB != nullptr) atomicAdd(p.dB + o, sb);
                if (p.dC != nullptr) atomicAdd(p.dC + o, sc);
            }
        }
        __syncthreads();
    }

    // 5. dA per (channel, state); dD and ddelta_bias per channel (its lanes summed first).
    if (ln.chan_ok && p.dA != nullptr) {
#pragma unroll
        for (int k = 0; k < SPL; ++k) {
            const int n = s + LPC * k;
            if (n < p.N) atomicAdd(p.dA + (long)ln.q * p.N + n, dA_acc[k]);
        }
    }
#pragma unroll
    for (int o = LPC / 2; o > 0; o /= 2) {
        dD_acc += __shfl_xor_sync(0xffffffffu, dD_acc, o);
        db_acc += __shfl_xor_sync(0xffffffffu, db_acc, o);
    }
    if (ln.chan_ok && s == 0) {
        if (p.dD != nullptr) atomicAdd(p.dD + ln.q, dD_acc);
        if (p.ddelta_bias != nullptr) atomicAdd(p.ddelta_bias + ln.q, db_acc);
    }
}

}  // namespace scan_bwd
}  // namespace fe

// PASS: prep_block or main_block; SMEM: TileSmem or MainSmem.
#define FE_SCAN_BWD_ENTRY(NAME, TU, TW, LPC, SPL, W, PASS, SMEM)                                        \
    extern "C" __global__ void __launch_bounds__(32 * W) NAME(                                          \
        const TU* u, const TU* delta, const float* A, const TW* B, const TW* C, const float* D,         \
        const TU* z, const float* delta_bias, const TU* dout, TU* du, TU* ddelta, TU* dz, float* dA,     \
        float* dB, float* dC, float* dD, float* ddelta_bias, float* ck_h, float* ck_cum, float* seg_h,  \
        float* seg_g, float* seg_sum, int batch, int dim, int L, int N, int groups, int softplus,       \
        int seg_len, int n_segs, int tiles_per_seg) {                                                   \
        __shared__ fe::scan_bwd::SMEM<LPC, SPL, W> smem;                                                \
        fe::scan_bwd::Params p;                                                                         \
        p.u = u; p.delta = delta; p.A = A; p.B = B; p.C = C; p.D = D; p.z = z;                          \
        p.delta_bias = delta_bias; p.dout = dout; p.du = du; p.ddelta = ddelta; p.dz = dz;              \
        p.dA = dA; p.dB = dB; p.dC = dC; p.dD = dD; p.ddelta_bias = ddelta_bias;                        \
        p.ck_h = ck_h; p.ck_cum = ck_cum; p.seg_h = seg_h; p.seg_g = seg_g; p.seg_sum = seg_sum;        \
        p.batch = batch; p.dim = dim; p.L = L; p.N = N; p.groups = groups; p.softplus = softplus;       \
        p.seg_len = seg_len; p.n_segs = n_segs; p.tiles_per_seg = tiles_per_seg;                        \
        fe::scan_bwd::PASS<TU, TW, LPC, SPL, W>(p, smem);                                               \
    }

#define FE_SCAN_BWD_PREP(NAME, TU, TW, LPC, SPL, W) FE_SCAN_BWD_ENTRY(NAME, TU, TW, LPC, SPL, W, prep_block, TileSmem)
#define FE_SCAN_BWD_MAIN(NAME, TU, TW, LPC, SPL, W) FE_SCAN_BWD_ENTRY(NAME, TU, TW, LPC, SPL, W, main_block, MainSmem)

using fe::half_t;
using fe::bf16_t;

// fe_selective_scan_bwd_prep_<u type>_<B/C type>_n<max N> and fe_selective_scan_bwd_<...>
// n16: 16 lanes x 1 state, 4 warps; n32: 32 x 1, 4 warps; n64: 32 x 2, 2 warps.
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_bwd_prep_f32_f32_n16)
FE_SCAN_BWD_PREP(fe_selective_scan_bwd_prep_f32_f32_n16, float, float, 16, 1, 4)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_bwd_f32_f32_n16)
FE_SCAN_BWD_MAIN(fe_selective_scan_bwd_f32_f32_n16, float, float, 16, 1, 4)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_bwd_prep_f32_f32_n32)
FE_SCAN_BWD_PREP(fe_selective_scan_bwd_prep_f32_f32_n32, float, float, 32, 1, 4)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_bwd_f32_f32_n32)
FE_SCAN_BWD_MAIN(fe_selective_scan_bwd_f32_f32_n32, float, float, 32, 1, 4)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_bwd_prep_f32_f32_n64)
FE_SCAN_BWD_PREP(fe_selective_scan_bwd_prep_f32_f32_n64, float, float, 32, 2, 2)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_bwd_f32_f32_n64)
FE_SCAN_BWD_MAIN(fe_selective_scan_bwd_f32_f32_n64, float, float, 32, 2, 2)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_bwd_prep_f16_f16_n16)
FE_SCAN_BWD_PREP(fe_selective_scan_bwd_prep_f16_f16_n16, half_t, half_t, 16, 1, 4)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_bwd_f16_f16_n16)
FE_SCAN_BWD_MAIN(fe_selective_scan_bwd_f16_f16_n16, half_t, half_t, 16, 1, 4)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_bwd_prep_f16_f16_n32)
FE_SCAN_BWD_PREP(fe_selective_scan_bwd_prep_f16_f16_n32, half_t, half_t, 32, 1, 4)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_bwd_f16_f16_n32)
FE_SCAN_BWD_MAIN(fe_selective_scan_bwd_f16_f16_n32, half_t, half_t, 32, 1, 4)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_bwd_prep_f16_f16_n64)
FE_SCAN_BWD_PREP(fe_selective_scan_bwd_prep_f16_f16_n64, half_t, half_t, 32, 2, 2)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_bwd_f16_f16_n64)
FE_SCAN_BWD_MAIN(fe_selective_scan_bwd_f16_f16_n64, half_t, half_t, 32, 2, 2)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_bwd_prep_f16_f32_n16)
FE_SCAN_BWD_PREP(fe_selective_scan_bwd_prep_f16_f32_n16, half_t, float, 16, 1, 4)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_bwd_f16_f32_n16)
FE_SCAN_BWD_MAIN(fe_selective_scan_bwd_f16_f32_n16, half_t, float, 16, 1, 4)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_bwd_prep_f16_f32_n32)
FE_SCAN_BWD_PREP(fe_selective_scan_bwd_prep_f16_f32_n32, half_t, float, 32, 1, 4)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_bwd_f16_f32_n32)
FE_SCAN_BWD_MAIN(fe_selective_scan_bwd_f16_f32_n32, half_t, float, 32, 1, 4)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_bwd_prep_f16_f32_n64)
FE_SCAN_BWD_PREP(fe_selective_scan_bwd_prep_f16_f32_n64, half_t, float, 32, 2, 2)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_bwd_f16_f32_n64)
FE_SCAN_BWD_MAIN(fe_selective_scan_bwd_f16_f32_n64, half_t, float, 32, 2, 2)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_bwd_prep_bf16_bf16_n16)
FE_SCAN_BWD_PREP(fe_selective_scan_bwd_prep_bf16_bf16_n16, bf16_t, bf16_t, 16, 1, 4)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_bwd_bf16_bf16_n16)
FE_SCAN_BWD_MAIN(fe_selective_scan_bwd_bf16_bf16_n16, bf16_t, bf16_t, 16, 1, 4)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_bwd_prep_bf16_bf16_n32)
FE_SCAN_BWD_PREP(fe_selective_scan_bwd_prep_bf16_bf16_n32, bf16_t, bf16_t, 32, 1, 4)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_bwd_bf16_bf16_n32)
FE_SCAN_BWD_MAIN(fe_selective_scan_bwd_bf16_bf16_n32, bf16_t, bf16_t, 32, 1, 4)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_bwd_prep_bf16_bf16_n64)
FE_SCAN_BWD_PREP(fe_selective_scan_bwd_prep_bf16_bf16_n64, bf16_t, bf16_t, 32, 2, 2)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_bwd_bf16_bf16_n64)
FE_SCAN_BWD_MAIN(fe_selective_scan_bwd_bf16_bf16_n64, bf16_t, bf16_t, 32, 2, 2)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_bwd_prep_bf16_f32_n16)
FE_SCAN_BWD_PREP(fe_selective_scan_bwd_prep_bf16_f32_n16, bf16_t, float, 16, 1, 4)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_bwd_bf16_f32_n16)
FE_SCAN_BWD_MAIN(fe_selective_scan_bwd_bf16_f32_n16, bf16_t, float, 16, 1, 4)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_bwd_prep_bf16_f32_n32)
FE_SCAN_BWD_PREP(fe_selective_scan_bwd_prep_bf16_f32_n32, bf16_t, float, 32, 1, 4)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_bwd_bf16_f32_n32)
FE_SCAN_BWD_MAIN(fe_selective_scan_bwd_bf16_f32_n32, bf16_t, float, 32, 1, 4)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_bwd_prep_bf16_f32_n64)
FE_SCAN_BWD_PREP(fe_selective_scan_bwd_prep_bf16_f32_n64, bf16_t, float, 32, 2, 2)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_bwd_bf16_f32_n64)
FE_SCAN_BWD_MAIN(fe_selective_scan_bwd_bf16_f32_n64, bf16_t, float, 32, 2, 2)
#endif
