"""PyTorch backends: eager with the chunked scan, eager with our CUDA kernels, the same under
CUDA graph replay, and torch.compile of the chunked model (the compiled backends on our kernels
are in ``backends_compile``).

The scan implementation is chosen with ``fusion_edge.ops.use_impl`` by the caller for the
backend's whole lifetime (``SCAN_IMPL``). fp16 is autocast, as users run it, or with
``torch_fp16="half"`` a float16 copy of the model fed float16 inputs.
"""

from __future__ import annotations

import contextlib
import copy
import importlib

from fusion_edge.bench.backend_base import BackendUnavailable, BenchContext, Prepared, no_memory_on_cpu
from fusion_edge.bench.timing import CudaEventTimer, HostTimer

SCAN_IMPL = {
    "torch-chunked": "chunked",
    "torch-cuda": "cuda",
    "torch-cuda-graph": "cuda",
    "torch-cuda-compile": "cuda",
    "torch-cuda-compile-graph": "cuda",
    "torch-compile": "chunked",
}
GPU_ONLY = ("torch-cuda", "torch-cuda-graph", "torch-cuda-compile", "torch-cuda-compile-graph")
COMPILED_ON_KERNELS = ("torch-cuda-compile", "torch-cuda-compile-graph")
CUDA_SCAN_MODULE = "fusion_edge.ops.selective_scan_cuda"
# ES2D scan parameters that stay float32 in a float16 model copy (the fused kernel reads them so).
SCAN_PARAMS = ("x_proj_weight", "dt_projs_weight", "dt_projs_bias", "A_logs", "Ds")


def check_scan_impl(name: str, device: str) -> None:
    """Raise BackendUnavailable unless scan implementation ``name`` can run on ``device``."""
    import torch

    from fusion_edge.ops import available_impls

    if name == "cuda" and "cuda" not in available_impls():
        try:
            importlib.import_module(CUDA_SCAN_MODULE)
        except ImportError as exc:
            raise BackendUnavailable(f"our CUDA scan could not be loaded ({CUDA_SCAN_MODULE}: {exc})") from exc
    if name not in available_impls():
        raise BackendUnavailable(f"the {name!r} selective-scan implementation is not registered in fusion_edge.ops")
    from fusion_edge.ops.selective_scan import resolve_impl

    try:
        resolve_impl(torch.empty(1, 1, 1, device=device), name)
    except RuntimeError as exc:
        raise BackendUnavailable(str(exc)) from exc


def check_backend(ctx: BenchContext, backend: str) -> None:
    """Raise BackendUnavailable (with the reason) before anything is built for ``backend``."""
    if backend in GPU_ONLY:
        _require_gpu(ctx, backend)
    if backend in COMPILED_ON_KERNELS:
        _require_compiler(ctx)
    check_scan_impl(SCAN_IMPL[backend], ctx.device)


def _require_compiler(ctx: BenchContext) -> None:
    """Our kernels under torch.compile need custom ops (torch >= 2.4) and, on a GPU, triton."""
    import torch

    from fusion_edge.ops import torch_ops

    if not torch_ops.OPS_SUPPORTED:
        raise BackendUnavailable(f"torch {torch.__version__} has no torch.library.custom_op (needs torch >= 2.4)")
    if ctx.on_gpu:
        try:
            import triton  # noqa: F401
        except ImportError as exc:
            raise BackendUnavailable(f"torch.compile on a GPU needs triton, which does not import ({exc})") from exc


def half_precision(ctx: BenchContext) -> bool:
    """True when --fp16 runs a float16 copy of the model instead of autocast."""
    return ctx.fp16 and ctx.torch_fp16 == "half"


def half_model(model):
    """A float16 copy of ``model`` whose ES2D scan parameters stay float32."""
    import torch

    half = copy.deepcopy(model).half()
    for module in half.modules():
        for name in SCAN_PARAMS:
            param = getattr(module, name, None)
            if isinstance(param, torch.nn.Parameter):
                setattr(module, name, torch.nn.Parameter(param.detach().float(), requires_grad=False))
    return half


def torch_model(ctx: BenchContext):
    """The model the torch backends run: the source's, or its float16 copy (built once per run)."""
    model = ctx.source.torch_model(ctx.device)
    if half_precision(ctx):
        key = ("half-model", id(model))
        if key not in ctx.cache:
            ctx.cache[key] = half_model(model)
        model = ctx.cache[key]
    model.cross_on_side_stream = ctx.cross_stream
    return model


def cross_stream_note(ctx: BenchContext) -> list[str]:
    """The row note of a run with the cross-modal blocks on their own stream (GPU only)."""
    return ["cross-modal blocks on a second CUDA stream"] if ctx.cross_stream and ctx.on_gpu else []


