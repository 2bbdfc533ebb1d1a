// Pooled LayerNorm: the mean over a map's pixels of LayerNorm(x) without the affine part (BiAttn's pooled
// vector before its weight and bias), and optionally of x itself (ECA's pooled vector), in one pass over x.
//
//   fe_ln_pool_<x>   x (batch, P, C) rows of channels (a channels-last map); out (batch, 2, C) float32 gets the
//                    means over the P rows of (x - mean) * rstd (out[b, 0]) and, with `with_raw`, of x (out[b, 1])
//
// Why: compiled, LayerNorm(x).mean(pixels) is three kernels (the per-pixel statistics, then the mean over the
// pixels split in two launches) and the normalized map is written and read back in between; the DVSS block
// needs it twice (on its SS2D output and on its LDC output), and ECA's mean of the first is one more pass.
//
// grid (blocks an image, batch), block kPoolThreads. A block walks its rows of one image in tiles of R rows
// (launch_params.ln_pool_plan) staged in shared memory with 16-byte loads where the rows allow, the next
// tile's loads in flight while the block works on the current one; a warp a row computes the row's mean and
// variance from the tile (float32, one pass shifted by the row's first value), and each thread adds
// (x - mean) * rstd (and x) of its channels over the tile's rows into registers (narrow rows: groups of
// threads take every G-th row). At the end the block adds its sums / P into out with one atomic a channel:
// out must be zeroed first (the launcher does). The caller applies the LayerNorm's weight and bias.
#include "../common/fe_types.cuh"

