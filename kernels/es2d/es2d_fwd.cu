// Fused ES2D route scan (MODEL.md 3.2): the four skip-sampled routes are read straight out of
// the (batch, D, h, w) map and written back into it; no gathered or scattered copies exist.
//
//   fe_es2d_project_<x>  route projections  proj[b, k, c, l] = sum_d x_proj_weight[k, c, d] * x_k[d, l]
//                        (x_k read through the route indexing; padding pixels read as 0); rows
//                        c < R are the dt rows, then B (N rows) and C (N rows); 16 rows a block
//   fe_es2d_project_wide_<x>  the same, 48 rows a block: R + 2N of most layers (33-48) in one block,
//                        so x is read once for all rows; fewer, longer blocks (the launcher picks)
//   fe_es2d_scan_<x>_n<N>  the selective scan of kernels/selective_scan/scan_core.cuh with u read
//                        from the map and the output written to the map, A = -exp(A_logs),
//                        softplus(delta + dt_projs_bias), skip Ds (fe_es2d_states_*: its first
//                        pass when the routes are scanned in chunks). delta is formed in the scan:
//                        delta[b, k*D + d, l] = sum_r dt_projs_weight[k, d, r] * proj[b, k, r, l],
//                        so no delta array is written or read, unless the caller passes that
//                        delta (float32, (batch, 4D, L)), e.g. from a library GEMM for wide layers.
//   fe_es2d_lanes_{scan,states}_<x>_l<LPC>  the same on the lane-major core (scan_lanes.cuh),
//                        N <= 16;
//   fe_es2d_time_{scan,states}_<x>  the same on the time-parallel core (scan_time.cuh), N <= 16;
//                        the launcher picks the core (kernels/launch_params.py: scan_plan).
//   fe_es2d_merge_<x>    the scatter of the unfused form: route-major rows (batch, 4D, L), as the plain
//                        selective scan writes them for gathered routes, into the map (padding dropped)
//   fe_es2d_split_<x>    its gather: the map's routes as route-major rows (batch, 4D, L), padding as 0
//   fe_es2d_merge_norm[_cross]_<x>  the merge with the SS2D layer's out_norm and gate applied on the way:
//                        channels-last LayerNorm(map) * SiLU(z) (CROSS: the CMFM's gate), the map never stored
//   fe_es2d_conv_split[_cross]_<x>_t<T>  the gather of a map computed on the way: SiLU(depthwise 3x3 conv +
//                        bias) of a channels-last input (the SS2D layer's), or of two inputs combined (the
//                        CMFM's), in tiles of T x T route positions (T = 16 or 8, the launcher picks)
// Route k, sequence index l: (row parity k & 1, column parity k >> 1); routes 0 and 2 are
// row-major over the h2 x w2 sub-grid, routes 1 and 3 column-major (see route_pixel).
// Every kernel takes `channels_last`: 0 for a map of channel planes (batch, D, h, w), 1 for its
// channels-last buffer (batch, h, w, D), which a channels-last producer (the depthwise conv before the
// scan) writes without a transpose and a LayerNorm over channels after it reads as rows; out follows x.
#include "../selective_scan/scan_core.cuh"
#include "../selective_scan/scan_lanes.cuh"
#include "../selective_scan/scan_time.cuh"

