"""Compile the CUDA sources for the GPU at hand (NVRTC through CuPy) and hand out kernels.

Sources are assembled into one self-contained text (local ``#include "..."`` inlined) so
CuPy's on-disk cache, keyed on the text, options and architecture, never serves a stale
binary after a header changed. Each entry point is compiled on first use only
(``-DFE_ONLY_<name>``); ``-DFE_ALL_KERNELS`` builds all of a family (PTX for TensorRT).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

KERNEL_DIR = Path(__file__).resolve().parent

# family -> the .cu file that holds its entry points
FAMILIES: dict[str, str] = {
    "selective_scan": "selective_scan/selective_scan_fwd.cu",
    "selective_scan_bwd": "selective_scan/selective_scan_bwd.cu",
    "es2d": "es2d/es2d_fwd.cu",
    "ldc": "ldc/ldc_conv2d.cu",
    "norm": "norm/ln_pool.cu",
}

COMPILE_OPTIONS: tuple[str, ...] = ("--std=c++17",)

_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"\s*$')
_ENTRY = re.compile(r"FE_ONLY_(\w+)\)")


class KernelError(RuntimeError):
    """The kernels cannot run here: CuPy, a GPU, the CUDA driver or NVRTC is missing, or a build failed."""


def family_path(family: str) -> Path:
    if family not in FAMILIES:
        raise ValueError(f"unknown kernel family {family!r}; known: {', '.join(FAMILIES)}")
    return KERNEL_DIR / FAMILIES[family]


def _inline(path: Path, seen: set[Path]) -> list[str]:
    out: list[str] = []
    for line in path.read_text().splitlines():
        if line.strip() == "#pragma once":
            continue
        match = _INCLUDE.match(line)
        if match:
            target = (path.parent / match.group(1)).resolve()
            if target not in seen:
                seen.add(target)
                out.extend(_inline(target, seen))
            continue
        out.append(line)
    return out


@functools.cache
def kernel_source(family: str) -> str:
    """The family's source with its local headers inlined: one text that NVRTC or nvcc compiles alone."""
    path = family_path(family)
    return "\n".join(_inline(path, {path.resolve()})) + "\n"


@functools.cache
def kernel_names(family: str) -> tuple[str, ...]:
    """The extern "C" entry points of a family."""
    return tuple(dict.fromkeys(_ENTRY.findall(kernel_source(family))))


def import_cupy() -> Any:
    try:
        import cupy
    except ImportError as exc:
        raise KernelError(
            "CuPy is not installed, so the CUDA kernels cannot be compiled or launched: "
            "install the CuPy build for your CUDA version, e.g. `pip install cupy-cuda12x` "
            "(or `cupy-cuda13x`; on Jetson, the JetPack wheel)"
        ) from exc
    return cupy


@functools.cache
def _check_device() -> None:
    cupy = import_cupy()
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError: no driver, or no device
        raise KernelError(f"no usable CUDA GPU: the CUDA driver/runtime reported: {exc}") from exc
    if count < 1:
        raise KernelError("no CUDA GPU is visible (CUDA_VISIBLE_DEVICES may hide them)")
    try:
        _nvrtc_module(cupy).getVersion()
    except Exception as exc:
        raise KernelError(
            f"NVRTC, CUDA's runtime compiler, could not be loaded ({exc}); "
            "install the CUDA runtime libraries that match your CuPy build"
        ) from exc


def ensure_available() -> None:
    """Raise :class:`KernelError` saying what is missing, or return when kernels can run."""
    try:
        _check_device()
    except KernelError:
        _check_device.cache_clear()
        raise


def is_available() -> bool:
    try:
        ensure_available()
    except KernelError:
        return False
    return True


def _nvrtc_module(cupy: Any) -> Any:
    try:
        from cupy_backends.cuda.libs import nvrtc
    except ImportError:
        nvrtc = cupy.cuda.nvrtc
    return nvrtc


_KERNELS: dict[tuple[str, str], Any] = {}


def get_kernel(family: str, name: str) -> Any:
    """The ``cupy.RawKernel`` of one entry point (compiled at first launch on each device)."""
    key = (family, name)
    kernel = _KERNELS.get(key)
    if kernel is None:
        if name not in kernel_names(family):
            raise ValueError(f"{family} has no kernel {name!r}")
        ensure_available()
        cupy = import_cupy()
        module = cupy.RawModule(code=kernel_source(family), options=COMPILE_OPTIONS + (f"-DFE_ONLY_{name}",))
        try:
            kernel = module.get_function(name)
        except cupy.cuda.compiler.CompileException as exc:
            raise KernelError(f"NVRTC failed to compile {name}:\n{exc}") from exc
        _KERNELS[key] = kernel
    return kernel


def normalize_arch(arch: str | int) -> int:
    """"sm_87", "compute_87", "87", 87 or "8.7" -> 87."""
    text = str(arch).strip().lower()
    for prefix in ("sm_", "compute_", "sm", "compute"):
        if text.startswith(prefix):
            text = text[len(prefix):]
            break
    text = text.replace(".", "")
    if not text.isdigit() or not 50 <= int(text) < 1000:
        raise ValueError(f"not a GPU architecture: {arch!r} (expected e.g. 'sm_87')")
    return int(text)


def find_nvcc() -> str | None:
    found = shutil.which("nvcc")
    if found:
        return found
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home and (Path(home) / "bin" / "nvcc").is_file():
            return str(Path(home) / "bin" / "nvcc")
    return None


def compile_ptx(family: str, arch: str | int) -> str:
    """PTX of every entry point of ``family`` for ``arch`` (NVRTC through CuPy, else nvcc)."""
    cc = normalize_arch(arch)
    source = kernel_source(family)
    options = COMPILE_OPTIONS + ("-DFE_ALL_KERNELS", f"--gpu-architecture=compute_{cc}")
    try:
        cupy = import_cupy()
        nvrtc = _nvrtc_module(cupy)
        nvrtc.getVersion()
    except Exception:
        nvrtc = None
    if nvrtc is not None:
        prog = nvrtc.createProgram(source, f"{family}.cu", (), ())
        try:
            try:
                nvrtc.compileProgram(prog, list(options))
            except Exception as exc:
                log = nvrtc.getProgramLog(prog)
                raise KernelError(f"NVRTC failed to compile {family} for compute_{cc}:\n{log}") from exc
            ptx = nvrtc.getPTX(prog)
        finally:
            nvrtc.destroyProgram(prog)
        if isinstance(ptx, bytes):
            ptx = ptx.decode()
        return ptx.rstrip("\x00")
    nvcc = find_nvcc()
    if nvcc is None:
        raise KernelError("producing PTX needs NVRTC (through CuPy) or nvcc; neither was found")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / f"{family}.cu"
        src.write_text(source)
        dst = Path(tmp) / f"{family}.ptx"
        cmd = [nvcc, "-ptx", "-std=c++17", "-DFE_ALL_KERNELS", f"-arch=compute_{cc}", "-o", str(dst), str(src)]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise KernelError(f"nvcc failed to compile {family} for compute_{cc}:\n{result.stderr}")
        return dst.read_text()