namespace fe {
namespace pool {

constexpr int kPoolThreads = 256;               // launch_params.LN_POOL_THREADS
constexpr int kPoolWarps = kPoolThreads / 32;
constexpr int kTileBytes = 8192;                // a tile's staged rows, at most (launch_params.LN_POOL_TILE_BYTES)
constexpr int kMaxRows = 256;                   // rows of a tile, at most (launch_params.LN_POOL_MAX_ROWS)
constexpr int kChanPerThread = 8;               // C <= kPoolThreads * kChanPerThread (launch_params.LN_POOL_MAX_C)
constexpr int kLoads = kTileBytes / 16 / kPoolThreads;  // 16-byte loads a thread issues a tile

// A tile's n elements (rows * C, one run) as this thread's share of raw 16-byte words (vec), requested
// together, so the next tile's loads are in flight while the block works on the current one.
struct TileWords { uint4 w[kLoads]; };

template <typename T>
__device__ __forceinline__ void fetch_tile(const T* src, int n, bool vec, TileWords& got) {
    constexpr int kPer = 16 / static_cast<int>(sizeof(T));
    if (!vec) return;
#pragma unroll
    for (int q = 0; q < kLoads; ++q) {
        const int i = threadIdx.x + q * kPoolThreads;
        got.w[q] = i * kPer < n ? __ldg(reinterpret_cast<const uint4*>(src) + i) : make_uint4(0, 0, 0, 0);
    }
}

// The fetched words into the shared tile, or (rows not 16-byte runs) the elements straight from memory.
template <typename T>
__device__ __forceinline__ void store_tile(const T* src, int n, bool vec, const TileWords& got, T* tile) {
    constexpr int kPer = 16 / static_cast<int>(sizeof(T));
    if (vec) {
#pragma unroll
        for (int q = 0; q < kLoads; ++q) {
            const int i = threadIdx.x + q * kPoolThreads;
            if (i * kPer < n) reinterpret_cast<uint4*>(tile)[i] = got.w[q];
        }
        return;
    }
    for (int i = threadIdx.x; i < n; i += kPoolThreads) tile[i] = src[i];
}

template <typename T>
__device__ __forceinline__ void ln_pool(const T* x, float* out, int P, int C, int R, int rows_per_block,
                                        int with_raw, float eps) {
    __shared__ __align__(16) T tile[kTileBytes / sizeof(T)];
    __shared__ float2 stats[kMaxRows];  // (mean, rstd) of the tile's rows
    const int b = blockIdx.y, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int row_begin = blockIdx.x * rows_per_block, row_end = min(P, row_begin + rows_per_block);
    if (row_begin >= row_end) return;  // whole block idle (no barrier passed yet)
    const T* img = x + (long)b * P * C;
    const bool vec = reinterpret_cast<unsigned long long>(x) % 16 == 0 && (C * (int)sizeof(T)) % 16 == 0;
    const float inv_c = 1.f / (float)C;
    // Narrow rows (C <= kPoolThreads / 2): G groups of C threads take every G-th row of a tile, so most
    // threads add; wider rows: a thread takes channels t, t + kPoolThreads, ... of every row.
    const int groups = C <= kPoolThreads / 2 ? kPoolThreads / C : 1;
    const int group = threadIdx.x / C, chan = threadIdx.x % C;
    const bool adds = group < groups;  // read with groups > 1 only
    float acc_ln[kChanPerThread], acc_x[kChanPerThread];
#pragma unroll
    for (int i = 0; i < kChanPerThread; ++i) { acc_ln[i] = 0.f; acc_x[i] = 0.f; }

    TileWords next;
    fetch_tile(img + (long)row_begin * C, min(R, row_end - row_begin) * C, vec, next);
    for (int row0 = row_begin; row0 < row_end; row0 += R) {
        const int rows = min(R, row_end - row0);
        __syncthreads();  // the previous tile is used up
        store_tile(img + (long)row0 * C, rows * C, vec, next, tile);
        if (row0 + R < row_end) fetch_tile(img + (long)(row0 + R) * C, min(R, row_end - row0 - R) * C, vec, next);
        __syncthreads();
        // Row statistics, a warp a row, one pass: sums of (x - k) and its square with k the row's first value
        // (shifting by a value of the row keeps the difference of squares from cancelling).
        for (int r = warp; r < rows; r += kPoolWarps) {
            const T* row = tile + r * C;
            const float k = to_float(row[0]);
            float s = 0.f, sq = 0.f;
            for (int c = lane; c < C; c += 32) {
                const float d = to_float(row[c]) - k;
                s += d;
                sq = fmaf(d, d, sq);
            }
            s = warp_sum(s) * inv_c;
            sq = warp_sum(sq) * inv_c;
            if (lane == 0) stats[r] = make_float2(k + s, rsqrtf(fmaxf(sq - s * s, 0.f) + eps));
        }
        __syncthreads();
        if (groups > 1) {
            if (adds) {
#pragma unroll 4
                for (int r = group; r < rows; r += groups) {
                    const float v = to_float(tile[r * C + chan]);
                    const float2 st = stats[r];
                    acc_ln[0] = fmaf(v - st.x, st.y, acc_ln[0]);
                    acc_x[0] += v;
                }
            }
        } else {
#pragma unroll
            for (int i = 0; i < kChanPerThread; ++i) {
                const int c = threadIdx.x + i * kPoolThreads;
                if (c >= C) break;
#pragma unroll 4
                for (int r = 0; r < rows; ++r) {
                    const float v = to_float(tile[r * C + c]);
                    const float2 st = stats[r];
                    acc_ln[i] = fmaf(v - st.x, st.y, acc_ln[i]);
                    acc_x[i] += v;
                }
            }
        }
    }
    float* dst = out + (long)b * 2 * C;
    const float inv_p = 1.f / (float)P;
    if (groups > 1) {
        // The groups' sums of a channel meet in shared memory; one atomic a channel and block.
        float* part = reinterpret_cast<float*>(tile);  // [groups][2][C] floats: 2 * kPoolThreads at most
        __syncthreads();
        if (adds) {
            part[(group * 2) * C + chan] = acc_ln[0];
            part[(group * 2 + 1) * C + chan] = acc_x[0];
        }
        __syncthreads();
        if (threadIdx.x < C) {
            float ln = 0.f, raw = 0.f;
            for (int g = 0; g < groups; ++g) {
                ln += part[(g * 2) * C + threadIdx.x];
                raw += part[(g * 2 + 1) * C + threadIdx.x];
            }
            atomicAdd(dst + threadIdx.x, ln * inv_p);
            if (with_raw) atomicAdd(dst + C + threadIdx.x, raw * inv_p);
        }
        return;
    }
#pragma unroll
    for (int i = 0; i < kChanPerThread; ++i) {
        const int c = threadIdx.x + i * kPoolThreads;
        if (c >= C) break;
        atomicAdd(dst + c, acc_ln[i] * inv_p);
        if (with_raw) atomicAdd(dst + C + c, acc_x[i] * inv_p);
    }
}

}  // namespace pool
}  // namespace fe

// x (batch, P, C); out (batch, 2, C) float32, zeroed; R rows a tile, rows_per_block a multiple of R.
#define FE_LN_POOL_ENTRY(NAME, T)                                                                        \
    extern "C" __global__ void __launch_bounds__(fe::pool::kPoolThreads) NAME(                           \
        const T* x, float* out, int P, int C, int R, int rows_per_block, int with_raw, float eps) {      \
        fe::pool::ln_pool<T>(x, out, P, C, R, rows_per_block, with_raw, eps);                            \
    }

#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_ln_pool_f32)
FE_LN_POOL_ENTRY(fe_ln_pool_f32, float)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_ln_pool_f16)
FE_LN_POOL_ENTRY(fe_ln_pool_f16, fe::half_t)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_ln_pool_bf16)
FE_LN_POOL_ENTRY(fe_ln_pool_bf16, fe::bf16_t)
#endif
