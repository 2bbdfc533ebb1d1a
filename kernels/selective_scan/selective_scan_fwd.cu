// Selective scan forward (mamba_ssm semantics): one entry point per element type and state count.
//
// Entry points are extern "C" so PTX and cubins keep stable names for every caller.
// fe_selective_scan_fwd_<u type>_<B/C type>_n<max N>     the scan (grid.y = chunks)
// fe_selective_scan_states_<u type>_<B/C type>_n<max N>  first pass of a chunked scan: the end
//                                                        state and delta sum of chunks 0..n-2
// n16: 8 lanes x 2 states a channel; n32..n64: 16 lanes x 2..4 states.
// fe_selective_scan_lanes_{fwd,states}_<u type>_<B/C type>_l<LPC>  the lane-major core
//                                                        (scan_lanes.cuh) for N <= 16: LPC lanes
//                                                        a channel, 16 / LPC states a lane
// fe_selective_scan_time_{fwd,states}_<u type>_<B/C type>  the time-parallel core (scan_time.cuh) for
//                                                        N <= 16: a warp a channel, a run of timesteps a lane
// The launcher picks the core, LPC and the chunks (kernels/launch_params.py: scan_plan).
// The loader compiles only the entry point it needs (-DFE_ONLY_<name>); -DFE_ALL_KERNELS
// builds them all (ahead-of-time PTX for TensorRT, and the compile tests).
#include "scan_core.cuh"
#include "scan_lanes.cuh"
#include "scan_time.cuh"

#define FE_SCAN_ENTRY(NAME, TU, TW, LPC, SPL, STATES)                                                 \
    extern "C" __global__ void __launch_bounds__(fe::scan::kMaxWarps * 32, SPL <= 2 ? 4 : 2) NAME(                \
        const TU* u, const TU* delta, const float* A, const TW* B, const TW* C, const float* D,       \
        const TU* z, const float* delta_bias, TU* out, float* states, float* dsums, int batch,       \
        int dim, int L, int N, int groups, int softplus, int vec_bc, int chunk_len, int n_chunks) {   \
        __shared__ fe::scan::WarpSmem<LPC, fe::scan::Tiling<LPC, SPL, TW>::TL> smem[fe::scan::kMaxWarps]; \
        fe::scan::Params p;                                                                           \
        p.u = u; p.delta = delta; p.A = A; p.B = B; p.C = C; p.D = D; p.z = z;                        \
        p.delta_bias = delta_bias; p.out = out; p.states = states; p.dsums = dsums;                   \
        p.batch = batch; p.dim = dim; p.L = L; p.N = N; p.groups = groups;                            \
        p.softplus = softplus; p.vec_bc = vec_bc; p.a_is_log = 0;                                     \
        p.chunk_len = chunk_len; p.n_chunks = n_chunks;                                               \
        p.dim_route = 0; p.h = 0; p.w = 0; p.h2 = 0; p.w2 = 0; p.proj_rows = 0; p.dt_rank = 0;        \
        fe::scan::scan_warp<TU, TW, TU, LPC, SPL, false, STATES>(p, reinterpret_cast<char*>(smem));  \
    }

// Lane-major core; per_group = dim / groups channels share a B/C group; vec_u: rows of u, delta,
// z and out allow 16-byte access.
#define FE_SCAN_LANES_ENTRY(NAME, TU, TW, LPC, STATES)                                                \
    extern "C" __global__ void __launch_bounds__(fe::lanes::kMaxWarps * 32) NAME(                      \
        const TU* u, const TU* delta, const float* A, const TW* B, const TW* C, const float* D,       \
        const TU* z, const float* delta_bias, TU* out, float* states, float* dsums, int batch,       \
        int dim, int L, int N, int groups, int softplus, int vec_bc, int vec_u, int chunk_len,       \
        int n_chunks) {                                                                               \
        __shared__ fe::lanes::Smem<LPC> smem[fe::lanes::kMaxWarps];                                   \
        fe::scan::Params p;                                                                           \
        p.u = u; p.delta = delta; p.A = A; p.B = B; p.C = C; p.D = D; p.z = z;                        \
        p.delta_bias = delta_bias; p.out = out; p.states = states; p.dsums = dsums;                   \
        p.batch = batch; p.dim = dim; p.L = L; p.N = N; p.groups = groups;                            \
        p.softplus = softplus; p.vec_bc = vec_bc; p.a_is_log = 0;                                     \
        p.chunk_len = chunk_len; p.n_chunks = n_chunks;                                               \
        p.dim_route = 0; p.h = 0; p.w = 0; p.h2 = 0; p.w2 = 0; p.proj_rows = 0; p.dt_rank = 0;        \
        p.per_group = dim / groups; p.vec_u = vec_u;                                                  \
        fe::lanes::scan_lanes<TU, TW, TU, LPC, false, STATES>(p, smem);                              \
    }

