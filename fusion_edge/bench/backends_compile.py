"""torch.compile backends: the model compiled by inductor with our CUDA kernels as opaque custom
ops (``fusion_edge.ops.torch_ops``), run as is (``torch-cuda-compile``) and replayed in a CUDA graph
(``torch-cuda-compile-graph``), and the chunked model compiled (``torch-compile``).

Compilation happens in ``prepare`` under a time limit, is reported as ``compile_s`` apart from the
latency, and is shared: the -graph backend captures the model the plain one compiled at that size.
The CUDA graph is our own capture of the compiled model (as ``torch-cuda-graph`` captures the eager
one), so both backends cost one compilation and the replay runs no Python at all.
"""

from __future__ import annotations

import contextlib
import copy
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from fusion_edge.bench.backend_base import BackendUnavailable, BenchContext, Prepared
from fusion_edge.bench.backends_torch import (
    _timer,
    _torch_peak_memory,
    autocast,
    capture_graph,
    check_backend,
    cross_stream_note,
    half_precision,
    inputs,
    torch_model,
)
from fusion_edge.bench.timing import CudaEventTimer

# Compilations per code object: one per size and block shape; torch's default (8) is too few for blocks.
RECOMPILE_LIMIT = 64
MIN_COMPILE_SECONDS = 5.0  # with less of the time budget left, a compilation is not started


class CompileTimeout(BackendUnavailable):
    """A torch.compile compilation ran past its time limit (the backend is skipped, saying so)."""


@contextlib.contextmanager
def time_limit(seconds: float | None, what: str) -> Iterator[None]:
    """Raise CompileTimeout in this thread once ``seconds`` have passed (SIGALRM, re-sent every second
    in case the compiler catches the first one). No limit off the main thread or without SIGALRM.
    """
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if seconds is None or not usable:
        yield
        return
    fired = []

    def on_alarm(signum, frame):
        fired.append(time.monotonic())
        raise CompileTimeout(f"{what} took longer than {seconds:.0f} s (--compile-timeout / time budget)")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01), 1.0)
    try:
        yield
    except Exception as exc:
        if fired and not isinstance(exc, CompileTimeout):  # wrapped by the compiler: report the timeout
            raise CompileTimeout(f"{what} took longer than {seconds:.0f} s (--compile-timeout / time budget)") from exc
        raise
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class CompiledModel:
    forward: Callable[[], object]  # one call of the compiled model on the static inputs
    compile_s: float
    notes: list[str] = field(default_factory=list)


def _compile_options(ctx: BenchContext) -> dict:
    options = {"fullgraph": True, "dynamic": False, "backend": ctx.compile_backend}
    if ctx.compile_backend == "inductor" and ctx.compile_mode != "default":
        options["mode"] = ctx.compile_mode
    return options


def _raise_recompile_limit() -> None:
    import torch._dynamo

    config = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(config, name) and getattr(config, name) < RECOMPILE_LIMIT:
            setattr(config, name, RECOMPILE_LIMIT)


def _freezes(ctx: BenchContext) -> bool:
    return ctx.compile_freeze and ctx.compile_backend == "inductor"


def _combines(ctx: BenchContext) -> bool:
    return ctx.compile_combo and ctx.compile_backend == "inductor" and ctx.on_gpu


def _fixes_pointwise(ctx: BenchContext) -> bool:
    return not ctx.compile_autotune_pointwise and ctx.compile_backend == "inductor" and ctx.on_gpu


# Inductor's switch that gives every reduction kernel one heuristic configuration (the filter of its
# deterministic mode), under its test settings: absent from a torch that lacks it, and then not set.
REDUCTION_FILTER = "test_configs.force_filter_reduction_configs"


def _reduction_filter_available() -> bool:
    import torch._inductor.config as inductor_config

    owner, _, leaf = REDUCTION_FILTER.rpartition(".")
    return hasattr(getattr(inductor_config, owner, None), leaf)


def _fixes_reductions(ctx: BenchContext) -> bool:
    return (not ctx.compile_autotune_reductions and ctx.compile_backend == "inductor" and ctx.on_gpu
            and _reduction_filter_available())


