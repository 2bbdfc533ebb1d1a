"""CUDA kernels of fusion-edge: the selective scan, the fused ES2D route scan, LDC and a pooled LayerNorm.

The sources live beside this file as ``.cu``/``.cuh`` (one kernel family per folder, in the
style of mamba_ssm's csrc). They are compiled at first use for the GPU at hand with NVRTC
through CuPy and cached on disk, so the same wheel works on x86_64 and on aarch64 (Jetson).
This package never imports torch: three callers share it, the PyTorch op
(``fusion_edge.ops``), the TensorRT plugins and the torch-free runtime.

Launch API (all launches are asynchronous on ``stream``)
--------------------------------------------------------
Array arguments may be ``cupy.ndarray``, a :class:`DeviceArray` (raw pointer + shape + dtype,
for TensorRT's pointers), any object with ``__cuda_array_interface__``, or a CUDA
``torch.Tensor`` (read through ``data_ptr()``, zero copy, bfloat16 included). All must be
C-contiguous and on the same GPU. ``stream`` is a ``cupy.cuda.Stream``, a raw
``cudaStream_t`` as int (``torch.cuda.current_stream().cuda_stream``, TensorRT's stream) or
None (CuPy's current stream). Element types: "float32", "float16", "bfloat16".

``launch_selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, out=None, *,
delta_softplus=False, workspace=None, stream=None) -> out``
    mamba_ssm's selective scan forward. u, delta, z, out: (batch, dim, L), one element type;
    A: (dim, N) float32, N <= 64; B, C: (batch, groups, N, L) in u's type or float32;
    D, delta_bias: (dim,) float32. State and accumulation are float32. ``out`` is
    allocated (CuPy) when None. Long sequences with few channels are scanned in chunks
    (two launches); ``workspace`` then needs ``selective_scan_workspace_bytes(batch, dim, L,
    N, sm_count)`` bytes (allocated from CuPy's pool when None; 0 bytes when not chunked).

``launch_selective_scan_bwd(u, delta, A, B, C, D=None, z=None, delta_bias=None, *, dout, du=None,
ddelta=None, dA=None, dB=None, dC=None, dD=None, dz=None, ddelta_bias=None, delta_softplus=False,
workspace=None, stream=None) -> None``
    The scan's backward: the gradients of the forward's inputs from ``dout`` (like out), written
    into the arrays given (None: not computed, not read). du, ddelta, dz in u's type (dz needs z);
    dA (dim, N), dB, dC (batch, groups, N, L), dD, ddelta_bias (dim,) float32, zeroed and then
    accumulated (cast them to B's type etc. afterwards). Two launches; ``workspace`` needs
    ``selective_scan_bwd_workspace_bytes(batch, dim, L, N, sm_count, groups=groups)`` bytes
    (state checkpoints: 4 bytes per channel, state slot and 16 steps; allocated when None).

``launch_es2d_scan(x, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds, out, *,
workspace=None, proj=None, delta=None, channels_last=False, stream=None) -> out``
    The ES2D core (MODEL.md 3.2): reads x (batch, D, h, w) through the four skip-sampled
    routes, projects, scans and writes ``out`` (batch, D, h, w) float32 in place; no gather
    or scatter copies. Weights float32: x_proj_weight (4, R+2N, D), dt_projs_weight (4, D, R),
    dt_projs_bias (4, D), A_logs (4D, N), Ds (4D). ``workspace`` holds the route projections and
    chunk states: at least ``es2d_workspace_bytes(batch, D, h, w, R, N, sm_count, projected)`` bytes
    (``projected``: ``proj`` is given, so only chunk states, often none), allocated when None.
    ``proj`` (batch, 4, R+2N, L') float32: projections computed elsewhere (x_proj_weight may then be
    None); ``delta`` (batch, 4, D, L') float32: the routes' delta before bias and softplus, which the
    scan then reads instead of forming it from the projections' dt rows. ``channels_last``: x and
    out are the (batch, h, w, D) buffers of channels-last maps instead (no transposing copy on
    either side of the op).

``launch_es2d_merge(ys, out=None, *, h, w, channels_last=False, stream=None) -> out``
    The scatter of the unfused ES2D form: ys (batch, 4D, L') holds the routes' rows as the plain
    selective scan writes them for gathered routes; ``out`` is the (batch, D, h, w) map (or with
    ``channels_last`` its (batch, h, w, D) buffer) in ys's type, each route written to its own
    pixels and the padding dropped. A tiled transpose: both sides are read and written in runs.

``launch_es2d_merge_norm(ys, z, weight, bias, out=None, *, h, w, eps, cross=False, stream=None) -> out``
    The merge with the SS2D layer's out_norm and gate on the way: ``out`` (batch, h, w, D) =
    LayerNorm(the map of the rows ys)(weight, bias, eps) * SiLU(z) (``cross``: the CMFM's gate s + SiLU(s),
    s = SiLU(z)); z (batch, h, w, P) pixel rows, P >= D (the in_proj output's second half read in place).

``launch_es2d_split(x, out=None, *, channels_last=False, stream=None) -> out``
    Its inverse, the gather: the routes of the map x (batch, D, h, w) (or its channels-last
    (batch, h, w, D) buffer) as rows ``out`` (batch, 4D, L') in x's type, padding as zeros.

``launch_es2d_conv_split(a, weight, bias, out=None, *, a2=None, stream=None) -> out``
    The gather of a map computed on the way: SiLU(depthwise 3x3 conv + bias) of the first D channels of
    the channels-last buffer a (batch, h, w, P), the SS2D layer's in_proj output; with a2 the CMFM's
    c1 * c2 + c1 + c2 of two such convs. The map is never stored: rows ``out`` (batch, 4D, L').

``launch_ln_pool(x, out=None, *, weight=None, bias=None, eps, with_raw=False, workspace=None, stream=None) -> out``
    The pooled LayerNorm of BiAttn (and ECA's pooled mean) in one pass over x (batch, ..., C): ``out``
    (batch, 1 + with_raw, C) in x's type holds the mean over the rows of LayerNorm(x) (with its weight and
    bias where given) and with ``with_raw`` the mean of x; the normalized map is never stored. Each block
    writes its share into ``workspace`` (``ln_pool_workspace_floats(shape, itemsize, sm_count, with_raw)``
    float32) and a second launch adds them in a fixed order: no atomics, calls repeat bitwise.

``launch_ldc_conv2d(x, weight, base_mask, learnable_mask, theta, out, *, stream=None) -> out``
    3x3 convolution, stride 1, padding 1, no bias, with the LDC weight transform
    (``fusion_edge.ops.ldc.ldc_effective_weight``) applied inside. x (batch, Cin, H, W),
    out (batch, Cout, H, W) in x's type; weight and base_mask (Cout, Cin, 3, 3),
    learnable_mask (Cout, Cin), theta (1,), float32.

Loader
------
``is_available() -> bool``; ``ensure_available()`` raises :class:`KernelError` naming what
is missing (cupy, a GPU, the CUDA driver/NVRTC). ``compile_ptx(family, arch) -> str``
returns PTX of a family ("selective_scan", "es2d", "ldc") for e.g. ``"sm_87"`` (NVRTC
through CuPy, else ``nvcc``), for ahead-of-time TensorRT plugins. ``kernel_source(family)``
gives the self-contained source; kernels are ``extern "C"`` so their names are stable.
The binary cache is CuPy's (``CUPY_CACHE_DIR``, default ``~/.cupy/kernel_cache``), keyed on
the full source, options and GPU architecture.
"""

