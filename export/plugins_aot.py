"""Ahead-of-time plugins through TensorRT's decorator API (``tensorrt.plugin``, TensorRT 10.9+).

An AOT plugin hands TensorRT one kernel as PTX plus symbolic launch parameters; the PTX is
stored in the engine, so the engine runs without Python. TensorRT's AOT convention passes
kernel arguments as (input pointers..., extra scalars..., output pointers...), so each kernel
gets a thin entry point in that order around the device function of ``fusion_edge.kernels``.

Covered:
- ``FusionEdgeLDC``: the LDC kernel (one launch, no scratch memory).
- ``FusionEdgeSelectiveScan`` (plugin flavour exported with ``scan_node="selective_scan"``): the
  selective-scan kernel with the sequence scanned in one piece (``n_chunks == 1``, the
  launcher's unsplit plan), which is one launch without scratch memory. B and C are read with
  scalar loads (TensorRT does not promise the 16-byte alignment the vector path needs).

Not covered: ``FusionEdgeES2DScan``, whose launcher runs three kernels over a workspace; an AOT
plugin can launch only one kernel. Export with ``scan_node="selective_scan"`` (the route gather,
projections and scatter become standard ops) for an engine that runs without Python.

Register either these or the Python ``IPluginV3`` creators for a plugin name, not both.
"""

from __future__ import annotations

import functools
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from .contract import LDC_OP, PLUGIN_NAMESPACE, SCAN_OP

LDC_AOT_KERNEL = "fe_ldc_conv2d_trt_aot_f32"
# TensorRT's AOT argument order around the LDC device function fe::ldc::conv<T>.
LDC_AOT_ENTRY = f"""
extern "C" __global__ void __launch_bounds__(128) {LDC_AOT_KERNEL}(
    const float* x, const float* weight, const float* base_mask, const float* learnable_mask,
    const float* theta, int batch, int cin, int cout, int H, int W, float* out) {{
    fe::ldc::conv<float>(x, weight, base_mask, learnable_mask, theta, out, batch, cin, cout, H, W);
}}
"""
DEFAULT_AOT_ARCH = 75  # oldest target of CUDA 13 (and AOT plugins need TensorRT 10.9+, not on Xavier); PTX JITs forward

# The selective scan in TensorRT's AOT argument order around fe::scan::scan_warp (the split core of
# kernels/selective_scan/scan_core.cuh, as the launcher's FE_SCAN_ENTRY uses it), with the state
# count and softplus fixed at compile time and the sequence in one chunk.
_SCAN_AOT_ENTRY = """
extern "C" __global__ void __launch_bounds__(fe::scan::kMaxWarps * 32, {spl} <= 2 ? 4 : 2) {name}(
    const float* u, const float* delta, const float* A, const float* B, const float* C, const float* D,
    const float* delta_bias, int batch, int dim, int L, int groups, int chunk_len, float* out) {{
    __shared__ fe::scan::WarpSmem<{lpc}, fe::scan::Tiling<{lpc}, {spl}, float>::TL> smem[fe::scan::kMaxWarps];
    fe::scan::Params p;
    p.u = u; p.delta = delta; p.A = A; p.B = B; p.C = C; p.D = D; p.z = nullptr;
    p.delta_bias = delta_bias; p.out = out; p.states = nullptr; p.dsums = nullptr;
    p.batch = batch; p.dim = dim; p.L = L; p.N = {n_states}; p.groups = groups;
    p.softplus = {softplus}; p.vec_bc = 0; p.a_is_log = 0;
    p.chunk_len = chunk_len; p.n_chunks = 1;
    p.dim_route = 0; p.h = 0; p.w = 0; p.h2 = 0; p.w2 = 0; p.proj_rows = 0; p.dt_rank = 0;
    fe::scan::scan_warp<float, float, float, {lpc}, {spl}, false, false>(p, reinterpret_cast<char*>(smem));
}}
"""


def ldc_aot_source() -> str:
    """The LDC kernel family's source with the AOT entry point appended (no other entry points)."""
    from fusion_edge import kernels

    return kernels.kernel_source("ldc") + LDC_AOT_ENTRY


def scan_aot_kernel_name(n_states: int, delta_softplus: bool = True) -> str:
    return f"fe_selective_scan_trt_aot_f32_n{int(n_states)}_sp{int(bool(delta_softplus))}"


