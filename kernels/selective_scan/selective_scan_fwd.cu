// Selective scan forward (mamba_ssm semantics): one entry point per element type and state count.
//
// Entry points are extern "C" so PTX and cubins keep stable names for every caller.
// Name: fe_selective_scan_fwd_<u type>_<B/C type>_n<16 * states per lane>.
// The loader compiles only the entry point it needs (-DFE_ONLY_<name>); -DFE_ALL_KERNELS
// builds them all (ahead-of-time PTX for TensorRT, and the compile tests).
#include "scan_core.cuh"

#define FE_SCAN_ENTRY(NAME, TU, TW, SPL)                                                          \
    extern "C" __global__ void __launch_bounds__(fe::scan::kMaxWarps * 32) NAME(                  \
        const TU* u, const TU* delta, const float* A, const TW* B, const TW* C, const float* D,   \
        const TU* z, const float* delta_bias, TU* out, int batch, int dim, int L, int N,          \
        int groups, int softplus, int vec_bc) {                                                   \
        __shared__ fe::scan::WarpSmem<fe::scan::Tiling<SPL, TW>::TL> smem[fe::scan::kMaxWarps];  \
        fe::scan::Params p;                                                                       \
        p.u = u; p.delta = delta; p.A = A; p.B = B; p.C = C; p.D = D; p.z = z;                    \
        p.delta_bias = delta_bias; p.out = out;                                                   \
        p.batch = batch; p.dim = dim; p.L = L; p.N = N; p.groups = groups;                        \
        p.softplus = softplus; p.vec_bc = vec_bc; p.a_is_log = 0;                                 \
        p.dim_route = 0; p.h = 0; p.w = 0; p.h2 = 0; p.w2 = 0; p.proj_rows = 0; p.dt_rank = 0;      \
        fe::scan::scan_two_channels<TU, TW, TU, SPL, false>(p, reinterpret_cast<char*>(smem));   \
    }

using fe::half_t;
using fe::bf16_t;

#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_fwd_f32_f32_n16)
FE_SCAN_ENTRY(fe_selective_scan_fwd_f32_f32_n16, float, float, 1)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_fwd_f32_f32_n32)
FE_SCAN_ENTRY(fe_selective_scan_fwd_f32_f32_n32, float, float, 2)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_fwd_f32_f32_n48)
FE_SCAN_ENTRY(fe_selective_scan_fwd_f32_f32_n48, float, float, 3)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_fwd_f32_f32_n64)
FE_SCAN_ENTRY(fe_selective_scan_fwd_f32_f32_n64, float, float, 4)
#endif

#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_fwd_f16_f16_n16)
FE_SCAN_ENTRY(fe_selective_scan_fwd_f16_f16_n16, half_t, half_t, 1)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_fwd_f16_f16_n32)
FE_SCAN_ENTRY(fe_selective_scan_fwd_f16_f16_n32, half_t, half_t, 2)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_fwd_f16_f16_n48)
FE_SCAN_ENTRY(fe_selective_scan_fwd_f16_f16_n48, half_t, half_t, 3)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_fwd_f16_f16_n64)
FE_SCAN_ENTRY(fe_selective_scan_fwd_f16_f16_n64, half_t, half_t, 4)
#endif

#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_fwd_f16_f32_n16)
FE_SCAN_ENTRY(fe_selective_scan_fwd_f16_f32_n16, half_t, float, 1)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_fwd_f16_f32_n32)
FE_SCAN_ENTRY(fe_selective_scan_fwd_f16_f32_n32, half_t, float, 2)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_fwd_f16_f32_n48)
FE_SCAN_ENTRY(fe_selective_scan_fwd_f16_f32_n48, half_t, float, 3)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_fwd_f16_f32_n64)
FE_SCAN_ENTRY(fe_selective_scan_fwd_f16_f32_n64, half_t, float, 4)
#endif

#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_fwd_bf16_bf16_n16)
FE_SCAN_ENTRY(fe_selective_scan_fwd_bf16_bf16_n16, bf16_t, bf16_t, 1)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_fwd_bf16_bf16_n32)
FE_SCAN_ENTRY(fe_selective_scan_fwd_bf16_bf16_n32, bf16_t, bf16_t, 2)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_fwd_bf16_bf16_n48)
FE_SCAN_ENTRY(fe_selective_scan_fwd_bf16_bf16_n48, bf16_t, bf16_t, 3)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_fwd_bf16_bf16_n64)
FE_SCAN_ENTRY(fe_selective_scan_fwd_bf16_bf16_n64, bf16_t, bf16_t, 4)
#endif

#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_fwd_bf16_f32_n16)
FE_SCAN_ENTRY(fe_selective_scan_fwd_bf16_f32_n16, bf16_t, float, 1)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_fwd_bf16_f32_n32)
FE_SCAN_ENTRY(fe_selective_scan_fwd_bf16_f32_n32, bf16_t, float, 2)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_fwd_bf16_f32_n48)
FE_SCAN_ENTRY(fe_selective_scan_fwd_bf16_f32_n48, bf16_t, float, 3)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_fwd_bf16_f32_n64)
FE_SCAN_ENTRY(fe_selective_scan_fwd_bf16_f32_n64, bf16_t, float, 4)
#endif
