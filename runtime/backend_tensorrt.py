"""TensorRT backend: a serialized engine run on a CUDA stream with device pointers.

Works with full TensorRT (``tensorrt``, JetPack and desktop installs) and TensorRT for RTX
(``tensorrt_rtx``; ``tensorrt_rtx_bindings`` when only its PyPI wheels are installed), which
share the tensor-name API used here. Our custom-op plugins are registered before the engine
is deserialized, since an engine built with them cannot load without them.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

import numpy as np
from fusion_edge.runtime.arrays import follow_callers_stream, require_cupy, to_device
from fusion_edge.runtime.engines import INPUT_NAMES, OUTPUT_NAME, Backend, check_io_names

log = logging.getLogger(__name__)

TENSORRT_MODULES = ("tensorrt", "tensorrt_rtx", "tensorrt_rtx_bindings")


def find_tensorrt():
    """The first TensorRT flavour that imports, or None."""
    for name in TENSORRT_MODULES:
        try:
            return importlib.import_module(name)
        except Exception:  # ImportError, or libraries missing behind the bindings
            continue
    return None


def register_plugins(trt, logger) -> str:
    """Register TensorRT's own plugins and ours; returns a note for error messages."""
    init = getattr(trt, "init_libnvinfer_plugins", None)
    if init is not None:
        try:
            init(logger, "")
        except Exception as exc:  # TensorRT-RTX has no plugin library
            log.debug("init_libnvinfer_plugins: %s", exc)
    try:
        plugins = importlib.import_module("fusion_edge.export.plugins")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("fusion_edge"):
            return "this build has no fusion_edge.export.plugins module, so no custom plugins are registered"
        return f"our TensorRT plugins could not be imported (missing {exc.name}); engines using them will not load"
    except ImportError as exc:
        return f"our TensorRT plugins could not be imported ({exc}); engines using them will not load"
    try:
        try:
            plugins.register(trt)
        except TypeError:  # a register() that finds TensorRT itself
            plugins.register()
    except Exception as exc:
        return f"registering our TensorRT plugins failed ({exc}); engines using them will not load"
    return "our TensorRT plugins are registered"


class TensorRTBackend(Backend):
    def __init__(self, path: Path, *, device_id: int = 0) -> None:
        trt = find_tensorrt()
        if trt is None:
            raise ImportError(
                f"{Path(path).name} is a TensorRT engine but no TensorRT Python module imports here "
                f"(tried {', '.join(TENSORRT_MODULES)}); install TensorRT (JetPack ships it) or run the .onnx "
                "model with --backend ort"
            )
        cupy = require_cupy("the TensorRT backend (device buffers and a CUDA stream)")
        cupy.cuda.Device(device_id).use()
        self._trt, self._cupy = trt, cupy
        self.path = Path(path)
        self.device_id = device_id
        self.on_gpu = True
        self._logger = trt.Logger(trt.Logger.WARNING)
        plugin_note = register_plugins(trt, self._logger)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise RuntimeError(
                f"TensorRT ({trt.__name__} {getattr(trt, '__version__', '?')}) could not load {self.path.name}: "
                f"engines only load with the TensorRT version and GPU family they were built for; {plugin_note}"
            )
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        check_io_names(inputs, [n for n in names if n not in inputs], self.path)
        self._dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in (*INPUT_NAMES, OUTPUT_NAME)}
        shape = tuple(self.engine.get_tensor_shape("vis"))
        self.input_hw = tuple(int(d) if d >= 0 else None for d in shape[-2:])
        self.stream = cupy.cuda.Stream(non_blocking=True)
        self.name = f"{trt.__name__} {getattr(trt, '__version__', '')}".strip()

    def infer(self, vis, ir):
        cupy = self._cupy
        follow_callers_stream(cupy, self.stream)
        with self.stream:
            arrays = {}
            for name, x in (("vis", vis), ("ir", ir)):
                a = to_device(x)
                if a.ndim != 4 or a.shape[1] != 1:
                    raise ValueError(f"{name} batch must be (B, 1, H, W), got shape {tuple(a.shape)}")
                arrays[name] = cupy.ascontiguousarray(a, dtype=self._dtypes[name])
            for name, a in arrays.items():
                if not self.context.set_input_shape(name, tuple(a.shape)):
                    raise ValueError(f"engine {self.path.name} does not accept {name} of shape {tuple(a.shape)} "
                                     f"(its profile range is fixed when the engine is built)")
                self.context.set_tensor_address(name, a.data.ptr)
            out_shape = tuple(self.context.get_tensor_shape(OUTPUT_NAME))
            out = cupy.empty(out_shape, dtype=self._dtypes[OUTPUT_NAME])
            self.context.set_tensor_address(OUTPUT_NAME, out.data.ptr)
            if not self.context.execute_async_v3(self.stream.ptr):
                raise RuntimeError(f"TensorRT failed to enqueue {self.path.name}")
            # Keep the inputs alive until the stream has consumed them.
            self._inflight = arrays
            return out if out.dtype == cupy.float32 else out.astype(cupy.float32)

    def close(self) -> None:
        self.context = None
        self.engine = None
