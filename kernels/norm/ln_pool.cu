// Pooled LayerNorm: the mean over a map's pixels of LayerNorm(x) (BiAttn's pooled vector), and optionally of x
// itself (ECA's pooled vector), in one pass over x and without atomics.
//
//   fe_ln_pool_<x>_k<K>   x (batch, P, C) rows of channels (a channels-last map), rows 16-byte runs;
//                         part (batch, blocks, 1 + with_raw, C) float32 gets each block's share of the means:
//                         part[b, i, 0] = sum over block i's rows of (x - mean) * rstd / P, part[b, i, 1] of x / P
//   fe_ln_pool_sum_<x>    out (batch, 1 + with_raw, C) in x's type: the shares added in block order, the
//                         LayerNorm's weight and bias applied to out[b, 0]
//
// Why: compiled, LayerNorm(x).mean(pixels) is three kernels (the per-pixel statistics, then the mean over the
// pixels split in two launches) and the normalized map is written and read back in between; the DVSS block
// needs it twice (on its SS2D output and on its LDC output), and ECA's mean of the first is one more pass.
// Two launches instead, no memset, and the shares add up in a fixed order: calls repeat bitwise.
//
// Pass: grid (blocks an image, batch), block kPoolThreads. A row is read by a group of L lanes, 16 bytes a lane
// and word (K words a lane: L = 32 for rows over 32 words, else the power of two that covers the row), so a
// warp reads a unit of 32 / L rows at a time. A block's units go round its warps, each warp loading up to
// kPasses = kSlots / K units at once. Each row's mean and variance come from its group's registers (one pass
// shifted by the row's first value, a butterfly over the group); a lane adds (x - mean) * rstd and x of its
// channels into registers. At the end a warp's row groups meet by shuffles, the warps in shared memory in warp
// order, and the block writes its share. launch_params (ln_pool_chunks, ln_pool_blocks) picks K and the rows a
// block: few units a warp on small maps, where the pass is bound by its chain of latencies, not by bandwidth.
//
// Sum: grid (outputs / 32, batch), block kSumThreads: a lane an output, the warps taking every kSumWarps-th
// share (many warps and loads in flight: the sum waits on L2 latency, hundreds of shares on large maps), then
// the warps in order.
#include "../common/fe_types.cuh"

