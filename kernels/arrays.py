"""Uniform view of the arrays the launchers receive: pointer, shape, element type, device.

Accepts CuPy arrays, CUDA torch tensors (through ``data_ptr()``, so bfloat16 works and
torch is never imported here), objects with ``__cuda_array_interface__`` and
:class:`DeviceArray` for raw pointers (TensorRT plugins).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

ITEMSIZE = {"float32": 4, "float16": 2, "bfloat16": 2}
TYPE_CODE = {"float32": "f32", "float16": "f16", "bfloat16": "bf16"}
_TYPESTR = {"<f4": "float32", "<f2": "float16", "|u1": "uint8", "<u2": "uint16"}


class DeviceArray(NamedTuple):
    """A C-contiguous buffer in GPU memory that the caller owns."""

    ptr: int
    shape: tuple[int, ...]
    dtype: str
    device: int | None = None

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * ITEMSIZE.get(self.dtype, 1)


def _contiguous_strides(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    strides, step = [], itemsize
    for n in reversed(shape):
        strides.append(step)
        step *= max(n, 1)
    return tuple(reversed(strides))


def as_device_array(obj: Any, name: str) -> DeviceArray:
    """Describe ``obj`` as a DeviceArray; ValueError/TypeError naming ``name`` if it cannot be one."""
    if isinstance(obj, DeviceArray):
        if obj.dtype not in ITEMSIZE and obj.dtype not in ("uint8", "uint16"):
            raise ValueError(f"{name}: unsupported element type {obj.dtype!r}")
        return DeviceArray(int(obj.ptr), tuple(int(n) for n in obj.shape), obj.dtype, obj.device)
    if hasattr(obj, "data_ptr") and hasattr(obj, "is_contiguous") and hasattr(obj, "is_cuda"):  # torch
        if not obj.is_cuda:
            raise ValueError(f"{name} must be a CUDA tensor, got one on {obj.device}")
        if not obj.is_contiguous():
            raise ValueError(f"{name} must be contiguous")
        dtype = str(obj.dtype).replace("torch.", "")
        return DeviceArray(obj.data_ptr(), tuple(obj.shape), dtype, obj.device.index)
    cai = getattr(obj, "__cuda_array_interface__", None)
    if cai is None:
        raise TypeError(
            f"{name}: expected a CuPy array, a CUDA torch tensor or a DeviceArray, got {type(obj).__name__}"
        )
    dtype = _TYPESTR.get(cai["typestr"])
    if dtype is None:
        raise ValueError(f"{name}: unsupported element type {cai['typestr']!r} (float32, float16 or bfloat16)")
    shape = tuple(int(n) for n in cai["shape"])
    strides = cai.get("strides")
    if strides is not None and math.prod(shape) > 1:
        wanted = _contiguous_strides(shape, ITEMSIZE.get(dtype, 1))
        if any(s != w for s, w, n in zip(strides, wanted, shape) if n > 1):
            raise ValueError(f"{name} must be C-contiguous")
    device = getattr(getattr(obj, "device", None), "id", None)
    return DeviceArray(int(cai["data"][0]), shape, dtype, device)


def check(arr: DeviceArray, name: str, shape: tuple[int, ...], dtypes: tuple[str, ...]) -> None:
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
    if arr.dtype not in dtypes:
        raise ValueError(f"{name} must be {' or '.join(dtypes)}, got {arr.dtype}")


def common_device(arrays: dict[str, DeviceArray | None]) -> int | None:
    devices = {a.device for a in arrays.values() if a is not None and a.device is not None}
    if len(devices) > 1:
        raise ValueError(f"all arrays must be on one GPU, got devices {sorted(devices)}")
    return devices.pop() if devices else None