namespace fe {
namespace es2d {

constexpr int kProjL = 128;    // sequence positions per projection block (one per thread)
constexpr int kProjC = 16;     // projection rows per block (fe_es2d_project_*)
constexpr int kProjWideC = 48; // projection rows per block (fe_es2d_project_wide_*)
constexpr int kProjD = 32;     // channels per shared-memory stage

// Offset row * w + col of the pixel at sequence index l of route k, or -1 for a padding pixel.
__device__ __forceinline__ int route_pixel(int k, int l, int h, int w, int h2, int w2) {
    int i, j;
    if ((k & 1) == 0) { i = l / w2; j = l - i * w2; } else { j = l / h2; i = l - j * h2; }
    const int row = 2 * i + (k & 1), col = 2 * j + (k >> 1);
    return (row < h && col < w) ? row * w + col : -1;
}

constexpr int kMergeL = 32;    // route positions per merge block (one per lane)
constexpr int kMergeD = 64;    // channels per merge block
constexpr int kMergeWarps = 8; // warps per merge block

// grid (ceil(L/kMergeL), ceil(D/kMergeD), batch * 4), block kMergeWarps * 32. A block moves a kMergeD x
// kMergeL tile of one route between the route-major rows (batch, 4D, L) and the map through shared memory:
// on the rows' side runs of positions, on a channels-last map's side runs of channels (a pixel), so
// neither side is a strided access. kToMap: rows -> map (merge, padding dropped); else map -> rows
// (split, padding read as 0).
template <typename T, bool kToMap>
__device__ __forceinline__ void move_routes(const T* src, T* dst, int D, int h, int w, int channels_last) {
    __shared__ float tile[kMergeD][kMergeL + 1];
    const int h2 = (h + 1) / 2, w2 = (w + 1) / 2, L = h2 * w2;
    const int bk = blockIdx.z, b = bk / 4, k = bk % 4;
    const int l0 = blockIdx.x * kMergeL, d0 = blockIdx.y * kMergeD;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const long row0 = ((long)bk * D + d0) * L + l0;  // row b * 4D + k * D + d0, position l0
    const long hw = (long)h * w;
    const T* map_in = src + (long)b * D * hw;
    T* map_out = dst + (long)b * D * hw;
    // the rows' side: a warp a channel, a lane a position; a channels-last map's side: a warp a pixel,
    // a lane a channel; channel planes: a lane a pixel, a warp a channel
    if (!kToMap) {  // map -> tile
        if (channels_last) {
            for (int ll = warp; ll < kMergeL; ll += kMergeWarps) {
                const int px = l0 + ll < L ? route_pixel(k, l0 + ll, h, w, h2, w2) : -1;
                for (int dd = lane; dd < kMergeD; dd += 32)
                    tile[dd][ll] = (px >= 0 && d0 + dd < D) ? to_float(map_in[(long)px * D + d0 + dd]) : 0.f;
            }
        } else {
            const int px = l0 + lane < L ? route_pixel(k, l0 + lane, h, w, h2, w2) : -1;
            for (int dd = warp; dd < kMergeD; dd += kMergeWarps)
                tile[dd][lane] = (px >= 0 && d0 + dd < D) ? to_float(map_in[(long)(d0 + dd) * hw + px]) : 0.f;
        }
        __syncthreads();
        for (int dd = warp; dd < kMergeD && d0 + dd < D; dd += kMergeWarps)
            if (l0 + lane < L) dst[row0 + (long)dd * L + lane] = from_float<T>(tile[dd][lane]);
        return;
    }
    for (int dd = warp; dd < kMergeD; dd += kMergeWarps)  // rows -> tile
        tile[dd][lane] = (d0 + dd < D && l0 + lane < L) ? to_float(src[row0 + (long)dd * L + lane]) : 0.f;
    __syncthreads();
    if (channels_last) {
        for (int ll = warp; ll < kMergeL; ll += kMergeWarps) {
            const int px = l0 + ll < L ? route_pixel(k, l0 + ll, h, w, h2, w2) : -1;
            if (px < 0) continue;
            for (int dd = lane; dd < kMergeD && d0 + dd < D; dd += 32)
                map_out[(long)px * D + d0 + dd] = from_float<T>(tile[dd][ll]);
        }
    } else {
        const int px = l0 + lane < L ? route_pixel(k, l0 + lane, h, w, h2, w2) : -1;
        if (px < 0) return;
        for (int dd = warp; dd < kMergeD && d0 + dd < D; dd += kMergeWarps)
            map_out[(long)(d0 + dd) * hw + px] = from_float<T>(tile[dd][lane]);
    }
}

// Merge + out_norm + gate: the scanned route rows written into the map as the SS2D layer's next input,
// LayerNorm(y) * gate(z) over each pixel's D channels, so the merged map is never stored and read back.
constexpr int kNormWarps = 8;            // warps per merge-norm block, a pixel a warp at a time
constexpr int kNormSmemBytes = 32768;    // the block's P x D tile (launch_params.ES2D_NORM_SMEM_BYTES)
constexpr int kNormChunks = 6;           // 16-byte chunks of a pixel a lane owns, at most (VEC: D <= 32 * 6 * 8)
constexpr int kNormLoads = 8;            // 16-byte row loads a thread stages, at most (VEC: P * D <= 8 * 256 * 8)

// SiLU on the special-function unit (conv split and merge-norm; for x < -87 it gives -0 instead of about -x e^x).
__device__ __forceinline__ float silu_fast(float x) {
    return __fdividef(x, 1.f + exp2_fast(-x * kLog2e));
}

__device__ __forceinline__ float gate_of(float z, bool cross) {
    const float g = silu_fast(z);
    return cross ? g + silu_fast(g) : g;
}

// 16-bit types, D % 8 == 0, D <= 1536, L % 8 == 0, P % 8 == 0, z's pixels and every array 16-byte aligned.
// The tile is pixel-major (tile[ll * D + d]): a thread loads 8 positions of one channel's row (16 bytes) and
// stores them into 8 pixels, the warp's lanes on consecutive channels (no bank conflicts); a lane then owns
// 16-byte chunks of its warp's pixel: the statistics and the output read them as vectors, and each lane's
// gate inputs are requested before the two reductions, so their latency hides behind them.
// The eight 16-bit values of a 16-byte chunk as floats.
template <typename T>
__device__ __forceinline__ void chunk_floats(const uint4 x, float (&f)[8]) {
    const unsigned words[4] = {x.x, x.y, x.z, x.w};
#pragma unroll
    for (int j = 0; j < 8; ++j) f[j] = Word<T>::get(words[j / 2], j % 2);
}

template <typename T, bool CROSS>
__device__ __forceinline__ void merge_norm_vec(const T* rows, const T* z, const T* gamma, const T* beta, T* out,
                                               int D, int h, int w, int zps, int P, float eps, T* tile) {
    const int h2 = (h + 1) / 2, w2 = (w + 1) / 2, L = h2 * w2;
    const int bk = blockIdx.y, b = bk / 4, k = bk % 4;
    const int l0 = blockIdx.x * P;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const T* src = rows + (long)bk * D * L + l0;
    {
        const int items = D * (P / 8);
        uint4 v[kNormLoads];
#pragma unroll
        for (int i = 0; i < kNormLoads; ++i) {
            const int idx = threadIdx.x + i * kNormWarps * 32, d = idx % D, g = idx / D;
            if (idx < items && l0 + 8 * g < L) v[i] = __ldg(reinterpret_cast<const uint4*>(src + (long)d * L + 8 * g));
            else v[i] = make_uint4(0u, 0u, 0u, 0u);
        }
#pragma unroll
        for (int i = 0; i < kNormLoads; ++i) {
            const int idx = threadIdx.x + i * kNormWarps * 32, d = idx % D, g = idx / D;
            if (idx >= items) break;
            const unsigned words[4] = {v[i].x, v[i].y, v[i].z, v[i].w};
            unsigned short* t = reinterpret_cast<unsigned short*>(tile) + (8 * g) * D + d;
#pragma unroll
            for (int j = 0; j < 8; ++j) t[j * D] = static_cast<unsigned short>(words[j / 2] >> (16 * (j % 2)));
        }
    }
    __syncthreads();
    const int chunks = D / 8;
    const float inv_d = 1.f / (float)D;
    for (int ll = warp; ll < P; ll += kNormWarps) {
        const int px = l0 + ll < L ? route_pixel(k, l0 + ll, h, w, h2, w2) : -1;
        if (px < 0) continue;  // warp-uniform
        const long pixel = (long)b * h * w + px;
        const uint4* zp = reinterpret_cast<const uint4*>(z + pixel * zps);
        const uint4* xp = reinterpret_cast<const uint4*>(tile + ll * D);
        uint4 zc[kNormChunks];
#pragma unroll
        for (int i = 0; i < kNormChunks; ++i)
            if (lane + 32 * i < chunks) zc[i] = __ldg(zp + lane + 32 * i);
        float sum = 0.f, f[8];
#pragma unroll
        for (int i = 0; i < kNormChunks; ++i) {
            if (lane + 32 * i >= chunks) break;
            chunk_floats<T>(xp[lane + 32 * i], f);
#pragma unroll
            for (int j = 0; j < 8; ++j) sum += f[j];
        }
        const float mean = warp_sum(sum) * inv_d;
        float sq = 0.f;
#pragma unroll
        for (int i = 0; i < kNormChunks; ++i) {
            if (lane + 32 * i >= chunks) break;
            chunk_floats<T>(xp[lane + 32 * i], f);
#pragma unroll
            for (int j = 0; j < 8; ++j) sq = fmaf(f[j] - mean, f[j] - mean, sq);
        }
        const float rstd = rsqrtf(warp_sum(sq) * inv_d + eps);
        uint4* op = reinterpret_cast<uint4*>(out + pixel * D);
#pragma unroll
        for (int i = 0; i < kNormChunks; ++i) {
            const int c = lane + 32 * i;
            if (c >= chunks) break;
            const uint4 x = xp[c], gm = __ldg(reinterpret_cast<const uint4*>(gamma) + c),
                        bt = __ldg(reinterpret_cast<const uint4*>(beta) + c);
            const unsigned xw[4] = {x.x, x.y, x.z, x.w}, zw[4] = {zc[i].x, zc[i].y, zc[i].z, zc[i].w};
            const unsigned gw[4] = {gm.x, gm.y, gm.z, gm.w}, bw[4] = {bt.x, bt.y, bt.z, bt.w};
            unsigned ow[4];
#pragma unroll
            for (int q = 0; q < 4; ++q) {
                unsigned acc = 0;
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                    const float v = fmaf((Word<T>::get(xw[q], e) - mean) * rstd, Word<T>::get(gw[q], e),
                                         Word<T>::get(bw[q], e));
                    acc |= Word<T>::bits(from_float<T>(v * gate_of(Word<T>::get(zw[q], e), CROSS))) << (16 * e);
                }
                ow[q] = acc;
            }
            op[c] = make_uint4(ow[0], ow[1], ow[2], ow[3]);
        }
    }
}

// Any type and size: the tile channel-major (tile[d * pitch + ll], pitch P + 2 at 16 bits, P + 1 at 32: an odd
// number of words, so a warp reading one position of 32 channels hits 32 banks), element by element.
template <typename T> __host__ __device__ constexpr int norm_pitch(int P) { return P + (sizeof(T) == 2 ? 2 : 1); }

template <typename T, bool CROSS>
__device__ __forceinline__ void merge_norm_any(const T* rows, const T* z, const T* gamma, const T* beta, T* out,
                                               int D, int h, int w, int zps, int P, float eps, T* tile) {
    const int pitch = norm_pitch<T>(P);
    const int h2 = (h + 1) / 2, w2 = (w + 1) / 2, L = h2 * w2;
    const int bk = blockIdx.y, b = bk / 4, k = bk % 4;
    const int l0 = blockIdx.x * P;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const T* src = rows + (long)bk * D * L + l0;
    for (int i = threadIdx.x; i < D * P; i += blockDim.x) {
        const int d = i / P, ll = i - d * P;
        tile[d * pitch + ll] = l0 + ll < L ? src[(long)d * L + ll] : from_float<T>(0.f);
    }
    __syncthreads();
    const float inv_d = 1.f / (float)D;
    for (int ll = warp; ll < P; ll += kNormWarps) {
        const int px = l0 + ll < L ? route_pixel(k, l0 + ll, h, w, h2, w2) : -1;
        if (px < 0) continue;  // warp-uniform
        const T* col = tile + ll;
        float sum = 0.f;
        for (int d = lane; d < D; d += 32) sum += to_float(col[d * pitch]);
        const float mean = warp_sum(sum) * inv_d;
        float sq = 0.f;
        for (int d = lane; d < D; d += 32) {
            const float c = to_float(col[d * pitch]) - mean;
            sq = fmaf(c, c, sq);
        }
        const float rstd = rsqrtf(warp_sum(sq) * inv_d + eps);
        const long pixel = (long)b * h * w + px;
        const T* zp = z + pixel * zps;
        T* op = out + pixel * D;
        for (int d = lane; d < D; d += 32) {
            const float v = fmaf((to_float(col[d * pitch]) - mean) * rstd, to_float(gamma[d]), to_float(beta[d]));
            op[d] = from_float<T>(v * gate_of(to_float(zp[d]), CROSS));
        }
    }
}

// grid (ceil(L/P), batch * 4), block kNormWarps * 32. A block stages positions l0 .. l0+P-1 of route k of all
// D channels from the rows (batch, 4D, L), then a warp a pixel: mean and variance over the pixel's channels
// (two passes over the tile, float32), the affine LayerNorm, times the gate (SiLU(z); CROSS: s + SiLU(s) with
// s = SiLU(z), the CMFM's y * g1 + y * g2), stored as the pixel's channels of out (batch, h, w, D). z: (batch,
// h, w, zps) pixel rows whose first D channels are read. Padding is dropped. vec: the launcher's 16-byte form.
template <typename T, bool CROSS>
__device__ __forceinline__ void merge_norm(const T* rows, const T* z, const T* gamma, const T* beta, T* out,
                                           int D, int h, int w, int zps, int P, float eps, int vec) {
    __shared__ __align__(16) unsigned char smem[kNormSmemBytes];
    T* tile = reinterpret_cast<T*>(smem);
    if constexpr (sizeof(T) == 2) {
        if (vec) {
            merge_norm_vec<T, CROSS>(rows, z, gamma, beta, out, D, h, w, zps, P, eps, tile);
            return;
        }
    }
    merge_norm_any<T, CROSS>(rows, z, gamma, beta, out, D, h, w, zps, P, eps, tile);
}

// A conv split tile is kT x kT positions of each route (2kT x 2kT pixels), kT = 16 or 8 (the launcher takes
// 8 where 16 leaves the GPU short of blocks: small maps, few channels).
constexpr int kConvThreads = 256;  // threads per conv split block
constexpr int kConvBytes = 16;     // bytes of each pixel's channels a block owns: one 16-byte load a pixel
constexpr int kConvVec = 2;        // channels a thread convolves (few registers: four blocks an SM)
constexpr int kConvMinBlocks = 4;  // blocks an SM the conv split's register budget is set for

// SiLU on the special-function unit (silu_fast above): the conv split is issue-bound, and the IEEE exp and
// divide of fe::silu cost it a quarter of its instructions.

// The channels a conv split block owns: 8 of a 16-bit type, 4 floats.
template <typename T> __host__ __device__ constexpr int conv_channels() { return kConvBytes / static_cast<int>(sizeof(T)); }

// The kConvVec channels at p (consecutive elements of shared memory, aligned to their size) as floats.
template <typename T>
__device__ __forceinline__ void load_conv_vec(const T* p, float (&v)[kConvVec]) {
    static_assert(kConvVec == 2, "two channels a thread");
    if constexpr (sizeof(T) == 2) {
        const unsigned q = *reinterpret_cast<const unsigned*>(p);
        v[0] = Word<T>::get(q, 0); v[1] = Word<T>::get(q, 1);
    } else {
        const float2 q = *reinterpret_cast<const float2*>(p);
        v[0] = q.x; v[1] = q.y;
    }
}

// Stage the (2T + 2) x (2T + 2) pixels (the tile and its halo; outside the image 0) of the block's channels
// c0.. of a channels-last input (pixel stride ps) in shared memory: one 16-byte load a pixel where the
// layout allows, all of a thread's loads in flight before the first store (the tile is latency-bound, not
// bandwidth-bound); else element by element.
template <typename T, int kT>
__device__ __forceinline__ void stage_conv_input(const T* a, int ps, T* tile, long img, int h, int w,
                                                 int row0, int col0, int c0, int D) {
    constexpr int kC = conv_channels<T>(), kSide = 2 * kT + 2, kPixels = kSide * kSide;
    constexpr int kRounds = (kPixels + kConvThreads - 1) / kConvThreads;
    const bool vec = reinterpret_cast<unsigned long long>(a) % kConvBytes == 0 &&
                     (static_cast<long>(ps) * sizeof(T)) % kConvBytes == 0 && c0 + kC <= D;
    if (vec) {
        uint4 got[kRounds];
#pragma unroll
        for (int q = 0; q < kRounds; ++q) {
            const int p = threadIdx.x + q * kConvThreads;
            const int row = row0 - 1 + p / kSide, col = col0 - 1 + p % kSide;
            const bool inside = p < kPixels && row >= 0 && row < h && col >= 0 && col < w;
            got[q] = inside ? __ldg(reinterpret_cast<const uint4*>(a + (img + (long)row * w + col) * ps + c0))
                            : make_uint4(0, 0, 0, 0);
        }
#pragma unroll
        for (int q = 0; q < kRounds; ++q) {
            const int p = threadIdx.x + q * kConvThreads;
            if (p < kPixels) *reinterpret_cast<uint4*>(tile + p * kC) = got[q];
        }
        return;
    }
    for (int p = threadIdx.x; p < kPixels; p += kConvThreads) {
        const int row = row0 - 1 + p / kSide, col = col0 - 1 + p % kSide;
        const bool inside = row >= 0 && row < h && col >= 0 && col < w;
        const T* src = a + (img + (long)row * w + col) * ps + c0;
#pragma unroll
        for (int v = 0; v < kC; ++v) tile[p * kC + v] = (inside && c0 + v < D) ? src[v] : from_float<T>(0.f);
    }
}

// Elements of a route run a conv split block stores with one access: the most (up to 16 bytes) that divide the
// run's stride in the rows (w2 for the row-major routes 0 and 2, h2 for 1 and 3), so every run of a tile is whole
// or wholly outside the route and starts aligned; 1 when dst itself is not 16-byte aligned.
template <typename T>
__device__ __forceinline__ int conv_run_vec(int stride, const T* dst) {
    constexpr int kMax = kConvBytes / static_cast<int>(sizeof(T));
    if (reinterpret_cast<unsigned long long>(dst) % kConvBytes != 0) return 1;
    int v = kMax;
    while (v > 1 && stride % v != 0) v /= 2;
    return v;
}

// One route's rows of a conv split tile, V elements an access: `plane` is the route's [kC][kT][kPitch] block of
// the shared route tile (run direction last), `rows` its (D, L) rows in dst. A thread takes whole runs.
template <typename T, int kT, int kPitch, int V>
__device__ __forceinline__ void store_route_runs(const T* plane, T* rows, bool odd, int c0, int D, int L, int i0,
                                                 int j0, int h2, int w2) {
    constexpr int kC = conv_channels<T>(), kRuns = kT / V, kItems = kC * kT * kRuns;
    using lanes::Pick;
    using Vec = typename Pick<V * sizeof(T) == 16, uint4,
                typename Pick<V * sizeof(T) == 8, uint2,
                typename Pick<V * sizeof(T) == 4, unsigned, T>::type>::type>::type;
#pragma unroll 2
    for (int n = 0; n < (kItems + kConvThreads - 1) / kConvThreads; ++n) {
        const int it = threadIdx.x + n * kConvThreads;
        if (kItems % kConvThreads != 0 && it >= kItems) break;
        const int b0 = (it % kRuns) * V, a = (it / kRuns) % kT, c = it / (kRuns * kT);
        const int i = odd ? i0 + b0 : i0 + a, j = odd ? j0 + a : j0 + b0;  // the run's first position
        if (i >= h2 || j >= w2 || c0 + c >= D) continue;
        const long pos = odd ? (long)j * h2 + i : (long)i * w2 + j;
        *reinterpret_cast<Vec*>(rows + (long)(c0 + c) * L + pos) =
            *reinterpret_cast<const Vec*>(plane + (c * kT + a) * kPitch + b0);
    }
}

// The split with the map computed on the way (the SS2D layer's map is SiLU(depthwise 3x3 conv + bias) of
// the in_proj output's first half, and nothing but this gather reads it): the map never exists, so the
// conv's write and the split's read of it disappear. `a` is the channels-last input (batch, h, w, *) with
// pixel stride `ps` (channels contiguous, e.g. a half of a (.., 2D) linear output); wt (D, 9) and bias (D).
// kCross (the CMFM): a second input a2 (pixel stride ps2) through the same conv, the map c1 * c2 + c1 + c2.
// grid (ceil(D / kC), tiles, batch), block kConvThreads: a block owns a 2kT x 2kT pixel tile (kT x kT positions
// of each route) and kC channels. Its input tile with halo is staged in shared memory (each pixel read once,
// not once per tap). A thread convolves a column strip of pixels for kConvVec channels, one input row at a
// time: each row adds its three taps' products to the three outputs it touches (three running sums instead of
// a 3 x 3 window of inputs, which kept the kernel at two blocks an SM by registers). The results land in a
// shared route tile laid out along each route's runs (j for routes 0 and 2, i for 1 and 3), from which the
// rows are written up to 16 bytes an access. The channel groups of one tile are neighbouring blocks, so the
// 32-byte sectors they share are read from L2 together.
template <typename T, bool kCross, int kT>
__device__ __forceinline__ void conv_split(const T* a, const T* a2, const T* wt, const T* bias, T* dst, int D,
                                           int h, int w, int ps, int ps2) {
    constexpr int kC = conv_channels<T>(), kSide = 2 * kT + 2;
    constexpr int kLanesPerPixel = kC / kConvVec;                              // 4 (16-bit) or 2 (float)
    constexpr int kThreadsPerCol = kConvThreads / (2 * kT * kLanesPerPixel);  // strips of a column
    constexpr int kStripRows = 2 * kT / kThreadsPerCol;                       // pixels a thread convolves
    constexpr int kPitch = kT + kConvBytes / static_cast<int>(sizeof(T));    // a run's row, 16-byte multiple
    static_assert(kC % kConvVec == 0 && kThreadsPerCol >= 1 && kStripRows * kThreadsPerCol == 2 * kT, "tiling");
    __shared__ __align__(16) T in[kSide * kSide * kC];
    __shared__ __align__(16) T routes[4][kC][kT][kPitch];  // [route][channel][across the run][along the run]
    const int h2 = (h + 1) / 2, w2 = (w + 1) / 2, L = h2 * w2;
    const int c0 = blockIdx.x * kC, b = blockIdx.z;
    const int tiles_w = (w2 + kT - 1) / kT;
    const int i0 = (blockIdx.y / tiles_w) * kT, j0 = (blockIdx.y % tiles_w) * kT;
    const long img = (long)b * h * w;
    const int ch = (threadIdx.x % kLanesPerPixel) * kConvVec;  // this thread's first channel in the block
    const int col = (threadIdx.x / kLanesPerPixel) % (2 * kT);
    const int r0 = threadIdx.x / (kLanesPerPixel * 2 * kT) * kStripRows;
    float tap[9][kConvVec], b4[kConvVec];
    float first[kCross ? kStripRows : 1][kConvVec];  // kCross: the first input's map at this thread's pixels
#pragma unroll
    for (int v = 0; v < kConvVec; ++v) {
        const int c = c0 + ch + v;
        b4[v] = c < D ? to_float(bias[c]) : 0.f;
#pragma unroll
        for (int t = 0; t < 9; ++t) tap[t][v] = c < D ? to_float(wt[(long)c * 9 + t]) : 0.f;
    }
#pragma unroll
    for (int pass = 0; pass < (kCross ? 2 : 1); ++pass) {
        if (pass) __syncthreads();  // every thread is done with the first input's tile
        stage_conv_input<T, kT>(pass ? a2 : a, pass ? ps2 : ps, in, img, h, w, 2 * i0, 2 * j0, c0, D);
        __syncthreads();
        // Input row r0 + q (tile rows; tile row 0 is the halo above) is tap row 0 of output r0 + q, row 1 of
        // output r0 + q - 1 and row 2 of output r0 + q - 2, which it completes.
        float done[kConvVec] = {}, mid[kConvVec] = {};  // running sums of outputs r0 + q - 2 and r0 + q - 1
#pragma unroll
        for (int q = 0; q < kStripRows + 2; ++q) {
            float x[3][kConvVec], top[kConvVec];
#pragma unroll
            for (int dx = 0; dx < 3; ++dx) load_conv_vec(in + ((r0 + q) * kSide + col + dx) * kC + ch, x[dx]);
#pragma unroll
            for (int v = 0; v < kConvVec; ++v) {
                top[v] = b4[v];
#pragma unroll
                for (int dx = 0; dx < 3; ++dx) {
                    top[v] = fmaf(tap[dx][v], x[dx][v], top[v]);
                    mid[v] = fmaf(tap[3 + dx][v], x[dx][v], mid[v]);
                    done[v] = fmaf(tap[6 + dx][v], x[dx][v], done[v]);
                }
            }
            if (q >= 2) {
                const int dr = q - 2, r = r0 + dr;
                const int row = 2 * i0 + r, pcol = 2 * j0 + col;
                const int k = (r & 1) | ((col & 1) << 1), i = r >> 1, j = col >> 1;
                const bool odd = r & 1;  // routes 1 and 3 run along i
#pragma unroll
                for (int v = 0; v < kConvVec; ++v) {
                    const float y = (row < h && pcol < w) ? silu_fast(done[v]) : 0.f;  // padding reads as 0
                    T* slot = &routes[k][ch + v][odd ? j : i][odd ? i : j];
                    if constexpr (kCross) {
                        if (pass == 0) {
                            first[dr][v] = y;
                            continue;
                        }
                        *slot = from_float<T>(first[dr][v] * y + first[dr][v] + y);
                    } else {
                        *slot = from_float<T>(y);
                    }
                }
            }
#pragma unroll
            for (int v = 0; v < kConvVec; ++v) { done[v] = mid[v]; mid[v] = top[v]; }
        }
    }
    __syncthreads();
    // rows (batch, 4D, L): route k's rows start at (b * 4 + k) * D * L.
    const int v_rows = conv_run_vec(w2, dst), v_cols = conv_run_vec(h2, dst);
#pragma unroll 1
    for (int k = 0; k < 4; ++k) {
        const bool odd = k & 1;
        const T* plane = &routes[k][0][0][0];
        T* rows = dst + (long)(b * 4 + k) * D * L;
        switch (odd ? v_cols : v_rows) {
            case 8:
                if constexpr (sizeof(T) == 2) store_route_runs<T, kT, kPitch, 8>(plane, rows, odd, c0, D, L, i0, j0, h2, w2);
                break;
            case 4: store_route_runs<T, kT, kPitch, 4>(plane, rows, odd, c0, D, L, i0, j0, h2, w2); break;
            case 2: store_route_runs<T, kT, kPitch, 2>(plane, rows, odd, c0, D, L, i0, j0, h2, w2); break;
            default: store_route_runs<T, kT, kPitch, 1>(plane, rows, odd, c0, D, L, i0, j0, h2, w2);
        }
    }
}

// grid (ceil(L/kProjL), ceil(CP/kProjC), batch * 4 * splits), block kProjL threads; kProjC rows a block.
// With splits > 1 each block sums a slice of the channels and adds into a zeroed proj.
// The next channel stage of x and of the weights is loaded into registers (raw bits) while
// the current one is multiplied, so the loads' latency overlaps the arithmetic.
template <typename TX, int kProjC>
__device__ __forceinline__ void project(const TX* x, const float* xw, float* proj, int batch, int D,
                                        int h, int w, int CP, int splits, int channels_last) {
    constexpr int kWPer = kProjD * kProjC / kProjL;  // weights each thread stages
    __shared__ __align__(16) float xs[kProjD][kProjL];
    __shared__ __align__(16) float ws[kProjD][kProjC];
    const int h2 = (h + 1) / 2, w2 = (w + 1) / 2, L = h2 * w2;
    const int split = blockIdx.z % splits;
    const int bk = blockIdx.z / splits, b = bk / 4, k = bk % 4;
    const int l0 = blockIdx.x * kProjL, c0 = blockIdx.y * kProjC;
    const int tid = threadIdx.x;
    const int d_per = ((D + splits - 1) / splits + kProjD - 1) / kProjD * kProjD;
    const int d_begin = split * d_per, d_end = min(D, d_begin + d_per);
    const int px = (l0 + tid) < L ? route_pixel(k, l0 + tid, h, w, h2, w2) : -1;
    // element strides of a channel and of a pixel: planes (h * w, 1) or channels-last (1, D)
    const long chan_stride = channels_last ? 1 : (long)h * w;
    const TX* xcol = x + (long)b * D * h * w + (px >= 0 ? (long)px * (channels_last ? D : 1) : 0);

    // Channels-last: a pixel's kProjD channels of a stage are one run of memory, read with 16-byte loads
    // where the runs are aligned (one warp request then touches as many sectors as on channel planes).
    constexpr int kVecLoads = kProjD * (int)sizeof(TX) / 16;
    const bool vec = channels_last && reinterpret_cast<unsigned long long>(x) % 16 == 0 &&
                     (D * (int)sizeof(TX)) % 16 == 0;
    unsigned xr[kProjD];
    float wr[kWPer];
    auto stage = [&](int d0) {
        if (vec && d0 + kProjD <= d_end) {
#pragma unroll
            for (int v = 0; v < kVecLoads; ++v) {
                const uint4 q = px >= 0 ? __ldg(reinterpret_cast<const uint4*>(xcol + d0) + v) : make_uint4(0, 0, 0, 0);
                const unsigned words[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
                for (int i = 0; i < 4; ++i) {
                    if constexpr (Word<TX>::kPerWord == 2) {  // one 16-bit value a register, low half
                        xr[v * 8 + 2 * i] = words[i] & 0xffffu;
                        xr[v * 8 + 2 * i + 1] = words[i] >> 16;
                    } else {
                        xr[v * 4 + i] = words[i];
                    }
                }
            }
        } else {
#pragma unroll
            for (int dd = 0; dd < kProjD; ++dd) {
                const int d = d0 + dd;
                xr[dd] = (d < d_end && px >= 0) ? scan::load_bits(xcol, (long)d * chan_stride) : 0u;
            }
        }
#pragma unroll
        for (int r = 0; r < kWPer; ++r) {
            const int e = tid + r * kProjL, cc = e / kProjD, dd = e % kProjD;
            const int c = c0 + cc, d = d0 + dd;
            wr[r] = (c < CP && d < d_end) ? __ldg(xw + ((long)k * CP + c) * D + d) : 0.f;
        }
    };

    // Thread tid computes rows c0 + kRows * (tid / 32) .. + kRows - 1 at positions l0 + 4 * (tid % 32) .. + 3:
    // a kRows x 4 tile, so each 16-byte shared read of x feeds 4 * kRows multiply-adds (the weights are a
    // broadcast).
    constexpr int kCols = 4, kRows = kProjC / (kProjL / 32);
    static_assert(kProjC == kRows * (kProjL / 32) && kProjL == 32 * kCols && kRows % 4 == 0,
                  "kRows x 4 tiles of a kProjC x 128 block, kRows a multiple of 4 (16-byte weight reads)");
    const int rg = tid >> 5, pg = tid & 31;
    float acc[kRows][kCols];
#pragma unroll
    for (int i = 0; i < kRows; ++i)
#pragma unroll
        for (int j = 0; j < kCols; ++j) acc[i][j] = 0.f;
    if (d_begin < d_end) stage(d_begin);
    for (int d0 = d_begin; d0 < d_end; d0 += kProjD) {
        __syncthreads();
#pragma unroll
        for (int dd = 0; dd < kProjD; ++dd) xs[dd][tid] = Word<TX>::get(xr[dd], 0);
#pragma unroll
        for (int r = 0; r < kWPer; ++r) {
            const int e = tid + r * kProjL;
            ws[e % kProjD][e / kProjD] = wr[r];
        }
        __syncthreads();
        if (d0 + kProjD < d_end) stage(d0 + kProjD);
#pragma unroll 8
        for (int dd = 0; dd < kProjD; ++dd) {
            const float4 xv = *reinterpret_cast<const float4*>(&xs[dd][kCols * pg]);
            const float xa[kCols] = {xv.x, xv.y, xv.z, xv.w};
            float wa[kRows];
#pragma unroll
            for (int i = 0; i < kRows; i += 4) {
                const float4 wv = *reinterpret_cast<const float4*>(&ws[dd][kRows * rg + i]);
                wa[i] = wv.x; wa[i + 1] = wv.y; wa[i + 2] = wv.z; wa[i + 3] = wv.w;
            }
#pragma unroll
            for (int i = 0; i < kRows; ++i)
#pragma unroll
                for (int j = 0; j < kCols; ++j) acc[i][j] = fmaf(wa[i], xa[j], acc[i][j]);
        }
    }
    const int l = l0 + kCols * pg;
    if (l >= L) return;
    const bool whole = l + kCols <= L && L % 4 == 0 && splits == 1;  // one 16-byte store a row
#pragma unroll
    for (int i = 0; i < kRows; ++i) {
        const int c = c0 + kRows * rg + i;
        if (c >= CP) continue;
        float* dst = proj + (((long)b * 4 + k) * CP + c) * L + l;
        if (whole) {
            *reinterpret_cast<float4*>(dst) = make_float4(acc[i][0], acc[i][1], acc[i][2], acc[i][3]);
        } else {
#pragma unroll
            for (int j = 0; j < kCols; ++j) {
                if (l + j >= L) break;
                if (splits > 1) atomicAdd(dst + j, acc[i][j]); else dst[j] = acc[i][j];
            }
        }
    }
}

}  // namespace es2d
}  // namespace fe

