"""Running a compiled kernel on a given device and stream, with arguments packed for CuPy."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from fusion_edge.kernels.arrays import DeviceArray, as_device_array, check, common_device
from fusion_edge.kernels.loader import ensure_available, get_kernel, import_cupy

_STREAMS: dict[tuple[int, int], Any] = {}


def ptr(arr: DeviceArray | None) -> np.uint64:
    return np.uint64(0 if arr is None else arr.ptr)


def addr(address: int) -> np.uint64:
    return np.uint64(address)


def i32(value: int) -> np.int32:
    if not -(2**31) <= value < 2**31:
        raise ValueError(f"size {value} does not fit the kernels' 32-bit arguments")
    return np.int32(value)


def current_device() -> int:
    return import_cupy().cuda.runtime.getDevice()


@functools.cache
def sm_count(device: int) -> int:
    return int(import_cupy().cuda.runtime.getDeviceProperties(device)["multiProcessorCount"])


def stream_object(stream: Any, device: int) -> Any:
    """A CuPy stream object for ``stream`` (CuPy stream, raw handle, torch stream or None)."""
    cupy = import_cupy()
    if stream is None:
        return cupy.cuda.get_current_stream()
    if isinstance(stream, (cupy.cuda.Stream, cupy.cuda.ExternalStream)):
        return stream
    handle = getattr(stream, "cuda_stream", stream)  # torch.cuda.Stream
    handle = getattr(handle, "ptr", handle)
    handle = int(handle)
    key = (handle, device)
    obj = _STREAMS.get(key)
    if obj is None:
        obj = cupy.cuda.ExternalStream(handle, device) if handle else cupy.cuda.Stream.null
        _STREAMS[key] = obj
    return obj


def run(family: str, name: str, grid, block, args: tuple, *, device: int | None, stream: Any) -> None:
    ensure_available()
    cupy = import_cupy()
    dev = current_device() if device is None else device
    kernel = get_kernel(family, name)
    with cupy.cuda.Device(dev):
        with stream_object(stream, dev):
            kernel(grid, block, args)


def memset_async(address: int, nbytes: int, *, device: int | None, stream: Any) -> None:
    cupy = import_cupy()
    dev = current_device() if device is None else device
    with cupy.cuda.Device(dev):
        cupy.cuda.runtime.memsetAsync(address, 0, nbytes, stream_object(stream, dev).ptr)


def alloc(nbytes: int, dtype: str, shape: tuple[int, ...], *, device: int | None, stream: Any):
    """A CuPy array from CuPy's pool, ordered on ``stream`` (so reuse waits for our launches)."""
    cupy = import_cupy()
    dev = current_device() if device is None else device
    np_dtype = {"float32": np.float32, "float16": np.float16, "uint8": np.uint8}.get(dtype)
    if np_dtype is None:
        raise ValueError(f"cannot allocate {dtype} with CuPy; pass `out` (e.g. a torch tensor or DeviceArray)")
    with cupy.cuda.Device(dev), stream_object(stream, dev):
        return cupy.empty(shape, dtype=np_dtype)


def checked_out(arrs: dict, out: Any, shape: tuple, dtype: str, stream: Any) -> tuple[Any, int | None]:
    """(the result, the device): ``out`` allocated when None, else checked as a ``shape`` ``dtype`` array, on
    the one GPU of the inputs ``arrs`` (where it is added as ``"out"``)."""
    arrs["out"] = None if out is None else as_device_array(out, "out")
    device = common_device(arrs)
    result = out
    if arrs["out"] is None:
        result = alloc(0, dtype, shape, device=device, stream=stream)
        arrs["out"] = as_device_array(result, "out")
    check(arrs["out"], "out", shape, (dtype,))
    return result, device
