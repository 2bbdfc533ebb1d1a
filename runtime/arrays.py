"""Where an image lives (host or GPU) and how to move it there without surprises.

Frames reach the runtime as numpy arrays from OpenCV, or as GPU arrays from an app
(CuPy, PyTorch, anything with DLPack). GPU arrays stay on the GPU: they are wrapped as
CuPy views (zero copy), never bounced through host memory.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# DLPack device types (dlpack.h): memory a CUDA kernel can read directly.
_DLPACK_CUDA = 2
_DLPACK_CUDA_MANAGED = 13
_DLPACK_CPU = 1
_DLPACK_CUDA_HOST = 3


def cupy_or_none():
    """The CuPy module if it is installed and imports, else None (no error: GPU is optional)."""
    try:
        import cupy
    except Exception:  # ImportError, or a CUDA library that fails to load
        return None
    return cupy


def require_cupy(why: str):
    """Import CuPy or raise an ImportError that says what needed it and how to install it."""
    cupy = cupy_or_none()
    if cupy is None:
        raise ImportError(
            f"{why} needs CuPy; install the build matching your CUDA, e.g. `pip install cupy-cuda12x` "
            "(or `pip install fusion-edge[gpu]`)"
        )
    return cupy


def is_device_array(x: Any) -> bool:
    """True for arrays in GPU memory (CuPy, CUDA torch tensors, DLPack CUDA producers)."""
    if isinstance(x, np.ndarray):
        return False
    if hasattr(x, "__cuda_array_interface__"):
        return True
    device = getattr(x, "__dlpack_device__", None)
    if device is not None:
        try:
            kind = int(device()[0])
        except Exception:
            return False
        return kind in (_DLPACK_CUDA, _DLPACK_CUDA_MANAGED)
    return False


def is_array(x: Any) -> bool:
    """Anything the runtime can treat as an image array."""
    return isinstance(x, np.ndarray) or is_device_array(x) or hasattr(x, "__dlpack__") or hasattr(
        x, "__array_interface__"
    )


def to_device(x: Any):
    """A CuPy array for ``x``: zero-copy for GPU arrays, one upload for host arrays."""
    cupy = require_cupy("putting frames on the GPU")
    if isinstance(x, cupy.ndarray):
        return x
    if hasattr(x, "__cuda_array_interface__"):
        return cupy.asarray(x)
    if is_device_array(x):
        return cupy.from_dlpack(x)
    return cupy.asarray(to_host(x))


def to_host(x: Any) -> np.ndarray:
    """A numpy array for ``x``: free for host arrays, one download for GPU arrays."""
    if isinstance(x, np.ndarray):
        return x
    if is_device_array(x):
        cupy = require_cupy("reading a GPU array back to the host")
        return cupy.asnumpy(to_device(x))
    if hasattr(x, "__dlpack__"):
        try:
            return np.from_dlpack(x)
        except Exception:
            pass
    return np.asarray(x)


def follow_callers_stream(cupy, stream) -> None:
    """Order ``stream`` after the work already queued on the caller's current stream.

    GPU frames from an app were produced on its stream (CuPy's current one, the legacy default
    stream unless it chose another); our non-blocking stream does not wait for that stream by
    itself, so without this an upload still in flight could be read half-written.
    """
    caller = cupy.cuda.get_current_stream()
    if caller.ptr != stream.ptr:
        stream.wait_event(caller.record())


def array_module(x: Any):
    """numpy for host arrays, cupy for GPU arrays (the ``xp`` of array-API code)."""
    if is_device_array(x):
        return require_cupy("GPU arrays")
    return np