#define FE_ES2D_PROJECT_ENTRY(NAME, TX, ROWS)                                                        \
    extern "C" __global__ void __launch_bounds__(fe::es2d::kProjL) NAME(                              \
        const TX* x, const float* x_proj_weight, float* proj, int batch, int D, int h, int w, int CP, \
        int splits, int channels_last) {                                                              \
        fe::es2d::project<TX, ROWS>(x, x_proj_weight, proj, batch, D, h, w, CP, splits, channels_last); \
    }

// x: map (batch, D, h, w), or with channels_last its (batch, h, w, D) buffer; out: the same layout as x.
// dt_projs_weight: (4, D, R); proj: (batch, 4, R+2N, L); delta: null or
// (batch, 4D, L) float32; out: map, float32.
// STATES: first pass of a chunked scan (grid.y = chunks), as in selective_scan_fwd.cu.
// merge: src the rows (batch, 4D, L), dst the map; split: src the map, dst the rows.
#define FE_ES2D_MOVE_ENTRY(NAME, T, TO_MAP)                                                            \
    extern "C" __global__ void __launch_bounds__(fe::es2d::kMergeWarps * 32) NAME(                    \
        const T* src, T* dst, int D, int h, int w, int channels_last) {                               \
        fe::es2d::move_routes<T, TO_MAP>(src, dst, D, h, w, channels_last);                           \
    }

