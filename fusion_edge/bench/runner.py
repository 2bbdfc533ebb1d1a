"""Run every (size, backend) configuration and collect one result row each, never dropping one:
a backend that cannot run here gets a row saying why."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from fusion_edge.bench import backends_compile, backends_ort, backends_torch, backends_trt
from fusion_edge.bench.backend_base import BackendUnavailable, BenchContext
from fusion_edge.bench.config import BenchConfig, format_size
from fusion_edge.bench.cost import FrameCost, frame_cost
from fusion_edge.bench.sources import ModelSource, SourceUnavailable
from fusion_edge.bench.timing import TimeCapExceeded, measure

log = logging.getLogger(__name__)

PREPARE: dict[str, Callable] = {
    **backends_torch.PREPARE, **backends_compile.PREPARE, **backends_ort.PREPARE, **backends_trt.PREPARE,
}


class RunStopped(BaseException):
    """The run was told to stop (SIGTERM from a caller's time limit): it ends keeping what it measured.

    A BaseException, so that the per-backend error handling does not swallow it.
    """


@dataclass
class ResultRow:
    backend: str
    height: int
    width: int
    batch: int
    precision: str
    status: str  # "ok", "skipped" (cannot run here / over the time cap) or "failed" (an error while running)
    reason: str = ""
    latency_ms: dict | None = None
    throughput_fps: float | None = None
    peak_memory_mb: float | None = None
    peak_memory_method: str = ""
    setup_s: float | None = None  # building the backend (export, engine build, compilation, graph capture)
    compile_s: float | None = None  # torch.compile's compilation and first compiled call (part of setup_s)
    first_call_s: float | None = None  # the first call (lazy init; compilation for torch-compile)
    timer: str = ""
    warmup: int = 0
    iters: int = 0
    notes: list[str] = field(default_factory=list)
    profile: dict | None = None  # fusion_edge.bench.profile.Profile.to_dict() with --profile

    @property
    def size(self) -> str:
        return format_size((self.height, self.width))

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class BenchReport:
    config: dict
    model: str
    environment: dict
    costs: dict[str, FrameCost | None]
    rows: list[ResultRow]


def resolve_device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {requested}: torch sees no CUDA GPU here")
    return requested


def run_bench(
    config: BenchConfig,
    progress: Callable[[str], None] = print,
    checkpoint: Callable[[BenchReport], None] | None = None,
) -> BenchReport:
    """Measure every requested backend at every requested size.

    ``checkpoint``, if given, receives the report so far after each configuration (so that a run
    stopped from outside still leaves what it measured).
    """
    from fusion_edge.bench.environment import describe
    from fusion_edge.ops import use_impl

    config.validate()
    device = resolve_device(config.device)
    source = ModelSource(config.preset, config.model)
    fixed = source.fixed_size()
    sizes = config.sizes or ([fixed] if fixed else config.default_sizes(device.startswith("cuda")))
    import torch

    if config.threads is not None:
        torch.set_num_threads(config.threads)
    if device.startswith("cuda"):
        use_cudnn_benchmark(config.cudnn_benchmark)
    deadline = time.monotonic() + config.time_budget if config.time_budget else None
    ctx = BenchContext(
        source=source, device=device, batch=config.batch, fp16=config.fp16, threads=config.threads,
        torch_fp16=config.torch_fp16, compile_mode=config.compile_mode, compile_scope=config.compile_scope,
        compile_backend=config.compile_backend, compile_freeze=config.compile_freeze,
        compile_combo=config.compile_combo, compile_autotune_pointwise=config.compile_autotune_pointwise,
        compile_autotune_reductions=config.compile_autotune_reductions, cross_stream=config.cross_stream,
        compile_timeout=config.compile_timeout, deadline=deadline,
    )
    load_before = _load_average()
    ranked: list[tuple[tuple[int, int], ResultRow]] = []
    costs: dict[str, FrameCost | None] = {}
    config_dict = {
        "preset": config.preset, "model": str(config.model) if config.model else None, "device": device,
        "backends": config.backends, "sizes": [format_size(s) for s in sizes], "fp16": config.fp16,
        "batch": config.batch, "warmup": config.warmup,
        "warmup_seconds": config.warmup_seconds, "iters": config.iters, "max_seconds": config.max_seconds,
        "threads": config.threads, "torch_fp16": config.torch_fp16, "compile_mode": config.compile_mode,
        "compile_scope": config.compile_scope, "compile_backend": config.compile_backend,
        "compile_freeze": config.compile_freeze, "compile_combo": config.compile_combo,
        "compile_autotune_pointwise": config.compile_autotune_pointwise,
        "compile_autotune_reductions": config.compile_autotune_reductions,
        "cross_stream": config.cross_stream, "cudnn_benchmark": config.cudnn_benchmark,
        "compile_timeout": config.compile_timeout,
        "time_budget": config.time_budget, "min_iters": config.min_iters,
        "backend_sizes": {b: [format_size(s) for s in v] for b, v in config.backend_sizes.items()},
    }
    environment = describe(device)

    def report_so_far() -> BenchReport:
        rows = [row for _, row in sorted(ranked, key=lambda item: item[0])]  # tables list sizes, then backends
        environment["load_average_1min"] = {"start": load_before, "end": _load_average()}
        return BenchReport(config_dict, source.label, environment, dict(costs), rows)

    try:
        planned = run_order(sizes, config)
        try:
            for size_rank, backend_rank, (height, width), backend in planned:
                row = ResultRow(backend, height, width, config.batch, _precision(ctx, config, backend), "ok")
                label = format_size((height, width))
                if label not in costs:
                    costs[label] = _cost_or_none(source.config, height, width, config.fp16) if config.count_cost \
                        else None
                progress(f"{backend} {row.size} batch {config.batch} {row.precision} ...")
                _run_configuration(ctx, config, backend, row, use_impl)
                progress(f"  -> {row.status}" + (f": {row.reason}" if row.reason else _latency_line(row)))
                ranked.append(((size_rank, backend_rank), row))
                gc.collect()
                _empty_cuda_cache(device)
                if checkpoint is not None:
                    checkpoint(report_so_far())
        except RunStopped:
            progress("  -> stopped from outside (SIGTERM)")
            for index, (s_rank, b_rank, (h, w), name) in enumerate(planned[len(ranked):]):
                why = "stopped from outside (SIGTERM) while running" if index == 0 else \
                    "not run: the run was stopped from outside (SIGTERM)"
                ranked.append(((s_rank, b_rank), ResultRow(name, h, w, config.batch, _precision(ctx, config, name),
                                                           "skipped", reason=why)))
    finally:
        source.close()
    return report_so_far()


# Backends that compile run after the others at every size, so that a time budget spent compiling never
# costs the quick measurements; the kernels' compiled backends come before the chunked model's compile
# and the export-heavy ONNX Runtime CUDA / TensorRT builds.
PHASE = {"torch-cuda-compile": 1, "torch-cuda-compile-graph": 1, "torch-compile": 2, "ort-cuda": 2, "tensorrt": 2}


def run_order(sizes: list[tuple[int, int]], config: BenchConfig):
    """(size rank, backend rank, size, backend) in the order they run: by phase, then size, then backend.

    Sizes a backend is limited to (``config.backend_sizes``) leave the other sizes out for it.
    """
    configs = [
        (si, bi, size, backend)
        for si, size in enumerate(sizes)
        for bi, backend in enumerate(config.backends)
        if backend not in config.backend_sizes or size in config.backend_sizes[backend]
    ]
    return sorted(configs, key=lambda c: (PHASE.get(c[3], 0), c[0], c[1]))


def _load_average() -> float | None:
    """Other work on the machine skews timings; the report records how busy it was."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _precision(ctx: BenchContext, config: BenchConfig, backend: str) -> str:
    if backend in backends_torch.SCAN_IMPL:
        return backends_torch.precision_label(ctx)
    return "fp16" if config.fp16 else "fp32"


def use_cudnn_benchmark(on: bool) -> None:
    """Fixed shapes: cuDNN may time its convolution algorithms on first use and keep the fastest. When it
    does, it times every algorithm it has, not only its heuristic's first ten (torch's default limit): on
    the paper model's folded 3x3 convolutions that found 0.02 ms a frame more (H200, bench.md)."""
    import torch

    torch.backends.cudnn.benchmark = on
    if on and hasattr(torch.backends.cudnn, "benchmark_limit"):
        torch.backends.cudnn.benchmark_limit = 0  # 0: no limit


def _run_configuration(ctx: BenchContext, config: BenchConfig, backend: str, row: ResultRow, use_impl) -> None:
    """Measure one (size, backend) into ``row``; its status and reason say what happened."""
    scan_impl = backends_torch.SCAN_IMPL.get(backend)
    try:
        left = ctx.seconds_left()
        if left is not None and left <= 0:
            raise BackendUnavailable(f"not run: the run's time budget ({config.time_budget:g} s) is spent")
        if scan_impl:
            backends_torch.check_backend(ctx, backend)
        with use_impl(scan_impl) if scan_impl else contextlib.nullcontext():
            _run_one(ctx, config, backend, row)
    except (BackendUnavailable, SourceUnavailable) as exc:
        row.status, row.reason = "skipped", str(exc)
    except TimeCapExceeded as exc:
        row.status, row.reason = "skipped", f"over the time cap: {exc}"
    except Exception as exc:  # noqa: BLE001 - one failing backend must not lose the others
        log.debug("backend %s failed", backend, exc_info=True)
        row.status, row.reason = "failed", f"{type(exc).__name__}: {_first_line(exc)}"


def _run_one(ctx: BenchContext, config: BenchConfig, backend: str, row: ResultRow) -> None:
    start = time.perf_counter()
    prepared = PREPARE[backend](ctx, row.height, row.width, backend)
    row.setup_s = round(time.perf_counter() - start, 3)
    row.compile_s = prepared.compile_s
    max_seconds = config.max_seconds
    left = ctx.seconds_left()
    if left is not None:  # the timed calls must fit what is left of the run's budget too
        max_seconds = max(min(max_seconds, left), 0.001)
    try:
        stats, first_call = measure(
            prepared.run, prepared.timer, config.warmup, config.iters, max_seconds, prepared.after_first_call,
            min_iters=config.min_iters, warmup_seconds=config.warmup_seconds,
        )
        row.first_call_s = round(first_call, 3)
        row.latency_ms = {k: round(v, 4) for k, v in vars(stats).items() if k != "samples"}
        row.throughput_fps = round(stats.throughput(config.batch), 3)
        row.peak_memory_mb, row.peak_memory_method = prepared.peak_memory()
        if row.peak_memory_mb is not None:
            row.peak_memory_mb = round(row.peak_memory_mb, 1)
        row.timer, row.warmup, row.iters, row.notes = prepared.timer.name, config.warmup, stats.samples, prepared.notes
        if not config.cudnn_benchmark and ctx.on_gpu and row.backend in backends_torch.SCAN_IMPL:
            row.notes = [*row.notes, "cuDNN's heuristic convolution algorithms (--no-cudnn-benchmark)"]
        if stats.samples < config.iters:
            row.notes = [*row.notes, f"{stats.samples} timed calls (fewer than --iters {config.iters}) to fit "
                         f"{max_seconds:.0f} s"]
        if config.profile:
            _profile_into(row, prepared, config.profile, ctx.on_gpu)
    finally:
        prepared.close()


def _profile_into(row: ResultRow, prepared, calls: int, on_gpu: bool) -> None:
    """Profile ``calls`` more calls into ``row`` (a note says why when it cannot)."""
    from fusion_edge.bench.profile import profile_calls

    if row.backend not in backends_torch.SCAN_IMPL:  # the PyTorch backends
        row.notes = [*row.notes, "profile: only the PyTorch backends are profiled"]
        return
    try:
        profile = profile_calls(prepared.run, calls, on_gpu)
    except Exception as exc:  # noqa: BLE001 - a profiler problem must not lose the measurement
        row.notes = [*row.notes, f"profile failed: {type(exc).__name__}: {_first_line(exc)}"]
        return
    row.profile = profile.to_dict()
    row.notes = [*row.notes, profile.summary((row.latency_ms or {}).get("p50"))]


def _cost_or_none(model_config: dict | None, height: int, width: int, fp16: bool) -> FrameCost | None:
    """FLOPs and bytes when the model's architecture is known; a counting error never stops the timing."""
    if model_config is None:
        return None
    try:
        return frame_cost(model_config, height, width, fp16)
    except Exception:  # noqa: BLE001
        log.warning("could not count FLOPs/bytes at %dx%d", height, width, exc_info=True)
        return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else "(no message)"


def _latency_line(row: ResultRow) -> str:
    return f": p50 {row.latency_ms['p50']:.2f} ms, {row.throughput_fps:.1f} frames/s" if row.latency_ms else ""


def _empty_cuda_cache(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.empty_cache()
