"""Ahead-of-time plugins through TensorRT's decorator API (``tensorrt.plugin``, TensorRT 10.9+).

An AOT plugin hands TensorRT one kernel as PTX plus symbolic launch parameters; the PTX is
stored in the engine, so the engine runs without Python. TensorRT's AOT convention passes
kernel arguments as (input pointers..., extra scalars..., output pointers...), so each kernel
gets a thin entry point in that order around the device function of ``fusion_edge.kernels``.

Covered: ``FusionEdgeLDC`` (one kernel, no scratch memory). Not covered: ``FusionEdgeES2DScan``,
whose launcher runs three kernels over a workspace; an AOT plugin can launch only one kernel,
so engines with ES2D plugin nodes need the Python plugins of :mod:`fusion_edge.export.plugins`
(or use the portable flavour, whose engines need no plugins at all).

Register either these or the Python ``IPluginV3`` creators for a plugin name, not both.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import Any

from .contract import LDC_OP, PLUGIN_NAMESPACE

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


def ldc_aot_source() -> str:
    """The LDC kernel family's source with the AOT entry point appended (no other entry points)."""
    from fusion_edge import kernels

    return kernels.kernel_source("ldc") + LDC_AOT_ENTRY


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


def _default_arch() -> int:
    try:
        from fusion_edge.kernels import launch

        cupy = __import__("cupy")
        major, minor = cupy.cuda.Device(launch.current_device()).compute_capability
        return int(f"{major}{minor}")
    except Exception:
        return DEFAULT_AOT_ARCH


_REGISTERED: set[str] = set()


def register_aot(arch: int | str | None = None) -> list[str]:
    """Register the AOT plugins with ``tensorrt.plugin``; returns their ids ("namespace::name").

    Raises ImportError when this TensorRT has no decorator API (it arrived in TensorRT 10.7,
    AOT implementations in 10.9; TensorRT for RTX wheels do not ship it).
    """
    try:
        import tensorrt as trt
        import tensorrt.plugin as trtp
    except ImportError as exc:
        raise ImportError(
            f"AOT plugins need TensorRT 10.9 or newer with its tensorrt.plugin module ({exc})"
        ) from exc
    if not hasattr(trtp, "aot_impl"):
        raise ImportError(f"this TensorRT ({trt.__version__}) has tensorrt.plugin but no aot_impl: use 10.9 or newer")
    ldc_id = f"{PLUGIN_NAMESPACE}::{LDC_OP}"
    if ldc_id in _REGISTERED:
        return sorted(_REGISTERED)
    ptx = compile_aot_ptx(ldc_aot_source(), arch if arch is not None else _default_arch(), "fe_ldc_aot")

    @trtp.register(ldc_id)
    def ldc_desc(x: trtp.TensorDesc, weight: trtp.TensorDesc, base_mask: trtp.TensorDesc,
                 learnable_mask: trtp.TensorDesc, theta: trtp.TensorDesc) -> trtp.TensorDesc:
        out = x.like()
        out.shape_expr[1] = weight.shape_expr[0]
        return out

    @trtp.aot_impl(ldc_id)
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

    _REGISTERED.add(ldc_id)
    return sorted(_REGISTERED)