// rows (batch, 4D, L) -> out (batch, h, w, D) = LayerNorm(merged map) * gate(z); P positions a block.
#define FE_ES2D_MERGE_NORM_ENTRY(NAME, T, CROSS)                                                      \
    extern "C" __global__ void __launch_bounds__(fe::es2d::kNormWarps * 32) NAME(                     \
        const T* rows, const T* z, const T* gamma, const T* beta, T* out, int D, int h, int w,        \
        int zps, int P, float eps, int vec) {                                                         \
        fe::es2d::merge_norm<T, CROSS>(rows, z, gamma, beta, out, D, h, w, zps, P, eps, vec);          \
    }

// a: channels-last input (pixel stride ps), wt (D, 9), bias (D), dst the rows (batch, 4D, L); CROSS: a2 too.
#define FE_ES2D_CONV_SPLIT_ENTRY(NAME, T, CROSS, TILE)                                                 \
    extern "C" __global__ void __launch_bounds__(fe::es2d::kConvThreads, fe::es2d::kConvMinBlocks) NAME(                     \
        const T* a, const T* a2, const T* wt, const T* bias, T* dst, int D, int h, int w, int ps,     \
        int ps2) {                                                                                    \
        fe::es2d::conv_split<T, CROSS, TILE>(a, a2, wt, bias, dst, D, h, w, ps, ps2);                  \
    }