def inputs(ctx: BenchContext, height: int, width: int):
    """Static (vis, ir) inputs, the same values for every backend; float16 for a float16 model."""
    import torch

    gen = torch.Generator(device="cpu").manual_seed(0)
    dtype = torch.float16 if half_precision(ctx) else torch.float32
    vis = torch.rand(ctx.batch, 1, height, width, generator=gen).to(ctx.device, dtype)
    ir = torch.rand(ctx.batch, 1, height, width, generator=gen).to(ctx.device, dtype)
    return vis, ir



def autocast(ctx: BenchContext, cache_enabled: bool = True):
    """float16 autocast for --fp16 (unless the model itself is float16), else nothing."""
    import torch

    if not ctx.fp16 or half_precision(ctx):
        return contextlib.nullcontext()
    return torch.autocast(device_type=ctx.device.split(":")[0], dtype=torch.float16, cache_enabled=cache_enabled)



def precision_label(ctx: BenchContext) -> str:
    """The precision column of torch rows: fp32, fp16 (autocast) or fp16-half (float16 model copy)."""
    if not ctx.fp16:
        return "fp32"
    return "fp16-half" if half_precision(ctx) else "fp16"


def _timer(ctx: BenchContext):
    return CudaEventTimer() if ctx.on_gpu else HostTimer()


def _torch_peak_memory(ctx: BenchContext):
    """(read peak, reset peak): the reset runs after the first call, so compilation and autotuning
    scratch do not count while everything still allocated (weights, graph pools) does."""
    import torch

    if not ctx.on_gpu:
        return no_memory_on_cpu, None

    def reset() -> None:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()

    reset()
    return (lambda: (torch.cuda.max_memory_allocated() / 1e6, "torch.cuda.max_memory_allocated")), reset


def _require_gpu(ctx: BenchContext, backend: str) -> None:
    if not ctx.on_gpu:
        import torch

        why = "no CUDA GPU visible to torch" if not torch.cuda.is_available() else "running with --device cpu"
        raise BackendUnavailable(f"{backend} needs a CUDA GPU ({why})")


def prepare_eager(ctx: BenchContext, height: int, width: int, backend: str) -> Prepared:
    """``torch-chunked`` and ``torch-cuda``: the model called eagerly under inference mode."""
    import torch

    check_backend(ctx, backend)
    model = torch_model(ctx)
    vis, ir = inputs(ctx, height, width)

    def run():
        with torch.inference_mode(), autocast(ctx):
            return model(vis, ir)

    peak, reset = _torch_peak_memory(ctx)
    return Prepared(run=run, timer=_timer(ctx), peak_memory=peak, after_first_call=reset,
                    notes=cross_stream_note(ctx))


def prepare_cuda_graph(ctx: BenchContext, height: int, width: int, backend: str = "torch-cuda-graph") -> Prepared:
    """Capture one forward with our kernels into a CUDA graph; each call replays it on static inputs."""

    check_backend(ctx, backend)
    model = torch_model(ctx)
    vis, ir = inputs(ctx, height, width)
    peak, reset = _torch_peak_memory(ctx)
    graph, static_out = capture_graph(ctx, lambda: model(vis, ir))

    def run():
        graph.replay()
        return static_out

    return Prepared(run=run, timer=CudaEventTimer(), peak_memory=peak, close=graph.reset, after_first_call=reset,
                    notes=cross_stream_note(ctx))


def capture_graph(ctx: BenchContext, forward, warmup: int = 3, priority: int = 0):
    """(graph, static output) of ``forward()`` captured into a CUDA graph after ``warmup`` calls on a
    side stream (lazy kernel loading, autotuning and allocator pools happen there, not in the capture).

    Our kernels launch on torch's current stream, which inside the capture is the capture stream; its
    CUDA ``priority`` (lower is more urgent) becomes that of the kernels queued on it.
    """
    import torch

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side), torch.inference_mode(), autocast(ctx, cache_enabled=False):
        for _ in range(warmup):
            forward()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    try:
        stream = torch.cuda.Stream(priority=priority) if priority else None  # None: torch's own stream
        with torch.inference_mode(), autocast(ctx, cache_enabled=False), torch.cuda.graph(graph, stream=stream):
            static_out = forward()
    except RuntimeError as exc:
        raise RuntimeError(f"CUDA graph capture failed: {exc}") from exc
    return graph, static_out


PREPARE = {
    "torch-chunked": prepare_eager,
    "torch-cuda": prepare_eager,
    "torch-cuda-graph": prepare_cuda_graph,
}