namespace fe {
namespace pool {

constexpr int kPoolThreads = 128;  // launch_params.LN_POOL_THREADS
constexpr int kPoolWarps = kPoolThreads / 32;
constexpr int kSlots = 8;          // 16-byte loads in flight a lane (launch_params.LN_POOL_SLOTS)
constexpr int kSumThreads = 1024;  // launch_params.LN_POOL_SUM_THREADS
constexpr int kSumWarps = kSumThreads / 32;

template <typename T, int K>
struct Shape {
    static constexpr int kVec = 16 / static_cast<int>(sizeof(T));  // elements a 16-byte word
    static constexpr int kPasses = kSlots / K;                      // units a warp loads at once
    static constexpr int kLaneChannels = K * kVec;                  // channels a lane accumulates
    static constexpr int kMaxC = 32 * kLaneChannels;                // launch_params.ln_pool_max_channels
};

// The kVec elements of a 16-byte word as floats.
template <typename T>
__device__ __forceinline__ void unpack(const uint4& w, float* v) {
    constexpr int kPer = Word<T>::kPerWord;
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
        v[j] = Word<T>::get(w.x, j);
        v[kPer + j] = Word<T>::get(w.y, j);
        v[2 * kPer + j] = Word<T>::get(w.z, j);
        v[3 * kPer + j] = Word<T>::get(w.w, j);
    }
}

template <typename T, int K>
__device__ __forceinline__ void ln_pool(const T* x, float* part, int P, int C, int rows_per_block, int with_raw,
                                        float eps) {
    using S = Shape<T, K>;
    constexpr int kVec = S::kVec, kPasses = S::kPasses;
    __shared__ float warp_sums[kPoolWarps][2][S::kMaxC];
    const int b = blockIdx.y, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int words = C / kVec;  // 16-byte words a row
    const int width = K > 1 ? 32 : min(32, 1 << (32 - __clz(max(words, 1) - 1)));  // L, lanes a row
    const int sub = lane / width, col = lane % width, rows_a_pass = 32 / width;
    const int row_begin = blockIdx.x * rows_per_block, row_end = min(P, row_begin + rows_per_block);
    const int units = row_end > row_begin ? (row_end - row_begin + rows_a_pass - 1) / rows_a_pass : 0;
    const uint4* img = reinterpret_cast<const uint4*>(x + (long)b * P * C);
    const float inv_c = 1.f / (float)C;

    float acc_ln[S::kLaneChannels], acc_x[S::kLaneChannels];
#pragma unroll
    for (int i = 0; i < S::kLaneChannels; ++i) { acc_ln[i] = 0.f; acc_x[i] = 0.f; }

    for (int first = warp; first < units; first += kPasses * kPoolWarps) {
        uint4 got[kPasses][K];
#pragma unroll
        for (int u = 0; u < kPasses; ++u) {
            const int unit = first + u * kPoolWarps, row = row_begin + unit * rows_a_pass + sub;
            const uint4* src = img + (long)row * words + col;
#pragma unroll
            for (int k = 0; k < K; ++k) {
                const bool inside = unit < units && row < row_end && k * width + col < words;
                got[u][k] = inside ? __ldg(src + k * width) : make_uint4(0, 0, 0, 0);
            }
        }
#pragma unroll
        for (int u = 0; u < kPasses; ++u) {
            const int unit = first + u * kPoolWarps, row = row_begin + unit * rows_a_pass + sub;
            if (unit >= units) break;  // the same for the whole warp
            float v[S::kLaneChannels];
#pragma unroll
            for (int k = 0; k < K; ++k) unpack<T>(got[u][k], v + k * kVec);
            // One pass shifted by the row's first value (held by the group's first lane): the difference of
            // squares then does not cancel. Words past the row are zeros and are left out of the sums.
            const float first_value = __shfl_sync(0xffffffffu, v[0], sub * width);
            float s = 0.f, sq = 0.f;
#pragma unroll
            for (int k = 0; k < K; ++k) {
                if (k * width + col < words) {
#pragma unroll
                    for (int e = 0; e < kVec; ++e) {
                        const float d = v[k * kVec + e] - first_value;
                        s += d;
                        sq = fmaf(d, d, sq);
                    }
                }
            }
            s = group_sum(s, width) * inv_c;
            sq = group_sum(sq, width) * inv_c;
            const float mean = first_value + s, rstd = rsqrtf(fmaxf(sq - s * s, 0.f) + eps);
            if (row < row_end) {
#pragma unroll
                for (int i = 0; i < S::kLaneChannels; ++i) {
                    acc_ln[i] = fmaf(v[i] - mean, rstd, acc_ln[i]);
                    acc_x[i] += v[i];
                }
            }
        }
    }
    // The warp's row groups, then the warps in order: a fixed order, so the shares repeat bitwise.
#pragma unroll
    for (int i = 0; i < S::kLaneChannels; ++i) {
#pragma unroll
        for (int o = 16; o > 0; o /= 2) {
            if (o >= width) {
                acc_ln[i] += __shfl_xor_sync(0xffffffffu, acc_ln[i], o);
                acc_x[i] += __shfl_xor_sync(0xffffffffu, acc_x[i], o);
            }
        }
    }
    if (sub == 0) {
#pragma unroll
        for (int k = 0; k < K; ++k) {
            const int w = k * width + col;
            if (w < words) {
#pragma unroll
                for (int e = 0; e < kVec; ++e) {
                    warp_sums[warp][0][w * kVec + e] = acc_ln[k * kVec + e];
                    warp_sums[warp][1][w * kVec + e] = acc_x[k * kVec + e];
                }
            }
        }
    }
    __syncthreads();
    const int kinds = 1 + (with_raw != 0);
    const float inv_p = 1.f / (float)P;
    float* dst = part + ((long)b * gridDim.x + blockIdx.x) * kinds * C;
    for (int i = threadIdx.x; i < kinds * C; i += kPoolThreads) {
        const int kind = i / C, c = i % C;
        float sum = 0.f;
#pragma unroll
        for (int w = 0; w < kPoolWarps; ++w) sum += warp_sums[w][kind][c];
        dst[i] = sum * inv_p;
    }
}

// out[b, kind, c] = the shares part[b, i, kind, c] added over i in a fixed order (a warp every kSumWarps-th
// share, then the warps in order); out[b, 0] times weight plus bias where given; in x's type.
template <typename T>
__device__ __forceinline__ void ln_pool_sum(const float* part, const T* weight, const T* bias, T* out, int blocks,
                                            int kinds, int C) {
    __shared__ float warp_sums[kSumWarps][32];
    const int b = blockIdx.y, lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int n = kinds * C, o = blockIdx.x * 32 + lane;
    const float* src = part + (long)b * blocks * n + o;
    float sum = 0.f;
    if (o < n) {
#pragma unroll 8
        for (int i = warp; i < blocks; i += kSumWarps) sum += src[(long)i * n];  // 8 loads in flight
    }
    warp_sums[warp][lane] = sum;
    __syncthreads();
    if (warp != 0 || o >= n) return;
    sum = 0.f;
#pragma unroll
    for (int w = 0; w < kSumWarps; ++w) sum += warp_sums[w][lane];
    if (o < C) {
        if (weight != nullptr) sum *= to_float(weight[o]);
        if (bias != nullptr) sum += to_float(bias[o]);
    }
    out[(long)b * n + o] = from_float<T>(sum);
}

}  // namespace pool
}  // namespace fe