#define FE_ES2D_SCAN_ENTRY(NAME, TX, LPC, SPL, STATES)                                                \
    extern "C" __global__ void __launch_bounds__(fe::scan::kMaxWarps * 32, SPL <= 2 ? 4 : 2) NAME(   \
        const TX* x, const float* dt_projs_weight, const float* A_logs, const float* proj,           \
        const float* delta, const float* Ds, const float* dt_bias, float* out, float* states,        \
        float* dsums, int batch,                                                                     \
        int D, int h, int w, int N, int R, int vec_bc, int chunk_len, int n_chunks,                  \
        int channels_last) {                                                                         \
        __shared__ fe::scan::WarpSmem<LPC, fe::scan::Tiling<LPC, SPL, float>::TL> smem[fe::scan::kMaxWarps]; \
        fe::scan::Params p;                                                                          \
        const int h2 = (h + 1) / 2, w2 = (w + 1) / 2;                                                \
        p.u = x; p.delta = delta;    p.A = A_logs; p.B = proj; p.C = proj; p.D = Ds; p.z = nullptr;  \
        p.delta_bias = dt_bias; p.out = out; p.states = states; p.dsums = dsums;                     \
        p.batch = batch; p.dim = 4 * D; p.L = h2 * w2; p.N = N; p.groups = 4;                        \
        p.softplus = 1; p.vec_bc = vec_bc; p.a_is_log = 1;                                           \
        p.chunk_len = chunk_len; p.n_chunks = n_chunks;                                              \
        p.dim_route = D; p.h = h; p.w = w; p.h2 = h2; p.w2 = w2; p.proj_rows = R + 2 * N;            \
        p.map_cs = channels_last ? 1 : h * w; p.map_ps = channels_last ? D : 1;                      \
        p.dt_rank = R; p.dt_w = dt_projs_weight;                                                     \
        fe::scan::scan_warp<TX, float, float, LPC, SPL, true, STATES>(p, reinterpret_cast<char*>(smem)); \
    }