def scan_aot_source(n_states: int, delta_softplus: bool = True) -> str:
    """The selective-scan family's source with one AOT entry point for ``n_states`` appended."""
    from fusion_edge.kernels.launch_params import SCAN_MAX_STATES, scan_layout

    from fusion_edge import kernels

    if not 1 <= int(n_states) <= SCAN_MAX_STATES:
        raise ValueError(f"{SCAN_OP}: d_state {n_states} is outside the kernel's 1..{SCAN_MAX_STATES}")
    lanes, per_lane = scan_layout(int(n_states))
    entry = _SCAN_AOT_ENTRY.format(name=scan_aot_kernel_name(n_states, delta_softplus), lpc=lanes, spl=per_lane,
                                   n_states=int(n_states), softplus=int(bool(delta_softplus)))
    return kernels.kernel_source("selective_scan") + entry


@functools.cache
def scan_aot_ptx(n_states: int, delta_softplus: bool = True, arch: int | str = DEFAULT_AOT_ARCH) -> str:
    """PTX of the AOT scan entry (cached per state count, softplus and architecture)."""
    return compile_aot_ptx(scan_aot_source(n_states, delta_softplus), arch, scan_aot_kernel_name(n_states,
                                                                                                  delta_softplus))


def compile_aot_ptx(source: str, arch: int | str = DEFAULT_AOT_ARCH, name: str = "fusion_edge_aot") -> str:
    """PTX of ``source`` for ``arch``: NVRTC through CuPy when present, else nvcc."""
    from fusion_edge.kernels import loader

    cc = loader.normalize_arch(arch)
    try:
        cupy = loader.import_cupy()
        nvrtc = loader._nvrtc_module(cupy)
        nvrtc.getVersion()
    except Exception:
        nvrtc = None
    if nvrtc is not None:
        prog = nvrtc.createProgram(source, f"{name}.cu", (), ())
        try:
            try:
                nvrtc.compileProgram(prog, [*loader.COMPILE_OPTIONS, f"--gpu-architecture=compute_{cc}"])
            except Exception as exc:
                raise loader.KernelError(f"NVRTC failed on {name}:\n{nvrtc.getProgramLog(prog)}") from exc
            ptx = nvrtc.getPTX(prog)
        finally:
            nvrtc.destroyProgram(prog)
        return (ptx.decode() if isinstance(ptx, bytes) else ptx).rstrip("\x00")
    nvcc = loader.find_nvcc()
    if nvcc is None:
        raise loader.KernelError("AOT plugins need NVRTC (through CuPy) or nvcc to produce PTX; neither was found")
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / f"{name}.cu", Path(tmp) / f"{name}.ptx"
        src.write_text(source)
        cmd = [nvcc, "-ptx", "-std=c++17", f"-arch=compute_{cc}", "-o", str(dst), str(src)]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise loader.KernelError(f"nvcc failed on {name}:\n{result.stderr}")
        return dst.read_text()