def _inductor_options(ctx: BenchContext):
    """Inductor settings while the model compiles. Freezing: the weights become constants, so their
    casts and layout changes run once at compile time instead of as kernels in every call (the
    benchmark only runs inference). Combo kernels (GPU): independent small kernels that read the same
    inputs are launched as one, which matters for a model made of many tiny kernels. Elementwise
    kernels (GPU) take inductor's heuristic configuration instead of the fastest of several timed on
    the first call unless ``compile_autotune_pointwise``, and reduction kernels (LayerNorms, means) one
    heuristic configuration unless ``compile_autotune_reductions``: the timed choices differ from
    compilation to compilation, and the heuristic ones ran as fast or faster
    (benchmarks/results/cross_schedules_h200.md, reduction_configs_h200.md)."""
    options = {}
    if _freezes(ctx):
        options["freezing"] = True
    if _combines(ctx):
        options["combo_kernels"] = True
    if _fixes_pointwise(ctx):
        options["triton.autotune_pointwise"] = False
    if _fixes_reductions(ctx):
        options[REDUCTION_FILTER] = True
    if not options:
        return contextlib.nullcontext()
    import torch._inductor.config

    return torch._inductor.config.patch(**options)


def compile_units(unit: str) -> tuple[type, ...]:
    """The module types compiled on their own: ``blocks``, every DVSS and DFFM block and patch layer
    (embedding, merging, expanding); ``stages``, each encoder and decoder stage whole (its blocks and its
    merging or expanding layer in one graph, so kernels can fuse across the seams between them), the
    DFFM blocks and the patch layers outside the stages."""
    from fusion_edge.models.dffm import DFFMBlock
    from fusion_edge.models.dvss import DecoderStage, DVSSBlock, EncoderStage
    from fusion_edge.models.patch import FinalPatchExpand2D, PatchEmbed2D, PatchExpand2D, PatchMerging2D

    outside = (DFFMBlock, PatchEmbed2D, FinalPatchExpand2D)
    if unit == "blocks":
        return (DVSSBlock, PatchMerging2D, PatchExpand2D, *outside)
    if unit == "stages":
        return (EncoderStage, DecoderStage, *outside)
    raise ValueError(f"compile unit must be blocks or stages, got {unit!r}")


def compile_blocks(model, unit: str = "blocks", **options):
    """A copy of ``model`` whose ``unit``s (:func:`compile_units`) are compiled one by one (identical
    ones share one compilation); only the glue between them runs eagerly. The patch layers matter:
    eager LayerNorm over few channels is a slow kernel."""
    kinds = compile_units(unit)
    model = copy.deepcopy(model)
    inside: set[int] = set()  # modules within one already compiled: traced as part of it
    for module in model.modules():
        if id(module) in inside or not isinstance(module, kinds):
            continue
        module.compile(**options)
        inside.update(id(sub) for sub in module.modules())
    return model


def _build(ctx: BenchContext, height: int, width: int, scan_impl: str) -> CompiledModel:
    import torch

    model = torch_model(ctx)
    vis, ir = inputs(ctx, height, width)
    if scan_impl == "chunked":  # torch-compile: as before, graph breaks allowed, whole model
        compiled = torch.compile(model, dynamic=False, backend=ctx.compile_backend)
        scope = "model"
    else:
        options = _compile_options(ctx)
        scope = ctx.compile_scope
        compiled = torch.compile(model, **options) if scope == "model" else compile_blocks(model, scope, **options)

    def forward():
        return compiled(vis, ir)

    limit = ctx.compile_timeout
    left = ctx.seconds_left()
    if left is not None:
        if left < MIN_COMPILE_SECONDS:
            raise BackendUnavailable("the run's time budget is spent (--time-budget); not compiled")
        limit = min(limit, left)
    start = time.perf_counter()
    with time_limit(limit, f"compiling ({scope}, {ctx.compile_mode} mode)"), _inductor_options(ctx):
        with torch.inference_mode(), autocast(ctx, cache_enabled=False):
            out = forward()  # compiles, then runs once (inductor autotunes on this call)
        if ctx.on_gpu:
            torch.cuda.synchronize()
    compile_s = time.perf_counter() - start
    frozen = ", weights frozen" if _freezes(ctx) else ""
    frozen += ", combo kernels" if _combines(ctx) else ""
    frozen += ", heuristic elementwise configs" if _fixes_pointwise(ctx) else ""
    frozen += ", heuristic reduction configs" if _fixes_reductions(ctx) else ""
    notes = [f"torch.compile {ctx.compile_backend}, scope {scope}, mode {ctx.compile_mode}{frozen}"]
    if scope != "model":
        notes += cross_stream_note(ctx)
    elif ctx.cross_stream and ctx.on_gpu:
        notes.append("cross-modal blocks on the one stream: a whole-model compilation traces one stream")
    notes += _difference_note(ctx, out, height, width)
    return CompiledModel(forward, compile_s, notes)


