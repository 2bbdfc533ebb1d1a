// Element types and fast math shared by all kernel families.
//
// No CUDA headers are included so that the same source compiles with NVRTC (which ships
// no toolkit headers on a Jetson without the toolkit) and with nvcc for every target.
// 16-bit floats are plain bit containers converted with PTX instructions; bfloat16
// rounding is done with integer arithmetic so sm_72 (no bf16 instructions) works too.
#pragma once

namespace fe {

struct half_t { unsigned short bits; };
struct bf16_t { unsigned short bits; };

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(half_t x) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(x.bits));
    return f;
}
__device__ __forceinline__ float to_float(bf16_t x) {
    return __uint_as_float(static_cast<unsigned>(x.bits) << 16);
}

template <typename T> __device__ __forceinline__ T from_float(float x);
template <> __device__ __forceinline__ float from_float<float>(float x) { return x; }
template <> __device__ __forceinline__ half_t from_float<half_t>(float x) {
    half_t h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h.bits) : "f"(x));
    return h;
}
template <> __device__ __forceinline__ bf16_t from_float<bf16_t>(float x) {
    unsigned u = __float_as_uint(x);
    bf16_t r;
    if ((u & 0x7fffffffu) > 0x7f800000u) {  // NaN stays a (quiet) NaN
        r.bits = static_cast<unsigned short>((u >> 16) | 0x40u);
    } else {                                 // round to nearest even
        u += 0x7fffu + ((u >> 16) & 1u);
        r.bits = static_cast<unsigned short>(u >> 16);
    }
    return r;
}

// Element `i` of a 32-bit word holding one float or two 16-bit floats (little endian).
template <typename T> struct Word;
template <> struct Word<float> {
    static constexpr int kPerWord = 1;
    __device__ __forceinline__ static float get(unsigned w, int) { return __uint_as_float(w); }
    __device__ __forceinline__ static unsigned bits(float x) { return __float_as_uint(x); }
};
template <> struct Word<half_t> {
    static constexpr int kPerWord = 2;
    __device__ __forceinline__ static float get(unsigned w, int i) {
        half_t h;
        h.bits = static_cast<unsigned short>(i ? (w >> 16) : (w & 0xffffu));
        return to_float(h);
    }
    __device__ __forceinline__ static unsigned bits(half_t x) { return x.bits; }
};
template <> struct Word<bf16_t> {
    static constexpr int kPerWord = 2;
    __device__ __forceinline__ static float get(unsigned w, int i) {
        return __uint_as_float(i ? (w & 0xffff0000u) : (w << 16));
    }
    __device__ __forceinline__ static unsigned bits(bf16_t x) { return x.bits; }
};

// 2^x on the special-function unit (flushes subnormal results to zero).
__device__ __forceinline__ float exp2_fast(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}


constexpr float kLog2e = 1.4426950408889634f;

// Sum over this lane's group of `width` lanes (a power of two, aligned), every lane of the group gets it.
__device__ __forceinline__ float group_sum(float v, int width) {
#pragma unroll
    for (int o = 16; o > 0; o /= 2) {
        if (o < width) v += __shfl_xor_sync(0xffffffffu, v, o);
    }
    return v;
}

// Warp sum, every lane gets it.
__device__ __forceinline__ float warp_sum(float v) { return group_sum(v, 32); }

// PyTorch's softplus with threshold 20 (mamba_ssm's delta_softplus), to about 5e-7 relative:
// log(1 + e^x) = max(x, 0) + log1p(t), t = e^-|x| in (0, 1], and log1p(t) = 2 atanh(s) with
// s = t / (2 + t) <= 1/3, an odd series that converges fast (7 terms). Cheaper than log1pf.
// Branch-free (the threshold is a select): a branch here cost the scans a divergence guard per timestep.
__device__ __forceinline__ float softplus(float x) {
    const float t = exp2_fast(-fabsf(x) * kLog2e);
    const float s = __fdividef(t, 2.f + t);
    const float s2 = s * s;
    float p = 1.f / 13.f;
    p = fmaf(p, s2, 1.f / 11.f);
    p = fmaf(p, s2, 1.f / 9.f);
    p = fmaf(p, s2, 1.f / 7.f);
    p = fmaf(p, s2, 1.f / 5.f);
    p = fmaf(p, s2, 1.f / 3.f);
    p = fmaf(p, s2, 1.f);
    const float y = fmaxf(x, 0.f) + 2.f * s * p;
    return x > 20.f ? x : y;
}

__device__ __forceinline__ float silu(float x) { return x / (1.f + expf(-x)); }

}  // namespace fe