// The lane-major core, same arguments; vec_bc: the projection rows (dt, B, C) allow 16-byte access.
#define FE_ES2D_LANES_ENTRY(NAME, TX, LPC, STATES)                                                    \
    extern "C" __global__ void __launch_bounds__(fe::lanes::kMaxWarps * 32) NAME(                     \
        const TX* x, const float* dt_projs_weight, const float* A_logs, const float* proj,           \
        const float* delta, const float* Ds, const float* dt_bias, float* out, float* states,        \
        float* dsums, int batch,                                                                     \
        int D, int h, int w, int N, int R, int vec_bc, int chunk_len, int n_chunks,                  \
        int channels_last) {                                                                         \
        __shared__ fe::lanes::Smem<LPC> smem[fe::lanes::kMaxWarps];                                  \
        fe::scan::Params p;                                                                          \
        const int h2 = (h + 1) / 2, w2 = (w + 1) / 2;                                                \
        p.u = x; p.delta = delta;    p.A = A_logs; p.B = proj; p.C = proj; p.D = Ds; p.z = nullptr;  \
        p.delta_bias = dt_bias; p.out = out; p.states = states; p.dsums = dsums;                     \
        p.batch = batch; p.dim = 4 * D; p.L = h2 * w2; p.N = N; p.groups = 4;                        \
        p.softplus = 1; p.vec_bc = vec_bc; p.a_is_log = 1;                                           \
        p.chunk_len = chunk_len; p.n_chunks = n_chunks;                                              \
        p.dim_route = D; p.h = h; p.w = w; p.h2 = h2; p.w2 = w2; p.proj_rows = R + 2 * N;            \
        p.map_cs = channels_last ? 1 : h * w; p.map_ps = channels_last ? D : 1;                      \
        p.dt_rank = R; p.dt_w = dt_projs_weight; p.per_group = D; p.vec_u = 0;                       \
        fe::lanes::scan_lanes<TX, float, float, LPC, true, STATES>(p, smem);                        \
    }