def _difference_note(ctx: BenchContext, out, height: int, width: int) -> list[str]:
    """How far the compiled output is from the float32 model run eagerly (precision and compilation)."""
    import torch

    if out is None or not isinstance(out, torch.Tensor):
        return []
    reference_model = ctx.source.torch_model(ctx.device)
    vis, ir = inputs(ctx, height, width)
    with torch.inference_mode():
        ref = reference_model(vis.float(), ir.float())
    diff = (out.float() - ref).abs().max().item()
    return [f"max |output - fp32 eager| = {diff:.2e}"]


def compiled_model(ctx: BenchContext, height: int, width: int, scan_impl: str) -> CompiledModel:
    """The compiled model for this size, compiled once and shared by the plain and -graph backends.

    Only one compiled model is kept (the previous one and Dynamo's caches are dropped when another
    is built). After a compilation ran out of time, later ones in this run are not attempted: the
    compiler's state is uncertain and bigger sizes would take longer still.
    """
    import torch._dynamo

    if "compile-timed-out" in ctx.cache:
        raise BackendUnavailable(f"not compiled: an earlier compilation in this run timed out "
                                 f"({ctx.cache['compile-timed-out']})")
    precision = "half" if half_precision(ctx) else ("autocast" if ctx.fp16 else "fp32")
    key = (height, width, ctx.batch, precision, scan_impl, ctx.compile_mode, ctx.compile_scope, ctx.compile_backend,
           _freezes(ctx), _combines(ctx), _fixes_pointwise(ctx), _fixes_reductions(ctx))
    entry = ctx.cache.get("compiled")
    if entry is not None and entry[0] == key:
        if isinstance(entry[1], Exception):
            raise entry[1]
        return entry[1]
    ctx.cache.pop("compiled", None)
    torch._dynamo.reset()
    _raise_recompile_limit()
    try:
        built = _build(ctx, height, width, scan_impl)
    except CompileTimeout as exc:
        ctx.cache["compile-timed-out"] = f"{height}x{width}"
        torch._dynamo.reset()
        raise exc
    except Exception as exc:
        ctx.cache["compiled"] = (key, exc)
        raise
    ctx.cache["compiled"] = (key, built)
    return built


def _prepare_compiled_call(ctx: BenchContext, height: int, width: int, backend: str, scan_impl: str) -> Prepared:
    """The model compiled with ``scan_impl`` (compiled in setup), called as is each time."""
    import torch

    check_backend(ctx, backend)
    built = compiled_model(ctx, height, width, scan_impl)

    def run():
        with torch.inference_mode(), autocast(ctx, cache_enabled=False):
            return built.forward()

    peak, reset = _torch_peak_memory(ctx)
    return Prepared(run=run, timer=_timer(ctx), peak_memory=peak, after_first_call=reset, notes=list(built.notes),
                    compile_s=round(built.compile_s, 2))


def prepare_cuda_compile(ctx: BenchContext, height: int, width: int, backend: str = "torch-cuda-compile") -> Prepared:
    """The model compiled with our kernels as custom ops, called as is (Python launches every kernel)."""
    return _prepare_compiled_call(ctx, height, width, backend, "cuda")


def prepare_cuda_compile_graph(ctx: BenchContext, height: int, width: int,
                               backend: str = "torch-cuda-compile-graph") -> Prepared:
    """The compiled model captured once into a CUDA graph and replayed on static inputs."""
    import torch

    check_backend(ctx, backend)
    built = compiled_model(ctx, height, width, "cuda")
    peak, reset = _torch_peak_memory(ctx)
    graph, static_out = capture_graph(ctx, built.forward, warmup=2)
    graph.replay()
    with torch.inference_mode(), autocast(ctx, cache_enabled=False):
        direct = built.forward()
    diff = (static_out.float() - direct.float()).abs().max().item()  # the capture recorded the same work
    notes = [*built.notes, f"replay vs compiled call: max |diff| = {diff:.1e}"]

    def run():
        graph.replay()
        return static_out

    return Prepared(run=run, timer=CudaEventTimer(), peak_memory=peak, close=graph.reset, after_first_call=reset,
                    notes=notes, compile_s=round(built.compile_s, 2))


def prepare_chunked_compile(ctx: BenchContext, height: int, width: int, backend: str = "torch-compile") -> Prepared:
    """torch.compile of the chunked model (default mode, graph breaks allowed), compiled in setup."""
    return _prepare_compiled_call(ctx, height, width, backend, "chunked")


PREPARE = {
    "torch-cuda-compile": prepare_cuda_compile,
    "torch-cuda-compile-graph": prepare_cuda_compile_graph,
    "torch-compile": prepare_chunked_compile,
}
