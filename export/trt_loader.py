"""Find a TensorRT Python module: full TensorRT first, else TensorRT for RTX.

Both expose the same builder, parser and plugin classes. TensorRT for RTX installs from PyPI
on any x86-64 machine and builds engines ahead of time without a GPU, which is how our CI
checks exported graphs; full TensorRT is what Jetson (JetPack) and data-centre GPUs run.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# Import names in order of preference. ``tensorrt_rtx_bindings`` is the module that the
# tensorrt-rtx-cu13-bindings + -libs wheels provide on their own (without the meta package).
CANDIDATES = ("tensorrt", "tensorrt_rtx", "tensorrt_rtx_bindings")

INSTALL_HINT = (
    "install TensorRT: on Jetson it comes with JetPack (python3-libnvinfer); on x86-64 with an NVIDIA "
    "GPU `pip install tensorrt`; or TensorRT for RTX, which also builds engines on machines without a "
    "GPU: `pip install tensorrt-rtx-cu13` (or `pip install fusion-edge[trt-rtx]`)"
)


def _try_import(name: str) -> tuple[ModuleType | None, str | None]:
    try:
        module = importlib.import_module(name)
    except (ImportError, OSError) as exc:  # OSError: bindings present but shared libraries missing
        return None, f"{name}: {exc}"
    if not hasattr(module, "Builder"):  # e.g. the PyPI placeholder package of full TensorRT
        return None, f"{name}: imported but has no Builder (incomplete install)"
    return module, None


def import_tensorrt(prefer: str | None = None) -> ModuleType:
    """Return the first importable TensorRT module (``prefer`` names one to try first).

    Raises ImportError saying what to install when none is usable.
    """
    order = list(CANDIDATES)
    if prefer is not None:
        if prefer not in CANDIDATES:
            raise ValueError(f"unknown TensorRT module {prefer!r}; known: {', '.join(CANDIDATES)}")
        order.remove(prefer)
        order.insert(0, prefer)
    reasons = []
    for name in order:
        module, reason = _try_import(name)
        if module is not None:
            return module
        reasons.append(reason)
    raise ImportError(f"no usable TensorRT Python module ({'; '.join(reasons)}). To build engines, {INSTALL_HINT}")


def is_rtx(trt: ModuleType) -> bool:
    """True for TensorRT for RTX (strongly typed networks, no FP16 builder flag, no add_plugin_v3)."""
    return trt.__name__.startswith("tensorrt_rtx")


def available() -> bool:
    try:
        import_tensorrt()
    except ImportError:
        return False
    return True