// x (batch, P, C), C * sizeof(T) a multiple of 16, x 16-byte aligned, C <= Shape<T, K>::kMaxC;
// part (batch, gridDim.x, 1 + with_raw, C) float32, every element written; then the sum entry below:
// part -> out (batch, 1 + with_raw, C) in T, weight and bias (C) in T or null.
#define FE_LN_POOL_ENTRY(NAME, T, K)                                                                     \
    extern "C" __global__ void __launch_bounds__(fe::pool::kPoolThreads) NAME(                           \
        const T* x, float* part, int P, int C, int rows_per_block, int with_raw, float eps) {            \
        fe::pool::ln_pool<T, K>(x, part, P, C, rows_per_block, with_raw, eps);                           \
    }

#define FE_LN_POOL_SUM_ENTRY(NAME, T)                                                                    \
    extern "C" __global__ void __launch_bounds__(fe::pool::kSumThreads) NAME(                            \
        const float* part, const T* weight, const T* bias, T* out, int blocks, int kinds, int C) {       \
        fe::pool::ln_pool_sum<T>(part, weight, bias, out, blocks, kinds, C);                             \
    }

#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_ln_pool_f32_k1)
FE_LN_POOL_ENTRY(fe_ln_pool_f32_k1, float, 1)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_ln_pool_f32_k2)
FE_LN_POOL_ENTRY(fe_ln_pool_f32_k2, float, 2)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_ln_pool_f32_k4)
FE_LN_POOL_ENTRY(fe_ln_pool_f32_k4, float, 4)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_ln_pool_sum_f32)
FE_LN_POOL_SUM_ENTRY(fe_ln_pool_sum_f32, float)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_ln_pool_f16_k1)
FE_LN_POOL_ENTRY(fe_ln_pool_f16_k1, fe::half_t, 1)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_ln_pool_f16_k2)
FE_LN_POOL_ENTRY(fe_ln_pool_f16_k2, fe::half_t, 2)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_ln_pool_f16_k4)
FE_LN_POOL_ENTRY(fe_ln_pool_f16_k4, fe::half_t, 4)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_ln_pool_sum_f16)
FE_LN_POOL_SUM_ENTRY(fe_ln_pool_sum_f16, fe::half_t)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_ln_pool_bf16_k1)
FE_LN_POOL_ENTRY(fe_ln_pool_bf16_k1, fe::bf16_t, 1)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_ln_pool_bf16_k2)
FE_LN_POOL_ENTRY(fe_ln_pool_bf16_k2, fe::bf16_t, 2)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_ln_pool_bf16_k4)
FE_LN_POOL_ENTRY(fe_ln_pool_bf16_k4, fe::bf16_t, 4)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_ln_pool_sum_bf16)
FE_LN_POOL_SUM_ENTRY(fe_ln_pool_sum_bf16, fe::bf16_t)
#endif