// The time-parallel core, same arguments and the warps a channel (1 or 2).
#define FE_ES2D_TIME_ENTRY(NAME, TX, STATES)                                                          \
    extern "C" __global__ void __launch_bounds__(fe::timepar::kWarps * 32, fe::timepar::kMinBlocks) NAME( \
        const TX* x, const float* dt_projs_weight, const float* A_logs, const float* proj,           \
        const float* delta, const float* Ds, const float* dt_bias, float* out, float* states,        \
        float* dsums, int batch,                                                                     \
        int D, int h, int w, int N, int R, int vec_bc, int chunk_len, int n_chunks,                  \
        int channels_last, int split) {                                                              \
        __shared__ fe::timepar::Smem smem[fe::timepar::kWarps];                                      \
        fe::scan::Params p;                                                                          \
        const int h2 = (h + 1) / 2, w2 = (w + 1) / 2;                                                \
        p.u = x; p.delta = delta;    p.A = A_logs; p.B = proj; p.C = proj; p.D = Ds; p.z = nullptr;  \
        p.delta_bias = dt_bias; p.out = out; p.states = states; p.dsums = dsums;                     \
        p.batch = batch; p.dim = 4 * D; p.L = h2 * w2; p.N = N; p.groups = 4;                        \
        p.softplus = 1; p.vec_bc = vec_bc; p.a_is_log = 1;                                           \
        p.chunk_len = chunk_len; p.n_chunks = n_chunks;                                              \
        p.dim_route = D; p.h = h; p.w = w; p.h2 = h2; p.w2 = w2; p.proj_rows = R + 2 * N;            \
        p.map_cs = channels_last ? 1 : h * w; p.map_ps = channels_last ? D : 1;                      \
        p.dt_rank = R; p.dt_w = dt_projs_weight; p.per_group = D; p.vec_u = 0; p.split = split;      \
        fe::timepar::scan_time<TX, float, float, true, STATES>(p, smem);                             \
    }

using fe::half_t;
using fe::bf16_t;

#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_project_f32)
FE_ES2D_PROJECT_ENTRY(fe_es2d_project_f32, float, fe::es2d::kProjC)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_project_wide_f32)
FE_ES2D_PROJECT_ENTRY(fe_es2d_project_wide_f32, float, fe::es2d::kProjWideC)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_project_f16)
FE_ES2D_PROJECT_ENTRY(fe_es2d_project_f16, half_t, fe::es2d::kProjC)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_project_wide_f16)
FE_ES2D_PROJECT_ENTRY(fe_es2d_project_wide_f16, half_t, fe::es2d::kProjWideC)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_project_bf16)
FE_ES2D_PROJECT_ENTRY(fe_es2d_project_bf16, bf16_t, fe::es2d::kProjC)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_project_wide_bf16)
FE_ES2D_PROJECT_ENTRY(fe_es2d_project_wide_bf16, bf16_t, fe::es2d::kProjWideC)
#endif