// Time-parallel core: the lane-major core's arguments and the warps a channel (1 or 2).
#define FE_SCAN_TIME_ENTRY(NAME, TU, TW, STATES)                                                        \
    extern "C" __global__ void __launch_bounds__(fe::timepar::kWarps * 32, fe::timepar::kMinBlocks) NAME( \
        const TU* u, const TU* delta, const float* A, const TW* B, const TW* C, const float* D,       \
        const TU* z, const float* delta_bias, TU* out, float* states, float* dsums, int batch,       \
        int dim, int L, int N, int groups, int softplus, int vec_bc, int vec_u, int chunk_len,       \
        int n_chunks, int split) {                                                                    \
        __shared__ fe::timepar::Smem smem[fe::timepar::kWarps];                                       \
        fe::scan::Params p;                                                                           \
        p.u = u; p.delta = delta; p.A = A; p.B = B; p.C = C; p.D = D; p.z = z;                        \
        p.delta_bias = delta_bias; p.out = out; p.states = states; p.dsums = dsums;                   \
        p.batch = batch; p.dim = dim; p.L = L; p.N = N; p.groups = groups;                            \
        p.softplus = softplus; p.vec_bc = vec_bc; p.a_is_log = 0;                                     \
        p.chunk_len = chunk_len; p.n_chunks = n_chunks;                                               \
        p.dim_route = 0; p.h = 0; p.w = 0; p.h2 = 0; p.w2 = 0; p.proj_rows = 0; p.dt_rank = 0;        \
        p.per_group = dim / groups; p.vec_u = vec_u; p.split = split;                                 \
        fe::timepar::scan_time<TU, TW, TU, false, STATES>(p, smem);                                              \
    }

using fe::half_t;
using fe::bf16_t;

