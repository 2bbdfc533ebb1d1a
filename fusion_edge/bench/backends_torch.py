"""PyTorch backends: eager with the chunked scan, eager with our CUDA kernels, the same under
CUDA graph replay, and torch.compile of the chunked model.

The scan implementation is chosen with ``fusion_edge.ops.use_impl`` by the caller for the
backend's whole lifetime (``SCAN_IMPL``); fp16 is autocast, as users run it.
"""

from __future__ import annotations

import contextlib
import importlib

from fusion_edge.bench.backend_base import BackendUnavailable, BenchContext, Prepared, no_memory_on_cpu
from fusion_edge.bench.timing import CudaEventTimer, HostTimer

SCAN_IMPL = {"torch-chunked": "chunked", "torch-cuda": "cuda", "torch-cuda-graph": "cuda", "torch-compile": "chunked"}
CUDA_SCAN_MODULE = "fusion_edge.ops.selective_scan_cuda"


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
    if backend in ("torch-cuda", "torch-cuda-graph"):
        _require_gpu(ctx, backend)
    check_scan_impl(SCAN_IMPL[backend], ctx.device)


def _inputs(ctx: BenchContext, height: int, width: int):
    import torch

    gen = torch.Generator(device="cpu").manual_seed(0)
    vis = torch.rand(ctx.batch, 1, height, width, generator=gen).to(ctx.device)
    ir = torch.rand(ctx.batch, 1, height, width, generator=gen).to(ctx.device)
    return vis, ir


def _autocast(ctx: BenchContext, cache_enabled: bool = True):
    import torch

    if not ctx.fp16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=ctx.device.split(":")[0], dtype=torch.float16, cache_enabled=cache_enabled)


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
    model = ctx.source.torch_model(ctx.device)
    vis, ir = _inputs(ctx, height, width)

    def run():
        with torch.inference_mode(), _autocast(ctx):
            return model(vis, ir)

    peak, reset = _torch_peak_memory(ctx)
    return Prepared(run=run, timer=_timer(ctx), peak_memory=peak, after_first_call=reset)


def prepare_cuda_graph(ctx: BenchContext, height: int, width: int, backend: str = "torch-cuda-graph") -> Prepared:
    """Capture one forward with our kernels into a CUDA graph; each call replays it on static inputs."""
    import torch

    check_backend(ctx, backend)
    model = ctx.source.torch_model(ctx.device)
    vis, ir = _inputs(ctx, height, width)
    peak, reset = _torch_peak_memory(ctx)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side), torch.inference_mode(), _autocast(ctx, cache_enabled=False):
        for _ in range(3):  # warm up outside the graph: lazy kernel compilation and allocator pools
            model(vis, ir)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    try:
        with torch.inference_mode(), _autocast(ctx, cache_enabled=False), torch.cuda.graph(graph):
            static_out = model(vis, ir)
    except RuntimeError as exc:
        raise RuntimeError(f"CUDA graph capture failed: {exc}") from exc

    def run():
        graph.replay()
        return static_out

    return Prepared(run=run, timer=CudaEventTimer(), peak_memory=peak, close=graph.reset, after_first_call=reset)


def prepare_compile(ctx: BenchContext, height: int, width: int, backend: str = "torch-compile") -> Prepared:
    """torch.compile of the chunked model (default mode); compilation happens in the first warm-up call."""
    import torch

    check_backend(ctx, backend)
    model = ctx.source.torch_model(ctx.device)
    compiled = torch.compile(model, dynamic=False)
    vis, ir = _inputs(ctx, height, width)

    def run():
        with torch.inference_mode(), _autocast(ctx):
            return compiled(vis, ir)

    notes = ["first call compiles (not timed)"]
    peak, reset = _torch_peak_memory(ctx)
    return Prepared(run=run, timer=_timer(ctx), peak_memory=peak, after_first_call=reset, notes=notes)


PREPARE = {
    "torch-chunked": prepare_eager,
    "torch-cuda": prepare_eager,
    "torch-cuda-graph": prepare_cuda_graph,
    "torch-compile": prepare_compile,
}
