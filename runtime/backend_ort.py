"""ONNX Runtime backend: TensorRT, CUDA, then CPU execution providers, as installed.

On a GPU provider, inputs and the output are bound as device pointers (I/O binding), so
CuPy / DLPack frames are fused without a trip through host memory.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import logging
import os
import sys
from pathlib import Path

import numpy as np
from fusion_edge.runtime.arrays import follow_callers_stream, is_device_array, require_cupy, to_device, to_host
from fusion_edge.runtime.engines import INPUT_NAMES, OUTPUT_NAME, Backend, check_io_names

log = logging.getLogger(__name__)

TRT_EP, CUDA_EP, CPU_EP = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"
_WANTED = {"auto": [TRT_EP, CUDA_EP, CPU_EP], "tensorrt": [TRT_EP, CUDA_EP, CPU_EP], "cuda": [CUDA_EP, CPU_EP],
           "cpu": [CPU_EP]}


def import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as exc:
        raise ImportError(
            "the ONNX Runtime backend needs onnxruntime (`pip install onnxruntime`, or onnxruntime-gpu "
            f"for CUDA/TensorRT): {exc}"
        ) from exc
    return onnxruntime


def choose_providers(ort, wanted: str) -> list[str]:
    """The execution providers to ask for, best first, among those this onnxruntime has."""
    if wanted not in _WANTED:
        raise ValueError(f"providers must be one of {sorted(_WANTED)}, got {wanted!r}")
    available = ort.get_available_providers()
    chosen = [p for p in _WANTED[wanted] if p in available]
    if wanted in ("tensorrt", "cuda") and _WANTED[wanted][0] not in available:
        raise RuntimeError(
            f"ONNX Runtime here has no {_WANTED[wanted][0]} (available: {', '.join(available)}); "
            "install onnxruntime-gpu built for your CUDA"
        )
    if wanted == "auto" and TRT_EP in chosen and not tensorrt_libraries_present():
        # onnxruntime-gpu lists its TensorRT provider whether or not TensorRT is installed;
        # asking for it without TensorRT costs a failed library load and a printed error.
        chosen.remove(TRT_EP)
    return chosen


def tensorrt_libraries_present() -> bool:
    """Whether TensorRT's runtime library loads in this process (what ORT's TensorRT provider needs)."""
    names = ("nvinfer_10.dll", "nvinfer_11.dll") if sys.platform == "win32" else (
        "libnvinfer.so.10", "libnvinfer.so.11", "libnvinfer.so")
    for name in names:
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            continue
    try:  # pip-installed TensorRT loads its libraries when imported
        import tensorrt  # noqa: F401
    except Exception:
        return False
    return True


def _flag(value: bool) -> str:
    """Provider options are strings; ORT parses booleans from "0"/"1" in every version."""
    return "1" if value else "0"


class OrtBackend(Backend):
    """An ONNX graph in ONNX Runtime. ``providers``: "auto", "tensorrt", "cuda" or "cpu".

    ``cuda_graph=True`` (CUDA provider) captures the whole graph once and replays it: far fewer
    launches for graphs of many small nodes, such as the portable scan. It needs every node on
    the CUDA provider and one fixed input shape; inputs are copied into buffers that stay bound.
    """

    def __init__(self, path: Path, *, device_id: int = 0, providers: str = "auto", threads: int | None = None,
                 fp16: bool = False, cuda_graph: bool = False) -> None:
        ort = import_onnxruntime()
        self.path = Path(path)
        self.device_id = device_id
        chosen = choose_providers(ort, providers)
        self._cupy = None
        gpu_wanted = chosen[0] in (TRT_EP, CUDA_EP)
        if cuda_graph and CUDA_EP not in chosen:
            raise ValueError("cuda_graph needs ONNX Runtime's CUDA provider (providers='cuda')")
        self.cuda_graph = bool(cuda_graph)
        if gpu_wanted:
            cupy = require_cupy("ONNX Runtime on the GPU (device buffers and a CUDA stream)")
            cupy.cuda.Device(device_id).use()
            self._cupy = cupy
            self.stream = cupy.cuda.Stream(non_blocking=True)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = int(threads)
        provider_args = self._provider_args(chosen, fp16)
        self.session = self._open_session(ort, options, provider_args, gpu_wanted)
        if gpu_wanted and not self._session_on_gpu():
            # ORT's Python API moves a session to the CPU when a GPU provider raises while starting.
            # Our stream option may be what it rejected: try without it (ORT then uses its own stream).
            self.session = self._open_session(ort, options, _without_stream(provider_args), gpu_wanted)
            if self._session_on_gpu():
                log.warning("ONNX Runtime's GPU provider started only without our CUDA stream; it runs on its own")
        if gpu_wanted and not self._session_on_gpu() and _preload_cuda_libraries(ort):
            # The CUDA provider could not load CUDA/cuDNN; ORT can load them from NVIDIA's pip wheels.
            self.session = self._open_session(ort, options, provider_args, gpu_wanted)
        inputs = self.session.get_inputs()
        check_io_names([i.name for i in inputs], [o.name for o in self.session.get_outputs()], self.path)
        shape = next(i.shape for i in inputs if i.name == "vis")
        self.input_hw = tuple(d if isinstance(d, int) else None for d in list(shape)[-2:])
        active = self.session.get_providers()
        self.on_gpu = active[0] in (TRT_EP, CUDA_EP)
        if gpu_wanted and not self.on_gpu:
            message = (f"ONNX Runtime could not start its {chosen[0]} for {self.path.name} and runs on {active[0]}; "
                       "usually the CUDA or cuDNN libraries of this onnxruntime-gpu build are not on the library "
                       "path (install the nvidia-*-cu1x wheels it names, or set LD_LIBRARY_PATH)")
            if providers in ("cuda", "tensorrt"):
                raise RuntimeError(message)
            log.warning("%s", message)
            self.stream = None
        self.name = f"onnxruntime[{active[0].replace('ExecutionProvider', '')}]"
        self._run_options = ort.RunOptions()
        self._graph_io: dict | None = None  # cuda_graph: the buffers bound once and replayed

    def _session_on_gpu(self) -> bool:
        return self.session.get_providers()[0] in (TRT_EP, CUDA_EP)

    def _provider_args(self, chosen: list[str], fp16: bool) -> list:
        args: list = []
        for p in chosen:
            if p == CUDA_EP:
                options = {"device_id": str(self.device_id), "user_compute_stream": str(self.stream.ptr)}
                if self.cuda_graph:
                    options["enable_cuda_graph"] = _flag(True)
                args.append((p, options))
            elif p == TRT_EP:
                cache = Path(os.environ.get("FUSION_EDGE_CACHE", Path.home() / ".cache" / "fusion-edge")) / "ort-trt"
                cache.mkdir(parents=True, exist_ok=True)
                args.append((p, {"device_id": str(self.device_id), "trt_fp16_enable": _flag(fp16),
                                 "trt_engine_cache_enable": _flag(True), "trt_engine_cache_path": str(cache),
                                 "user_compute_stream": str(self.stream.ptr)}))
            else:
                args.append(p)
        return args

    def _open_session(self, ort, options, provider_args, gpu_wanted: bool):
        try:
            return ort.InferenceSession(str(self.path), sess_options=options, providers=provider_args)
        except Exception as exc:  # ORT raises its own exception types for bad files
            first = exc
        if _needs_custom_ops(first):
            return self._with_custom_ops(ort, options, provider_args, first)
        if gpu_wanted:
            # Older providers reject user_compute_stream: run on their own stream instead.
            log.warning("ONNX Runtime rejected our CUDA stream (%s); retrying on its own stream", first)
            try:
                return ort.InferenceSession(str(self.path), sess_options=options,
                                            providers=_without_stream(provider_args))
            except Exception as exc:
                raise ValueError(f"ONNX Runtime cannot load {self.path}: {exc}") from exc
        raise ValueError(f"ONNX Runtime cannot load {self.path}: {first}") from first

    def _with_custom_ops(self, ort, options, provider_args, first_error):
        """A plugin-flavour graph (our custom nodes): run them through onnxruntime-extensions."""
        try:
            from fusion_edge.export import ort_custom_ops

            ext = ort_custom_ops._import_extensions()
            ort_custom_ops.register()
        except ImportError as exc:
            raise ValueError(
                f"{self.path.name} is a plugin-flavour graph (custom nodes); ONNX Runtime runs it only with "
                f"onnxruntime-extensions and fusion_edge.export ({exc}). Export the portable flavour for ONNX Runtime, "
                "or build a TensorRT engine"
            ) from first_error
        options.register_custom_ops_library(ext.get_library_path())
        try:
            return ort.InferenceSession(str(self.path), sess_options=options, providers=provider_args)
        except Exception as exc:
            raise ValueError(f"ONNX Runtime cannot load {self.path}: {exc}") from exc

    def infer(self, vis, ir):
        if not self.on_gpu:
            feeds = {"vis": _host_batch(vis, "vis"), "ir": _host_batch(ir, "ir")}
            return self.session.run([OUTPUT_NAME], feeds, self._run_options)[0]
        cupy = self._cupy
        follow_callers_stream(cupy, self.stream)
        with self.stream:
            arrays = {"vis": _device_batch(cupy, vis, "vis"), "ir": _device_batch(cupy, ir, "ir")}
            if arrays["vis"].shape != arrays["ir"].shape:
                raise ValueError(f"vis {arrays['vis'].shape} and ir {arrays['ir'].shape} batches differ in shape")
            if self.cuda_graph:
                return self._infer_graph(cupy, arrays)
            out = cupy.empty(arrays["vis"].shape, dtype=cupy.float32)
        binding = self.session.io_binding()
        for name in INPUT_NAMES:
            a = arrays[name]
            binding.bind_input(name, "cuda", self.device_id, np.float32, list(a.shape), a.data.ptr)
        binding.bind_output(OUTPUT_NAME, "cuda", self.device_id, np.float32, list(out.shape), out.data.ptr)
        # ORT queues on our stream (user_compute_stream) and waits for its work before returning;
        # this wait covers a provider that runs on its own stream (ORT's fallback drops our options).
        self.stream.synchronize()
        self.session.run_with_iobinding(binding, self._run_options)
        return out

    def _infer_graph(self, cupy, arrays: dict):
        """Copy into the bound buffers, replay the captured graph, hand out a copy of the output."""
        shape = arrays["vis"].shape
        if self._graph_io is None:
            io = {name: cupy.empty(shape, dtype=cupy.float32) for name in (*INPUT_NAMES, OUTPUT_NAME)}
            binding = self.session.io_binding()
            for name in INPUT_NAMES:
                binding.bind_input(name, "cuda", self.device_id, np.float32, list(shape), io[name].data.ptr)
            binding.bind_output(OUTPUT_NAME, "cuda", self.device_id, np.float32, list(shape),
                                io[OUTPUT_NAME].data.ptr)
            self._graph_io = {"buffers": io, "binding": binding, "shape": shape}
        elif self._graph_io["shape"] != shape:
            raise ValueError(f"a CUDA-graph session runs one input shape ({self._graph_io['shape']}); "
                             f"got {shape}. Open the backend without cuda_graph for changing sizes")
        io = self._graph_io["buffers"]
        for name in INPUT_NAMES:
            cupy.copyto(io[name], arrays[name])
        self.stream.synchronize()
        self.session.run_with_iobinding(self._graph_io["binding"], self._run_options)
        return io[OUTPUT_NAME].copy()  # the next replay overwrites the bound output

    def close(self) -> None:
        self._graph_io = None
        self.session = None


def _without_stream(provider_args: list) -> list:
    return [(p[0], {k: v for k, v in p[1].items() if k != "user_compute_stream"}) if isinstance(p, tuple) else p
            for p in provider_args]


def _preload_cuda_libraries(ort) -> bool:
    """Let ORT load CUDA/cuDNN from NVIDIA's pip wheels (``onnxruntime.preload_dlls``, ORT 1.21+).

    Returns whether it ran; what it prints goes to the debug log, not the user's stdout.
    """
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        return False
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            preload()
    except Exception as exc:  # a missing directory or library: the caller reports the outcome
        log.debug("onnxruntime.preload_dlls failed: %s", exc)
    if printed.getvalue().strip():
        log.debug("onnxruntime.preload_dlls: %s", printed.getvalue().strip())
    return True


def _needs_custom_ops(exc: Exception) -> bool:
    text = str(exc)
    return "ai.onnx.contrib" in text or "FusionEdge" in text


def _host_batch(x, name: str) -> np.ndarray:
    a = to_host(x)
    if a.ndim != 4 or a.shape[1] != 1:
        raise ValueError(f"{name} batch must be (B, 1, H, W), got shape {tuple(a.shape)}")
    return np.ascontiguousarray(a, dtype=np.float32)


def _device_batch(cupy, x, name: str):
    a = to_device(x) if (is_device_array(x) or not isinstance(x, np.ndarray)) else cupy.asarray(x)
    if a.ndim != 4 or a.shape[1] != 1:
        raise ValueError(f"{name} batch must be (B, 1, H, W), got shape {tuple(a.shape)}")
    return cupy.ascontiguousarray(a, dtype=cupy.float32)