def ldc_launch_geometry(batch: Any, cout: Any, height: Any, width: Any) -> tuple[tuple, tuple]:
    """Grid and block of the LDC kernel; works on ints and on TensorRT's symbolic shape expressions."""
    from fusion_edge.kernels.launch_params import LDC_OUT, LDC_THREADS, LDC_TILE_H, LDC_TILE_W

    grid = ((width + LDC_TILE_W - 1) // LDC_TILE_W, (height + LDC_TILE_H - 1) // LDC_TILE_H,
            batch * ((cout + LDC_OUT - 1) // LDC_OUT))
    return grid, (LDC_THREADS, 1, 1)


def scan_launch_geometry(batch: Any, dim: Any, length: Any, groups: Any, n_states: int) -> tuple[tuple, tuple, tuple]:
    """(grid, block, scalar arguments) of the AOT scan entry, as ``launch_params.scan_grid`` lays out one
    chunk; works on ints and on TensorRT's symbolic shape expressions. Scalars: batch, dim, L, groups,
    chunk_len (L rounded up to whole tiles)."""
    from fusion_edge.kernels.launch_params import SCAN_CHUNK_ALIGN, SCAN_WARPS_PER_BLOCK, scan_layout

    lanes, _ = scan_layout(int(n_states))
    per_block = (32 // lanes) * SCAN_WARPS_PER_BLOCK
    channels = batch * dim
    grid = ((channels + per_block - 1) // per_block, 1, 1)
    chunk_len = (length + SCAN_CHUNK_ALIGN - 1) // SCAN_CHUNK_ALIGN * SCAN_CHUNK_ALIGN
    return grid, (32 * SCAN_WARPS_PER_BLOCK, 1, 1), (batch, dim, length, groups, chunk_len)


def _default_arch() -> int:
    try:
        from fusion_edge.kernels import launch

        cupy = __import__("cupy")
        return int(cupy.cuda.Device(launch.current_device()).compute_capability)  # "87", "120"
    except Exception:
        return DEFAULT_AOT_ARCH


_REGISTERED: set[str] = set()


def import_decorator_api():
    """(tensorrt, tensorrt.plugin), or ImportError saying which TensorRT the AOT plugins need."""
    try:
        import tensorrt as trt
        import tensorrt.plugin as trtp
    except ImportError as exc:
        raise ImportError(
            f"AOT plugins need TensorRT 10.9 or newer with its tensorrt.plugin module ({exc})"
        ) from exc
    if not hasattr(trtp, "aot_impl"):
        raise ImportError(f"this TensorRT ({trt.__version__}) has tensorrt.plugin but no aot_impl: use 10.9 or newer")
    return trt, trtp


def register_aot(arch: int | str | None = None) -> list[str]:
    """Register the AOT plugins with ``tensorrt.plugin``; returns their ids ("namespace::name").

    Raises ImportError when this TensorRT has no decorator API (it arrived in TensorRT 10.7,
    AOT implementations in 10.9; TensorRT for RTX wheels do not ship it).
    """
    _, trtp = import_decorator_api()
    arch = arch if arch is not None else _default_arch()
    ldc_id, scan_id = f"{PLUGIN_NAMESPACE}::{LDC_OP}", f"{PLUGIN_NAMESPACE}::{SCAN_OP}"
    if ldc_id not in _REGISTERED:
        _register_ldc(trtp, ldc_id, compile_aot_ptx(ldc_aot_source(), arch, "fe_ldc_aot"))
        _REGISTERED.add(ldc_id)
    if scan_id not in _REGISTERED:
        _register_scan(trtp, scan_id, arch)
        _REGISTERED.add(scan_id)
    return sorted(_REGISTERED)


def _register_ldc(trtp, plugin_id: str, ptx: str) -> None:
    @trtp.register(plugin_id)
    def ldc_desc(x: trtp.TensorDesc, weight: trtp.TensorDesc, base_mask: trtp.TensorDesc,
                 learnable_mask: trtp.TensorDesc, theta: trtp.TensorDesc) -> trtp.TensorDesc:
        out = x.like()
        out.shape_expr[1] = weight.shape_expr[0]
        return out

    @trtp.aot_impl(plugin_id)
    def ldc_aot(x: trtp.TensorDesc, weight: trtp.TensorDesc, base_mask: trtp.TensorDesc,
                learnable_mask: trtp.TensorDesc, theta: trtp.TensorDesc, outputs: tuple[trtp.TensorDesc],
                tactic: int) -> tuple[str | bytes, str | bytes, trtp.KernelLaunchParams, trtp.SymExprs]:
        batch, cin, height, width = (x.shape_expr[i] for i in range(4))
        cout = weight.shape_expr[0]
        (gx, gy, gz), (bx, _, _) = ldc_launch_geometry(batch, cout, height, width)
        params = trtp.KernelLaunchParams()
        params.grid_x, params.grid_y, params.grid_z = gx, gy, gz
        params.block_x = bx
        params.shared_mem = 0  # the kernel's shared memory is static
        extra = trtp.SymIntExprs(5)
        for i, value in enumerate((batch, cin, cout, height, width)):
            extra[i] = trtp.SymInt32(value)
        return LDC_AOT_KERNEL, ptx, params, extra


def _register_scan(trtp, plugin_id: str, arch: int | str) -> None:
    @trtp.register(plugin_id)
    def scan_desc(u: trtp.TensorDesc, delta: trtp.TensorDesc, A: trtp.TensorDesc, B: trtp.TensorDesc,
                  C: trtp.TensorDesc, D: trtp.TensorDesc, delta_bias: trtp.TensorDesc, d_state: int,
                  delta_softplus: int) -> trtp.TensorDesc:
        return u.like()

    @trtp.aot_impl(plugin_id)
    def scan_aot(u: trtp.TensorDesc, delta: trtp.TensorDesc, A: trtp.TensorDesc, B: trtp.TensorDesc,
                 C: trtp.TensorDesc, D: trtp.TensorDesc, delta_bias: trtp.TensorDesc, d_state: int,
                 delta_softplus: int, outputs: tuple[trtp.TensorDesc],
                 tactic: int) -> tuple[str | bytes, str | bytes, trtp.KernelLaunchParams, trtp.SymExprs]:
        batch, dim, length = (u.shape_expr[i] for i in range(3))
        (gx, _, _), (bx, _, _), scalars = scan_launch_geometry(batch, dim, length, B.shape_expr[1], d_state)
        params = trtp.KernelLaunchParams()
        params.grid_x = gx
        params.block_x = bx
        params.shared_mem = 0  # the kernel's shared memory is static
        extra = trtp.SymIntExprs(len(scalars))
        for i, value in enumerate(scalars):
            extra[i] = trtp.SymInt32(value)
        ptx = scan_aot_ptx(int(d_state), bool(delta_softplus), arch)
        return scan_aot_kernel_name(d_state, bool(delta_softplus)), ptx, params, extra