#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_scan_f32_n16)
FE_ES2D_SCAN_ENTRY(fe_es2d_scan_f32_n16, float, 8, 2, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_states_f32_n16)
FE_ES2D_SCAN_ENTRY(fe_es2d_states_f32_n16, float, 8, 2, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_scan_f32_n32)
FE_ES2D_SCAN_ENTRY(fe_es2d_scan_f32_n32, float, 16, 2, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_states_f32_n32)
FE_ES2D_SCAN_ENTRY(fe_es2d_states_f32_n32, float, 16, 2, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_scan_f32_n48)
FE_ES2D_SCAN_ENTRY(fe_es2d_scan_f32_n48, float, 16, 3, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_states_f32_n48)
FE_ES2D_SCAN_ENTRY(fe_es2d_states_f32_n48, float, 16, 3, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_scan_f32_n64)
FE_ES2D_SCAN_ENTRY(fe_es2d_scan_f32_n64, float, 16, 4, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_states_f32_n64)
FE_ES2D_SCAN_ENTRY(fe_es2d_states_f32_n64, float, 16, 4, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_scan_f16_n16)
FE_ES2D_SCAN_ENTRY(fe_es2d_scan_f16_n16, half_t, 8, 2, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_states_f16_n16)
FE_ES2D_SCAN_ENTRY(fe_es2d_states_f16_n16, half_t, 8, 2, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_scan_f16_n32)
FE_ES2D_SCAN_ENTRY(fe_es2d_scan_f16_n32, half_t, 16, 2, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_states_f16_n32)
FE_ES2D_SCAN_ENTRY(fe_es2d_states_f16_n32, half_t, 16, 2, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_scan_f16_n48)
FE_ES2D_SCAN_ENTRY(fe_es2d_scan_f16_n48, half_t, 16, 3, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_states_f16_n48)
FE_ES2D_SCAN_ENTRY(fe_es2d_states_f16_n48, half_t, 16, 3, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_scan_f16_n64)
FE_ES2D_SCAN_ENTRY(fe_es2d_scan_f16_n64, half_t, 16, 4, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_states_f16_n64)
FE_ES2D_SCAN_ENTRY(fe_es2d_states_f16_n64, half_t, 16, 4, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_scan_bf16_n16)
FE_ES2D_SCAN_ENTRY(fe_es2d_scan_bf16_n16, bf16_t, 8, 2, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_states_bf16_n16)
FE_ES2D_SCAN_ENTRY(fe_es2d_states_bf16_n16, bf16_t, 8, 2, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_scan_bf16_n32)
FE_ES2D_SCAN_ENTRY(fe_es2d_scan_bf16_n32, bf16_t, 16, 2, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_states_bf16_n32)
FE_ES2D_SCAN_ENTRY(fe_es2d_states_bf16_n32, bf16_t, 16, 2, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_scan_bf16_n48)
FE_ES2D_SCAN_ENTRY(fe_es2d_scan_bf16_n48, bf16_t, 16, 3, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_states_bf16_n48)
FE_ES2D_SCAN_ENTRY(fe_es2d_states_bf16_n48, bf16_t, 16, 3, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_scan_bf16_n64)
FE_ES2D_SCAN_ENTRY(fe_es2d_scan_bf16_n64, bf16_t, 16, 4, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_states_bf16_n64)
FE_ES2D_SCAN_ENTRY(fe_es2d_states_bf16_n64, bf16_t, 16, 4, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_lanes_scan_f32_l1)
FE_ES2D_LANES_ENTRY(fe_es2d_lanes_scan_f32_l1, float, 1, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_lanes_states_f32_l1)
FE_ES2D_LANES_ENTRY(fe_es2d_lanes_states_f32_l1, float, 1, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_lanes_scan_f32_l2)
FE_ES2D_LANES_ENTRY(fe_es2d_lanes_scan_f32_l2, float, 2, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_lanes_states_f32_l2)
FE_ES2D_LANES_ENTRY(fe_es2d_lanes_states_f32_l2, float, 2, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_lanes_scan_f32_l4)
FE_ES2D_LANES_ENTRY(fe_es2d_lanes_scan_f32_l4, float, 4, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_lanes_states_f32_l4)
FE_ES2D_LANES_ENTRY(fe_es2d_lanes_states_f32_l4, float, 4, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_lanes_scan_f32_l8)
FE_ES2D_LANES_ENTRY(fe_es2d_lanes_scan_f32_l8, float, 8, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_lanes_states_f32_l8)
FE_ES2D_LANES_ENTRY(fe_es2d_lanes_states_f32_l8, float, 8, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_lanes_scan_f16_l1)
FE_ES2D_LANES_ENTRY(fe_es2d_lanes_scan_f16_l1, half_t, 1, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_lanes_states_f16_l1)
FE_ES2D_LANES_ENTRY(fe_es2d_lanes_states_f16_l1, half_t, 1, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_lanes_scan_f16_l2)
FE_ES2D_LANES_ENTRY(fe_es2d_lanes_scan_f16_l2, half_t, 2, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_lanes_states_f16_l2)
FE_ES2D_LANES_ENTRY(fe_es2d_lanes_states_f16_l2, half_t, 2, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_lanes_scan_f16_l4)
FE_ES2D_LANES_ENTRY(fe_es2d_lanes_scan_f16_l4, half_t, 4, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_lanes_states_f16_l4)
FE_ES2D_LANES_ENTRY(fe_es2d_lanes_states_f16_l4, half_t, 4, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_lanes_scan_f16_l8)
FE_ES2D_LANES_ENTRY(fe_es2d_lanes_scan_f16_l8, half_t, 8, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_lanes_states_f16_l8)
FE_ES2D_LANES_ENTRY(fe_es2d_lanes_states_f16_l8, half_t, 8, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_lanes_scan_bf16_l1)
FE_ES2D_LANES_ENTRY(fe_es2d_lanes_scan_bf16_l1, bf16_t, 1, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_lanes_states_bf16_l1)
FE_ES2D_LANES_ENTRY(fe_es2d_lanes_states_bf16_l1, bf16_t, 1, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_lanes_scan_bf16_l2)
FE_ES2D_LANES_ENTRY(fe_es2d_lanes_scan_bf16_l2, bf16_t, 2, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_lanes_states_bf16_l2)
FE_ES2D_LANES_ENTRY(fe_es2d_lanes_states_bf16_l2, bf16_t, 2, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_lanes_scan_bf16_l4)
FE_ES2D_LANES_ENTRY(fe_es2d_lanes_scan_bf16_l4, bf16_t, 4, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_lanes_states_bf16_l4)
FE_ES2D_LANES_ENTRY(fe_es2d_lanes_states_bf16_l4, bf16_t, 4, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_lanes_scan_bf16_l8)
FE_ES2D_LANES_ENTRY(fe_es2d_lanes_scan_bf16_l8, bf16_t, 8, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_lanes_states_bf16_l8)
FE_ES2D_LANES_ENTRY(fe_es2d_lanes_states_bf16_l8, bf16_t, 8, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_time_scan_f32)
FE_ES2D_TIME_ENTRY(fe_es2d_time_scan_f32, float, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_time_states_f32)
FE_ES2D_TIME_ENTRY(fe_es2d_time_states_f32, float, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_time_scan_f16)
FE_ES2D_TIME_ENTRY(fe_es2d_time_scan_f16, half_t, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_time_states_f16)
FE_ES2D_TIME_ENTRY(fe_es2d_time_states_f16, half_t, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_time_scan_bf16)
FE_ES2D_TIME_ENTRY(fe_es2d_time_scan_bf16, bf16_t, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_time_states_bf16)
FE_ES2D_TIME_ENTRY(fe_es2d_time_states_bf16, bf16_t, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_merge_f32)
FE_ES2D_MOVE_ENTRY(fe_es2d_merge_f32, float, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_merge_f16)
FE_ES2D_MOVE_ENTRY(fe_es2d_merge_f16, half_t, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_merge_bf16)
FE_ES2D_MOVE_ENTRY(fe_es2d_merge_bf16, bf16_t, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_split_f32)
FE_ES2D_MOVE_ENTRY(fe_es2d_split_f32, float, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_split_f16)
FE_ES2D_MOVE_ENTRY(fe_es2d_split_f16, half_t, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_split_bf16)
FE_ES2D_MOVE_ENTRY(fe_es2d_split_bf16, bf16_t, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_conv_split_f32_t16)
FE_ES2D_CONV_SPLIT_ENTRY(fe_es2d_conv_split_f32_t16, float, false, 16)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_conv_split_f32_t8)
FE_ES2D_CONV_SPLIT_ENTRY(fe_es2d_conv_split_f32_t8, float, false, 8)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_conv_split_cross_f32_t16)
FE_ES2D_CONV_SPLIT_ENTRY(fe_es2d_conv_split_cross_f32_t16, float, true, 16)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_conv_split_cross_f32_t8)
FE_ES2D_CONV_SPLIT_ENTRY(fe_es2d_conv_split_cross_f32_t8, float, true, 8)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_conv_split_f16_t16)
FE_ES2D_CONV_SPLIT_ENTRY(fe_es2d_conv_split_f16_t16, half_t, false, 16)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_conv_split_f16_t8)
FE_ES2D_CONV_SPLIT_ENTRY(fe_es2d_conv_split_f16_t8, half_t, false, 8)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_conv_split_cross_f16_t16)
FE_ES2D_CONV_SPLIT_ENTRY(fe_es2d_conv_split_cross_f16_t16, half_t, true, 16)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_conv_split_cross_f16_t8)
FE_ES2D_CONV_SPLIT_ENTRY(fe_es2d_conv_split_cross_f16_t8, half_t, true, 8)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_conv_split_bf16_t16)
FE_ES2D_CONV_SPLIT_ENTRY(fe_es2d_conv_split_bf16_t16, bf16_t, false, 16)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_conv_split_bf16_t8)
FE_ES2D_CONV_SPLIT_ENTRY(fe_es2d_conv_split_bf16_t8, bf16_t, false, 8)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_conv_split_cross_bf16_t16)
FE_ES2D_CONV_SPLIT_ENTRY(fe_es2d_conv_split_cross_bf16_t16, bf16_t, true, 16)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_conv_split_cross_bf16_t8)
FE_ES2D_CONV_SPLIT_ENTRY(fe_es2d_conv_split_cross_bf16_t8, bf16_t, true, 8)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_merge_norm_f32)
FE_ES2D_MERGE_NORM_ENTRY(fe_es2d_merge_norm_f32, float, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_merge_norm_cross_f32)
FE_ES2D_MERGE_NORM_ENTRY(fe_es2d_merge_norm_cross_f32, float, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_merge_norm_f16)
FE_ES2D_MERGE_NORM_ENTRY(fe_es2d_merge_norm_f16, half_t, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_merge_norm_cross_f16)
FE_ES2D_MERGE_NORM_ENTRY(fe_es2d_merge_norm_cross_f16, half_t, true)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_merge_norm_bf16)
FE_ES2D_MERGE_NORM_ENTRY(fe_es2d_merge_norm_bf16, bf16_t, false)
#endif
#if defined(FE_ALL_KERNELS) || defined(FE_ONLY_fe_es2d_merge_norm_cross_bf16)
FE_ES2D_MERGE_NORM_ENTRY(fe_es2d_merge_norm_cross_bf16, bf16_t, true)
#endif
