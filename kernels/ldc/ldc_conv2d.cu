// LDC (learnable descriptive convolution) as one kernel: a 3x3 convolution, stride 1,
// padding 1, no bias, whose weight transform is applied on the fly:
//   W_eff[o, i, a] = W[o, i, a] * (M[o, i, a] - theta * m[o, i] * [a == centre] * sum_a' W[o, i, a'])
// It lets an exported graph keep LDC as its own node; at inference the folded plain
// convolution (cuDNN) is normally faster (see benchmarks/kernels.py).
//
// Block: a 32 x 16 pixel tile of kLdcOut output channels; each of the 128 threads computes a
// column of 4 pixels for all kLdcOut channels. Input channels are staged kLdcIn at a time
// (tile plus 1-pixel halo), with their transformed weights, in shared memory.
// Entry points fe_ldc_conv2d_<x>: x and out in one type, weights float32, sums float32.
#include "../common/fe_types.cuh"
#include "../selective_scan/scan_core.cuh"

namespace fe {
namespace ldc {

constexpr int kTileW = 32, kTileH = 16, kRows = 4;   // 32 x (16 / 4) = 128 threads
constexpr int kLdcOut = 8, kLdcIn = 8;

template <typename T>
__device__ __forceinline__ void conv(const T* x, const float* weight, const float* base_mask,
                                     const float* learnable_mask, const float* theta, T* out,
                                     int batch, int cin, int cout, int H, int W) {
    __shared__ float xs[kLdcIn][kTileH + 2][kTileW + 2];
    __shared__ __align__(16) float wt[kLdcIn][9][kLdcOut];
    const int oblocks = (cout + kLdcOut - 1) / kLdcOut;
    const int b = blockIdx.z / oblocks, o0 = (blockIdx.z % oblocks) * kLdcOut;
    const int x0 = blockIdx.x * kTileW, y0 = blockIdx.y * kTileH;
    const int tx = threadIdx.x % kTileW, ty = threadIdx.x / kTileW;  // column, row group
    const float th = __ldg(theta);
    float acc[kRows][kLdcOut];
#pragma unroll
    for (int r = 0; r < kRows; ++r)
#pragma unroll
        for (int o = 0; o < kLdcOut; ++o) acc[r][o] = 0.f;

    for (int i0 = 0; i0 < cin; i0 += kLdcIn) {
        __syncthreads();
        for (int e = threadIdx.x; e < kLdcIn * (kTileH + 2) * (kTileW + 2); e += blockDim.x) {
            const int ii = e / ((kTileH + 2) * (kTileW + 2));
            const int rem = e % ((kTileH + 2) * (kTileW + 2));
            const int yy = rem / (kTileW + 2), xx = rem % (kTileW + 2);
            const int ci = i0 + ii, gy = y0 + yy - 1, gx = x0 + xx - 1;
            float v = 0.f;
            if (ci < cin && gy >= 0 && gy < H && gx >= 0 && gx < W)
                v = scan::load_elem(x, (((long)b * cin + ci) * H + gy) * W + gx);
            xs[ii][yy][xx] = v;
        }
        if (threadIdx.x < kLdcIn * kLdcOut) {
            const int ii = threadIdx.x / kLdcOut, oo = threadIdx.x % kLdcOut;
            const int ci = i0 + ii, o = o0 + oo;
            float wv[9], sum = 0.f, lm = 0.f;
            const bool ok = ci < cin && o < cout;
            const long base = ((long)o * cin + ci) * 9;
#pragma unroll
            for (int a = 0; a < 9; ++a) {
                wv[a] = ok ? __ldg(weight + base + a) : 0.f;
                sum += wv[a];
            }
            if (ok) lm = __ldg(learnable_mask + (long)o * cin + ci);
#pragma unroll
            for (int a = 0; a < 9; ++a) {
                float m = ok ? __ldg(base_mask + base + a) : 0.f;
                if (a == 4) m -= th * lm * sum;
                wt[ii][a][oo] = wv[a] * m;
            }
        }
        __syncthreads();
#pragma unroll 2
        for (int ii = 0; ii < kLdcIn; ++ii) {
            float col[kRows + 2][3];
#pragma unroll
            for (int r = 0; r < kRows + 2; ++r)
#pragma unroll
                for (int c = 0; c < 3; ++c) col[r][c] = xs[ii][ty * kRows + r][tx + c];
#pragma unroll
            for (int a = 0; a < 9; ++a) {
                const float4 w0 = *reinterpret_cast<const float4*>(&wt[ii][a][0]);
                const float4 w1 = *reinterpret_cast<const float4*>(&wt[ii][a][4]);
                const float wv[kLdcOut] = {w0.x, w0.y, w0.z, w0.w, w1.x, w1.y, w1.z, w1.w};
#pragma unroll
                for (int r = 0; r < kRows; ++r) {
                    const float xv = col[r + a / 3][a % 3];
#pragma unroll
                    for (int o = 0; o < kLdcOut; ++o) acc[r][o] = fmaf(wv[o], xv, acc[r][o]);
                }
            }
        }
    }
    const int gx = x0 + tx;
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
        const int gy = y0 + ty * kRows + r;
        if (gx >= W || gy >= H) continue;
#pragma unroll
        for (int o = 0; o < kLdcOut; ++o)
            if (o0 + o < cout) out[(((long)b * cout + o0 + o) * H + gy) * W + gx] = from_float<T>(acc[r][o]);
    }
}

}  // namespace ldc
}  // namespace fe

#define FE_LDC_ENTRY(NAME, T)                                                                         \
    extern "C" __global__ void __launch_bounds__(128) NAME(                                           \
        const T* x, const float* weight, const float* base_mask, const float* learnable_mask,         \
        const float* theta, T* out, int batch, int cin, int cout, int H, int W) {                     \
        fe::ldc::conv<T>(x, weight, base_mask, learnable_mask, theta, out, batch, cin, cout, H, W);  \
    }

#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_ldc_conv2d_f32)
FE_LDC_ENTRY(fe_ldc_conv2d_f32, float)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_ldc_conv2d_f16)
FE_LDC_ENTRY(fe_ldc_conv2d_f16, fe::half_t)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_ldc_conv2d_bf16)
FE_LDC_ENTRY(fe_ldc_conv2d_bf16, fe::bf16_t)
#endif