#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_fwd_f32_f32_n16)
FE_SCAN_ENTRY(fe_selective_scan_fwd_f32_f32_n16, float, float, 8, 2, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_states_f32_f32_n16)
FE_SCAN_ENTRY(fe_selective_scan_states_f32_f32_n16, float, float, 8, 2, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_fwd_f32_f32_n32)
FE_SCAN_ENTRY(fe_selective_scan_fwd_f32_f32_n32, float, float, 16, 2, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_states_f32_f32_n32)
FE_SCAN_ENTRY(fe_selective_scan_states_f32_f32_n32, float, float, 16, 2, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_fwd_f32_f32_n48)
FE_SCAN_ENTRY(fe_selective_scan_fwd_f32_f32_n48, float, float, 16, 3, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_states_f32_f32_n48)
FE_SCAN_ENTRY(fe_selective_scan_states_f32_f32_n48, float, float, 16, 3, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_fwd_f32_f32_n64)
FE_SCAN_ENTRY(fe_selective_scan_fwd_f32_f32_n64, float, float, 16, 4, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_states_f32_f32_n64)
FE_SCAN_ENTRY(fe_selective_scan_states_f32_f32_n64, float, float, 16, 4, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_fwd_f16_f16_n16)
FE_SCAN_ENTRY(fe_selective_scan_fwd_f16_f16_n16, half_t, half_t, 8, 2, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_states_f16_f16_n16)
FE_SCAN_ENTRY(fe_selective_scan_states_f16_f16_n16, half_t, half_t, 8, 2, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_fwd_f16_f16_n32)
FE_SCAN_ENTRY(fe_selective_scan_fwd_f16_f16_n32, half_t, half_t, 16, 2, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_states_f16_f16_n32)
FE_SCAN_ENTRY(fe_selective_scan_states_f16_f16_n32, half_t, half_t, 16, 2, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_fwd_f16_f16_n48)
FE_SCAN_ENTRY(fe_selective_scan_fwd_f16_f16_n48, half_t, half_t, 16, 3, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_states_f16_f16_n48)
FE_SCAN_ENTRY(fe_selective_scan_states_f16_f16_n48, half_t, half_t, 16, 3, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_fwd_f16_f16_n64)
FE_SCAN_ENTRY(fe_selective_scan_fwd_f16_f16_n64, half_t, half_t, 16, 4, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_states_f16_f16_n64)
FE_SCAN_ENTRY(fe_selective_scan_states_f16_f16_n64, half_t, half_t, 16, 4, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_fwd_f16_f32_n16)
FE_SCAN_ENTRY(fe_selective_scan_fwd_f16_f32_n16, half_t, float, 8, 2, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_states_f16_f32_n16)
FE_SCAN_ENTRY(fe_selective_scan_states_f16_f32_n16, half_t, float, 8, 2, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_fwd_f16_f32_n32)
FE_SCAN_ENTRY(fe_selective_scan_fwd_f16_f32_n32, half_t, float, 16, 2, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_states_f16_f32_n32)
FE_SCAN_ENTRY(fe_selective_scan_states_f16_f32_n32, half_t, float, 16, 2, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_fwd_f16_f32_n48)
FE_SCAN_ENTRY(fe_selective_scan_fwd_f16_f32_n48, half_t, float, 16, 3, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_states_f16_f32_n48)
FE_SCAN_ENTRY(fe_selective_scan_states_f16_f32_n48, half_t, float, 16, 3, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_fwd_f16_f32_n64)
FE_SCAN_ENTRY(fe_selective_scan_fwd_f16_f32_n64, half_t, float, 16, 4, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_states_f16_f32_n64)
FE_SCAN_ENTRY(fe_selective_scan_states_f16_f32_n64, half_t, float, 16, 4, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_fwd_bf16_bf16_n16)
FE_SCAN_ENTRY(fe_selective_scan_fwd_bf16_bf16_n16, bf16_t, bf16_t, 8, 2, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_states_bf16_bf16_n16)
FE_SCAN_ENTRY(fe_selective_scan_states_bf16_bf16_n16, bf16_t, bf16_t, 8, 2, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_fwd_bf16_bf16_n32)
FE_SCAN_ENTRY(fe_selective_scan_fwd_bf16_bf16_n32, bf16_t, bf16_t, 16, 2, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_states_bf16_bf16_n32)
FE_SCAN_ENTRY(fe_selective_scan_states_bf16_bf16_n32, bf16_t, bf16_t, 16, 2, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_fwd_bf16_bf16_n48)
FE_SCAN_ENTRY(fe_selective_scan_fwd_bf16_bf16_n48, bf16_t, bf16_t, 16, 3, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_states_bf16_bf16_n48)
FE_SCAN_ENTRY(fe_selective_scan_states_bf16_bf16_n48, bf16_t, bf16_t, 16, 3, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_fwd_bf16_bf16_n64)
FE_SCAN_ENTRY(fe_selective_scan_fwd_bf16_bf16_n64, bf16_t, bf16_t, 16, 4, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_states_bf16_bf16_n64)
FE_SCAN_ENTRY(fe_selective_scan_states_bf16_bf16_n64, bf16_t, bf16_t, 16, 4, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_fwd_bf16_f32_n16)
FE_SCAN_ENTRY(fe_selective_scan_fwd_bf16_f32_n16, bf16_t, float, 8, 2, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_states_bf16_f32_n16)
FE_SCAN_ENTRY(fe_selective_scan_states_bf16_f32_n16, bf16_t, float, 8, 2, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_fwd_bf16_f32_n32)
FE_SCAN_ENTRY(fe_selective_scan_fwd_bf16_f32_n32, bf16_t, float, 16, 2, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_states_bf16_f32_n32)
FE_SCAN_ENTRY(fe_selective_scan_states_bf16_f32_n32, bf16_t, float, 16, 2, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_fwd_bf16_f32_n48)
FE_SCAN_ENTRY(fe_selective_scan_fwd_bf16_f32_n48, bf16_t, float, 16, 3, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_states_bf16_f32_n48)
FE_SCAN_ENTRY(fe_selective_scan_states_bf16_f32_n48, bf16_t, float, 16, 3, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_fwd_bf16_f32_n64)
FE_SCAN_ENTRY(fe_selective_scan_fwd_bf16_f32_n64, bf16_t, float, 16, 4, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_states_bf16_f32_n64)
FE_SCAN_ENTRY(fe_selective_scan_states_bf16_f32_n64, bf16_t, float, 16, 4, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_lanes_fwd_f32_f32_l1)
FE_SCAN_LANES_ENTRY(fe_selective_scan_lanes_fwd_f32_f32_l1, float, float, 1, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_lanes_states_f32_f32_l1)
FE_SCAN_LANES_ENTRY(fe_selective_scan_lanes_states_f32_f32_l1, float, float, 1, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_lanes_fwd_f32_f32_l2)
FE_SCAN_LANES_ENTRY(fe_selective_scan_lanes_fwd_f32_f32_l2, float, float, 2, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_lanes_states_f32_f32_l2)
FE_SCAN_LANES_ENTRY(fe_selective_scan_lanes_states_f32_f32_l2, float, float, 2, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_lanes_fwd_f32_f32_l4)
FE_SCAN_LANES_ENTRY(fe_selective_scan_lanes_fwd_f32_f32_l4, float, float, 4, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_lanes_states_f32_f32_l4)
FE_SCAN_LANES_ENTRY(fe_selective_scan_lanes_states_f32_f32_l4, float, float, 4, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_lanes_fwd_f32_f32_l8)
FE_SCAN_LANES_ENTRY(fe_selective_scan_lanes_fwd_f32_f32_l8, float, float, 8, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_lanes_states_f32_f32_l8)
FE_SCAN_LANES_ENTRY(fe_selective_scan_lanes_states_f32_f32_l8, float, float, 8, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_lanes_fwd_f16_f16_l1)
FE_SCAN_LANES_ENTRY(fe_selective_scan_lanes_fwd_f16_f16_l1, half_t, half_t, 1, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_lanes_states_f16_f16_l1)
FE_SCAN_LANES_ENTRY(fe_selective_scan_lanes_states_f16_f16_l1, half_t, half_t, 1, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_lanes_fwd_f16_f16_l2)
FE_SCAN_LANES_ENTRY(fe_selective_scan_lanes_fwd_f16_f16_l2, half_t, half_t, 2, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_lanes_states_f16_f16_l2)
FE_SCAN_LANES_ENTRY(fe_selective_scan_lanes_states_f16_f16_l2, half_t, half_t, 2, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_lanes_fwd_f16_f16_l4)
FE_SCAN_LANES_ENTRY(fe_selective_scan_lanes_fwd_f16_f16_l4, half_t, half_t, 4, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_lanes_states_f16_f16_l4)
FE_SCAN_LANES_ENTRY(fe_selective_scan_lanes_states_f16_f16_l4, half_t, half_t, 4, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_lanes_fwd_f16_f16_l8)
FE_SCAN_LANES_ENTRY(fe_selective_scan_lanes_fwd_f16_f16_l8, half_t, half_t, 8, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_lanes_states_f16_f16_l8)
FE_SCAN_LANES_ENTRY(fe_selective_scan_lanes_states_f16_f16_l8, half_t, half_t, 8, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_lanes_fwd_f16_f32_l1)
FE_SCAN_LANES_ENTRY(fe_selective_scan_lanes_fwd_f16_f32_l1, half_t, float, 1, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_lanes_states_f16_f32_l1)
FE_SCAN_LANES_ENTRY(fe_selective_scan_lanes_states_f16_f32_l1, half_t, float, 1, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_lanes_fwd_f16_f32_l2)
FE_SCAN_LANES_ENTRY(fe_selective_scan_lanes_fwd_f16_f32_l2, half_t, float, 2, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_lanes_states_f16_f32_l2)
FE_SCAN_LANES_ENTRY(fe_selective_scan_lanes_states_f16_f32_l2, half_t, float, 2, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_lanes_fwd_f16_f32_l4)
FE_SCAN_LANES_ENTRY(fe_selective_scan_lanes_fwd_f16_f32_l4, half_t, float, 4, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_lanes_states_f16_f32_l4)
FE_SCAN_LANES_ENTRY(fe_selective_scan_lanes_states_f16_f32_l4, half_t, float, 4, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_lanes_fwd_f16_f32_l8)
FE_SCAN_LANES_ENTRY(fe_selective_scan_lanes_fwd_f16_f32_l8, half_t, float, 8, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_lanes_states_f16_f32_l8)
FE_SCAN_LANES_ENTRY(fe_selective_scan_lanes_states_f16_f32_l8, half_t, float, 8, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_lanes_fwd_bf16_bf16_l1)
FE_SCAN_LANES_ENTRY(fe_selective_scan_lanes_fwd_bf16_bf16_l1, bf16_t, bf16_t, 1, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_lanes_states_bf16_bf16_l1)
FE_SCAN_LANES_ENTRY(fe_selective_scan_lanes_states_bf16_bf16_l1, bf16_t, bf16_t, 1, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_lanes_fwd_bf16_bf16_l2)
FE_SCAN_LANES_ENTRY(fe_selective_scan_lanes_fwd_bf16_bf16_l2, bf16_t, bf16_t, 2, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_lanes_states_bf16_bf16_l2)
FE_SCAN_LANES_ENTRY(fe_selective_scan_lanes_states_bf16_bf16_l2, bf16_t, bf16_t, 2, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_lanes_fwd_bf16_bf16_l4)
FE_SCAN_LANES_ENTRY(fe_selective_scan_lanes_fwd_bf16_bf16_l4, bf16_t, bf16_t, 4, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_lanes_states_bf16_bf16_l4)
FE_SCAN_LANES_ENTRY(fe_selective_scan_lanes_states_bf16_bf16_l4, bf16_t, bf16_t, 4, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_lanes_fwd_bf16_bf16_l8)
FE_SCAN_LANES_ENTRY(fe_selective_scan_lanes_fwd_bf16_bf16_l8, bf16_t, bf16_t, 8, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_lanes_states_bf16_bf16_l8)
FE_SCAN_LANES_ENTRY(fe_selective_scan_lanes_states_bf16_bf16_l8, bf16_t, bf16_t, 8, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_lanes_fwd_bf16_f32_l1)
FE_SCAN_LANES_ENTRY(fe_selective_scan_lanes_fwd_bf16_f32_l1, bf16_t, float, 1, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_lanes_states_bf16_f32_l1)
FE_SCAN_LANES_ENTRY(fe_selective_scan_lanes_states_bf16_f32_l1, bf16_t, float, 1, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_lanes_fwd_bf16_f32_l2)
FE_SCAN_LANES_ENTRY(fe_selective_scan_lanes_fwd_bf16_f32_l2, bf16_t, float, 2, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_lanes_states_bf16_f32_l2)
FE_SCAN_LANES_ENTRY(fe_selective_scan_lanes_states_bf16_f32_l2, bf16_t, float, 2, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_lanes_fwd_bf16_f32_l4)
FE_SCAN_LANES_ENTRY(fe_selective_scan_lanes_fwd_bf16_f32_l4, bf16_t, float, 4, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_lanes_states_bf16_f32_l4)
FE_SCAN_LANES_ENTRY(fe_selective_scan_lanes_states_bf16_f32_l4, bf16_t, float, 4, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_lanes_fwd_bf16_f32_l8)
FE_SCAN_LANES_ENTRY(fe_selective_scan_lanes_fwd_bf16_f32_l8, bf16_t, float, 8, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_lanes_states_bf16_f32_l8)
FE_SCAN_LANES_ENTRY(fe_selective_scan_lanes_states_bf16_f32_l8, bf16_t, float, 8, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_time_fwd_f32_f32)
FE_SCAN_TIME_ENTRY(fe_selective_scan_time_fwd_f32_f32, float, float, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_time_states_f32_f32)
FE_SCAN_TIME_ENTRY(fe_selective_scan_time_states_f32_f32, float, float, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_time_fwd_f16_f16)
FE_SCAN_TIME_ENTRY(fe_selective_scan_time_fwd_f16_f16, half_t, half_t, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_time_states_f16_f16)
FE_SCAN_TIME_ENTRY(fe_selective_scan_time_states_f16_f16, half_t, half_t, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_time_fwd_f16_f32)
FE_SCAN_TIME_ENTRY(fe_selective_scan_time_fwd_f16_f32, half_t, float, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_time_states_f16_f32)
FE_SCAN_TIME_ENTRY(fe_selective_scan_time_states_f16_f32, half_t, float, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_time_fwd_bf16_bf16)
FE_SCAN_TIME_ENTRY(fe_selective_scan_time_fwd_bf16_bf16, bf16_t, bf16_t, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_time_states_bf16_bf16)
FE_SCAN_TIME_ENTRY(fe_selective_scan_time_states_bf16_bf16, bf16_t, bf16_t, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_time_fwd_bf16_f32)
FE_SCAN_TIME_ENTRY(fe_selective_scan_time_fwd_bf16_f32, bf16_t, float, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_selective_scan_time_states_bf16_f32)
FE_SCAN_TIME_ENTRY(fe_selective_scan_time_states_bf16_f32, bf16_t, float, true)
#endif