from fusion_edge.kernels.arrays import DeviceArray
from fusion_edge.kernels.es2d_launch import (
    es2d_workspace_bytes,
    launch_es2d_conv_split,
    launch_es2d_merge,
    launch_es2d_merge_norm,
    launch_es2d_scan,
    launch_es2d_split,
)
from fusion_edge.kernels.ldc_launch import launch_ldc_conv2d
from fusion_edge.kernels.loader import (
    FAMILIES,
    KernelError,
    compile_ptx,
    ensure_available,
    is_available,
    kernel_names,
    kernel_source,
)
from fusion_edge.kernels.norm_launch import launch_ln_pool, ln_pool_workspace_floats
from fusion_edge.kernels.scan_bwd_launch import launch_selective_scan_bwd, selective_scan_bwd_workspace_bytes
from fusion_edge.kernels.scan_launch import launch_selective_scan, selective_scan_workspace_bytes

__all__ = [
    "FAMILIES",
    "DeviceArray",
    "KernelError",
    "compile_ptx",
    "ensure_available",
    "es2d_workspace_bytes",
    "is_available",
    "kernel_names",
    "kernel_source",
    "launch_es2d_conv_split",
    "launch_es2d_merge",
    "launch_es2d_merge_norm",
    "launch_es2d_scan",
    "launch_es2d_split",
    "launch_ldc_conv2d",
    "launch_ln_pool",
    "ln_pool_workspace_floats",
    "launch_selective_scan",
    "launch_selective_scan_bwd",
    "selective_scan_bwd_workspace_bytes",
    "selective_scan_workspace_bytes",
]
