"""ONNX Runtime backends on the portable ONNX export: CPU provider, and CUDA provider with inputs
and outputs bound on the GPU (so host copies are not part of the timing)."""

from __future__ import annotations

import numpy as np

from fusion_edge.bench.backend_base import BackendUnavailable, BenchContext, Prepared, no_memory_on_cpu
from fusion_edge.bench.timing import HostTimer

_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


def _import_ort():
    try:
        import onnxruntime
    except ImportError as exc:
        raise BackendUnavailable("onnxruntime is not installed (pip install onnxruntime)") from exc
    return onnxruntime


def _session(ort, path, providers, threads: int | None = None):
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=options, providers=providers)


def _feeds(session, ctx: BenchContext, height: int, width: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    feeds = {}
    for inp in session.get_inputs():
        dtype = _NUMPY_TYPES.get(inp.type)
        if dtype is None:
            raise RuntimeError(f"ONNX input {inp.name!r} has type {inp.type}; expected a float tensor")
        feeds[inp.name] = rng.random((ctx.batch, 1, height, width), dtype=np.float32).astype(dtype)
    return feeds


def prepare_cpu(ctx: BenchContext, height: int, width: int, backend: str = "ort-cpu") -> Prepared:
    ort = _import_ort()
    path = ctx.source.onnx_for(height, width, ctx.batch, ctx.fp16)
    session = _session(ort, path, ["CPUExecutionProvider"], ctx.threads)
    feeds = _feeds(session, ctx, height, width)
    notes = ["fp16 graph"] if ctx.fp16 else []
    return Prepared(run=lambda: session.run(None, feeds), timer=HostTimer(), peak_memory=no_memory_on_cpu, notes=notes)


def _device_used_mb() -> float | None:
    """Memory in use on the current GPU (all processes), from cudaMemGetInfo via torch."""
    try:
        import torch

        free, total = torch.cuda.mem_get_info()
    except (ImportError, RuntimeError):
        return None
    return (total - free) / 1e6


def prepare_cuda(ctx: BenchContext, height: int, width: int, backend: str = "ort-cuda") -> Prepared:
    ort = _import_ort()
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise BackendUnavailable(
            f"onnxruntime {ort.__version__} has no CUDAExecutionProvider (install onnxruntime-gpu)"
        )
    if not ctx.on_gpu:
        raise BackendUnavailable("ort-cuda needs a CUDA GPU (running on CPU)")
    device_id = int(ctx.device.split(":")[1]) if ":" in ctx.device else 0
    preload = getattr(ort, "preload_dlls", None)  # CUDA/cuDNN from the pip-installed NVIDIA wheels, if any
    if preload is not None:
        try:
            preload()
        except Exception:  # noqa: BLE001 - the session below reports a real failure
            pass
    path = ctx.source.onnx_for(height, width, ctx.batch, ctx.fp16)
    used_before = _device_used_mb()
    session = _session(ort, path, [("CUDAExecutionProvider", {"device_id": device_id}), "CPUExecutionProvider"])
    if "CUDAExecutionProvider" not in session.get_providers():
        raise BackendUnavailable("onnxruntime could not start its CUDA provider (CUDA/cuDNN libraries missing?)")
    binding = session.io_binding()
    device_inputs = {  # kept referenced for the session's lifetime
        name: ort.OrtValue.ortvalue_from_numpy(array, "cuda", device_id)
        for name, array in _feeds(session, ctx, height, width).items()
    }
    for name, value in device_inputs.items():
        binding.bind_ortvalue_input(name, value)
    for out in session.get_outputs():
        binding.bind_output(out.name, "cuda", device_id)

    def run():
        session.run_with_iobinding(binding)
        return device_inputs

    def peak_memory():
        after = _device_used_mb()
        if used_before is None or after is None:
            return None, "n/a (torch.cuda.mem_get_info unavailable)"
        return after - used_before, "device memory in use after the run minus before the session (cudaMemGetInfo)"

    import torch

    return Prepared(run=run, timer=HostTimer(torch.cuda.synchronize), peak_memory=peak_memory)


PREPARE = {"ort-cpu": prepare_cpu, "ort-cuda": prepare_cuda}
