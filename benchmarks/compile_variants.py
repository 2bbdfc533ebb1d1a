"""torch.compile variants of one preset side by side: the small ops' two forms and inductor options.

    python benchmarks/compile_variants.py [--preset edge] [--size 512x640] [--scope model|blocks|stages]
        [--variants library,elementwise,combo,scan-delta,gemm,lib-delta,stream,aggressive,coordinate,
        autotune,pdl,mm64,mm128,pdl-mm128,fixed-pointwise,fixed-reductions,deterministic,fused-scans,
        route-scans,map-gather,separate-gelu,separate-norm] [--jobs N]
        [--out FILE.md] [--top N] [--cache-dir DIR] [--lock FILE] [--barrier DIR [--barrier-count N]]
        [--compile-timeout S] [--schedules early,after-encoder] [--priorities 0:0,-1:0] [--prior-inline] [--model CKPT]

Variants: ``library`` compiles the blocks' depthwise convs, ECA conv and BiAttn linears as cuDNN/cuBLAS
calls (the model before ``fusion_edge.ops.fusable``) and the ES2D route projections with the op's own
kernel; ``elementwise`` has those ops as fusable elementwise math; ``combo`` adds inductor's
``combo_kernels`` (independent kernels launched as one); ``gemm`` (what ``fusion-edge bench`` compiles)
also takes the route projections of wide layers, and the deltas of those with a large dt rank, from
library GEMMs (``fusion_edge.ops.es2d``); ``scan-delta`` takes the projections only (the scan forms every
delta from the dt rows), ``lib-delta`` the deltas of every projected layer;
``stream`` runs the cross-modal blocks on a second CUDA stream (``--scope blocks`` or ``stages``: a whole-model
compilation traces one stream); ``aggressive`` and ``coordinate`` add inductor's ``aggressive_fusion``
(fusing kernels that share no input) or ``coordinate_descent_tuning`` to that; ``autotune`` lets inductor
time Triton matmul templates against cuBLAS for every GEMM (``max_autotune_gemm``: a chosen template can
take its neighbouring elementwise ops into its epilogue), at the cost of a much longer compilation;
``pdl`` is ``stream`` with Programmatic Dependent Launch in inductor's Triton kernels (Hopper and newer:
a kernel may start while the one before it drains, and waits for its results in the GPU); ``mm64`` and
``mm128`` are ``stream`` with inductor's decomposition of memory-bound matrix products (at least 4096
rows, a weight of at most 64 or 128 rows and columns) into elementwise math that fuses with the
LayerNorm before and the activation or residual after; ``pdl-mm128`` both; ``fixed-pointwise`` is
``stream`` with inductor's heuristic configuration for every elementwise Triton kernel instead of the
fastest of several timed on the first call (``triton.autotune_pointwise`` off: the same choice in every
compilation); ``fixed-reductions`` also gives every reduction kernel one heuristic configuration
(inductor's ``test_configs.force_filter_reduction_configs``, the filter of its deterministic mode) and
``deterministic`` is ``fixed-pointwise`` under inductor's deterministic mode (no on-device timing of
choices that change numerics); ``fused-scans`` and ``route-scans`` are ``fixed-pointwise`` with every
ES2D layer on the fused op or on the plain scan over gathered routes (``fusion_edge.ops.es2d.set_scan_form``;
the others take the model's per-layer choice). Every variant gathers the routes layers' routes from their
input with the conv computed on the way (the model's default) except ``map-gather``, which is
``fixed-pointwise`` gathering them from the map the compiler's conv stored (``es2d.set_conv_gather``), and
every variant runs each MLP's fc1 and GELU as one cuBLASLt GEMM with the GELU in its epilogue except
``separate-gelu`` (``fixed-pointwise`` with the GEMM and an elementwise GELU kernel after it;
``fusion_edge.ops.linear_gelu``), and every routes layer merges its scanned rows with its LayerNorm and gate
applied except ``separate-norm`` (``fixed-pointwise`` merging into the map for a compiled LayerNorm and gate
kernel; ``es2d.set_merge_norm``).

On a CUDA GPU each variant is compiled in its own process (``--jobs`` at once: compiling is CPU work),
then the variants are timed one at a time: float16 model copy, our kernels, inductor freezing, the
compiled model captured as one CUDA graph; p50/p10/p90 of 200 replays (CUDA events, each replay waited
for), the p50 of 200 replays queued back to back (as ``fusion-edge bench`` times them) and the host time
to launch one replay (``stream``: also the p50 of the same compiled blocks captured with the cross-modal
blocks on the one stream, and under each other ``--schedules`` entry and ``--priorities`` pair of
stream priorities, timed in alternating rounds), GPU
kernels per call
and GPU busy time (torch.profiler over 10 replays), compile seconds, and the largest difference to the
eager float16 model. Without a GPU it prints the census of what inductor generated for one forward on
the CPU instead (our ops routed as on the GPU): library calls by kind and fused kernels. That counts
structure, not speed.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import fcntl
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

from fusion_edge.bench.config import format_size, parse_size
from fusion_edge.models.cross_stream import SCHEDULES, SIDE_SCHEDULE

FIXED_POINTWISE = {"combo_kernels": True, "triton.autotune_pointwise": False}


class Variant(NamedTuple):
    """What one variant sets: the fusable ops' forms, the ES2D projection, delta and scan form, inductor's
    options, and whether the cross-modal blocks run on a second stream."""

    forms: str
    projection: str
    delta: str
    options: dict
    cross_stream: bool
    scan_form: str = "auto"
    conv_gather: bool = True
    gelu_epilogue: str = "auto"
    merge_norm: bool = True


VARIANTS = {
    "library": Variant("library", "kernel", "auto", {}, False),
    "elementwise": Variant("auto", "kernel", "auto", {}, False),
    "combo": Variant("auto", "kernel", "auto", {"combo_kernels": True}, False),
    "scan-delta": Variant("auto", "auto", "kernel", {"combo_kernels": True}, False),
    "gemm": Variant("auto", "auto", "auto", {"combo_kernels": True}, False),
    "lib-delta": Variant("auto", "auto", "library", {"combo_kernels": True}, False),
    "stream": Variant("auto", "auto", "auto", {"combo_kernels": True}, True),
    "aggressive": Variant("auto", "auto", "auto", {"combo_kernels": True, "aggressive_fusion": True}, False),
    "coordinate": Variant("auto", "auto", "auto", {"combo_kernels": True, "coordinate_descent_tuning": True}, False),
    "autotune": Variant("auto", "auto", "auto", {"combo_kernels": True, "max_autotune_gemm": True}, False),
    "pdl": Variant("auto", "auto", "auto", {"combo_kernels": True, "triton.enable_pdl": True}, True),
    "fixed-pointwise": Variant("auto", "auto", "auto", FIXED_POINTWISE, True),
    "fixed-reductions": Variant("auto", "auto", "auto",
                                {**FIXED_POINTWISE, "test_configs.force_filter_reduction_configs": True}, True),
    "deterministic": Variant("auto", "auto", "auto", {**FIXED_POINTWISE, "deterministic": True}, True),
    "fused-scans": Variant("auto", "auto", "auto", FIXED_POINTWISE, True, "fused"),
    "route-scans": Variant("auto", "auto", "auto", FIXED_POINTWISE, True, "routes"),
    "map-gather": Variant("auto", "auto", "auto", FIXED_POINTWISE, True, "auto", False),
    "separate-gelu": Variant("auto", "auto", "auto", FIXED_POINTWISE, True, gelu_epilogue="off"),
    "separate-norm": Variant("auto", "auto", "auto", FIXED_POINTWISE, True, merge_norm=False),
    "mm64": Variant("auto", "auto", "auto", {"combo_kernels": True, "decompose_mm": 64}, True),
    "mm128": Variant("auto", "auto", "auto", {"combo_kernels": True, "decompose_mm": 128}, True),
    "pdl-mm128": Variant("auto", "auto", "auto",
                         {"combo_kernels": True, "triton.enable_pdl": True, "decompose_mm": 128}, True),
}
REPLAYS, PROFILED_REPLAYS = 200, 10


def _size(text: str) -> tuple[int, int]:
    try:
        return parse_size(text)
    except ValueError as exc:  # argparse would replace the message of a plain ValueError
        raise argparse.ArgumentTypeError(str(exc)) from None


def _variant_list(text: str) -> list[str]:
    names = [v for v in text.split(",") if v]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    return names


def _schedule_list(text: str) -> list[str]:
    names = [v for v in text.split(",") if v]
    unknown = [v for v in names if v not in SCHEDULES or v == "inline"]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown side schedules {unknown}; choose from "
                                         f"{', '.join(s for s in SCHEDULES if s != 'inline')}")
    return names


def _priority_pairs(text: str) -> list[tuple[int, int]]:
    """'0:0,-1:0' -> [(0, 0), (-1, 0)]: CUDA priorities (lower is more urgent) of the main and side streams."""
    try:
        pairs = [tuple(int(v) for v in pair.split(":")) for pair in text.split(",") if pair]
    except ValueError:
        pairs = []
    if not pairs or any(len(pair) != 2 for pair in pairs):
        raise argparse.ArgumentTypeError(f"priorities must be MAIN:SIDE pairs such as 0:0,-1:0, got {text!r}")
    return pairs


def _schedule_label(args, schedule: str, main_priority: int, side_priority: int) -> str:
    """A schedule's column name, with its stream priorities when more than one pair is timed."""
    return schedule if len(args.priorities) == 1 else f"{schedule} {main_priority}:{side_priority}"


def _compiled(args, variant: str):
    """The eager model, its compiled copy and the inputs, with the variant's forms and inductor options."""
    import torch
    import torch._inductor.config as inductor_config

    from fusion_edge.bench.backends_compile import RECOMPILE_LIMIT, compile_blocks
    from fusion_edge.bench.backends_torch import half_model
    from fusion_edge.bench.runner import use_cudnn_benchmark
    from fusion_edge.inference import load_model
    from fusion_edge.ops import es2d, fusable
    from fusion_edge.ops.linear_gelu import set_gelu_epilogue

    chosen = VARIANTS[variant]
    fusable.set_default_impl(chosen.forms)
    es2d.set_projection(chosen.projection)
    es2d.set_delta(chosen.delta)
    es2d.set_scan_form(chosen.scan_form)
    es2d.set_conv_gather(chosen.conv_gather)
    set_gelu_epilogue(chosen.gelu_epilogue)
    es2d.set_merge_norm(chosen.merge_norm)
    inductor_config.freezing = True
    _apply_inductor_options(chosen.options)
    torch._dynamo.config.recompile_limit = RECOMPILE_LIMIT
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    model = (load_model(args.model, None, device) if args.model
             else load_model(None, args.preset, device, random_init=True))
    model.check_inputs = False
    model.cross_schedule = args.schedules[0] if chosen.cross_stream else "inline"
    if device == "cuda":
        use_cudnn_benchmark(True)  # as the bench sets it
        model = half_model(model)
    height, width = args.size
    gen = torch.Generator().manual_seed(0)
    frames = [torch.rand(1, 1, height, width, generator=gen).to(device, next(model.parameters()).dtype)
              for _ in range(2)]
    compile_options = dict(fullgraph=True, dynamic=False)
    compiled = torch.compile(model, **compile_options) if args.scope == "model" else compile_blocks(
        model, args.scope, **compile_options)
    return model, compiled, frames


def _apply_inductor_options(options: dict) -> None:
    """Set a variant's inductor options: plain and dotted names (``triton.enable_pdl``), and
    ``decompose_mm: D``, inductor's pass that rewrites a matrix product of at least 4096 rows whose
    weight has at most D rows and columns as elementwise multiply-adds, which then fuse with their
    neighbours (its size limits are read when the pass is first imported, so they are set on it too)."""
    import torch._inductor.config as inductor_config

    for key, value in options.items():
        if key == "decompose_mm":
            limits = {"min_first_dimension_decomposition": 4096, "max_other_dimension_decomposition": value + 1}
            inductor_config.post_grad_fusion_options = {"decompose_mm_pass": limits}
            from torch._inductor.fx_passes import decompose_mem_bound_mm

            for name, limit in limits.items():
                setattr(decompose_mem_bound_mm, name, limit)
            continue
        owner, _, name = key.rpartition(".")
        setattr(getattr(inductor_config, owner) if owner else inductor_config, name, value)


def _synced_times(graph, count: int) -> list[float]:
    """Milliseconds of ``count`` replays, each waited for (CUDA events)."""
    import torch

    begin, end, times = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True), []
    for _ in range(count):
        begin.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(begin.elapsed_time(end))
    return times


def _cuda_worker(args, variant: str, lock_path: str) -> dict:
    import torch
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    from fusion_edge.bench.backend_base import BenchContext
    from fusion_edge.bench.backends_compile import time_limit
    from fusion_edge.bench.backends_torch import capture_graph
    from fusion_edge.bench.profile import kernel_family
    from fusion_edge.bench.timing import CudaEventTimer

    model, compiled, frames = _compiled(args, variant)
    with torch.inference_mode():
        eager = model(*frames).float()
        start = time.perf_counter()
        with time_limit(args.compile_timeout, f"compiling variant {variant}"):
            out = compiled(*frames)
        torch.cuda.synchronize()
        compile_s = time.perf_counter() - start
        diff = (out.float() - eager).abs().max().item()
    # the benchmark's own capture; fp16=False: the model is already float16, so no autocast around it
    plain = BenchContext(source=None, device="cuda", batch=1, fp16=False)
    main_priority, compiled.side_priority = args.priorities[0]
    graph, _ = capture_graph(plain, lambda: compiled(*frames), priority=main_priority)
    # side-stream variants: the same compiled blocks captured under each other schedule and pair of stream
    # priorities, and on one stream ("inline")
    first = _schedule_label(args, compiled.cross_schedule, *args.priorities[0])
    others = {}
    if compiled.cross_schedule != "inline" and args.scope != "model":
        for schedule in args.schedules:
            for main_priority, side_priority in args.priorities:
                label = _schedule_label(args, schedule, main_priority, side_priority)
                if label != first:
                    compiled.cross_schedule, compiled.side_priority = schedule, side_priority
                    others[label], _ = capture_graph(plain, lambda: compiled(*frames), priority=main_priority)
        if args.prior_inline and compiled.prior is not None:
            compiled.side_priority, compiled.prior_on_side_stream = args.priorities[0][1], False
            for schedule in args.schedules:
                compiled.cross_schedule = schedule
                label = _schedule_label(args, schedule, *args.priorities[0]) + ", prior inline"
                others[label], _ = capture_graph(plain, lambda: compiled(*frames), priority=args.priorities[0][0])
        compiled.cross_schedule = "inline"
        others["inline"], _ = capture_graph(plain, lambda: compiled(*frames))
    _arrive_and_wait(args)  # compiling autotunes on the GPU: time only once every variant has compiled
    with open(lock_path, "w") as lock:  # one variant on the GPU at a time
        fcntl.flock(lock, fcntl.LOCK_EX)
        for _ in range(50):
            graph.replay()
        torch.cuda.synchronize()
        times, other_times = [], {schedule: [] for schedule in others}
        for _ in range(4):  # with other graphs, alternate in rounds so that drift hits them all alike
            times += _synced_times(graph, REPLAYS // 4)
            for schedule, other in others.items():
                other_times[schedule] += _synced_times(other, REPLAYS // 4)
        # as `fusion-edge bench` times: replays queued back to back, events around each, one sync at the end
        queued = sorted(CudaEventTimer().time_calls(graph.replay, REPLAYS))
        start = time.perf_counter()
        for _ in range(REPLAYS):
            graph.replay()
        launch_us = (time.perf_counter() - start) / REPLAYS * 1e6  # host time to launch one replay
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(PROFILED_REPLAYS):
                graph.replay()
            torch.cuda.synchronize()
    kernels = [ev for ev in prof.events() if ev.device_type == DeviceType.CUDA]
    groups: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0])
    for ev in kernels:  # Triton kernels differ only by a numeric suffix: group them by the rest
        group = groups[kernel_family(ev.name)[:90]]
        group[0] += 1
        group[1] += ev.time_range.elapsed_us()
    top = sorted(groups.items(), key=lambda item: -item[1][1])[: args.top]
    times.sort()
    schedules = {schedule: sorted(t)[len(t) // 2] for schedule, t in other_times.items()}
    if others:
        schedules = {first: times[len(times) // 2], **schedules}
    requested = sorted({p for pair in args.priorities for p in pair})
    applied = {p: torch.cuda.Stream(priority=p).priority for p in requested}
    return dict(one_stream_p50_ms=schedules.get("inline"), schedule_p50_ms=schedules, priorities_applied=applied,
                variant=variant, p50_ms=times[len(times) // 2], p10_ms=times[len(times) // 10],
                p90_ms=times[9 * len(times) // 10], queued_p50_ms=queued[len(queued) // 2], launch_us=launch_us,
                kernels=len(kernels) / PROFILED_REPLAYS,
                busy_ms=sum(ev.time_range.elapsed_us() for ev in kernels) / 1e3 / PROFILED_REPLAYS,
                compile_s=compile_s, max_diff=diff,
                top=[(name, n / PROFILED_REPLAYS, us / PROFILED_REPLAYS) for name, (n, us) in top])


_CALL = re.compile(r"(extern_kernels\.\w+|torch\.ops\.\w+\.\w+(?:\.\w+)?|cpp_fused_\w+)\(")


def _call_kind(name: str) -> str:
    """extern_kernels.convolution -> convolution; torch.ops.mkl._mkl_linear.default -> _mkl_linear."""
    if name.startswith("cpp_fused"):
        return "fused kernels"
    parts = name.split(".")
    return parts[3] if parts[0] == "torch" else parts[1]


def _cpu_worker(args, variant: str) -> dict:
    import torch
    from torch._inductor.utils import run_and_get_code

    from fusion_edge.bench.backends_compile import time_limit
    from fusion_edge.ops import torch_ops

    with torch.inference_mode(), torch_ops.cpu_route():
        model, compiled, frames = _compiled(args, variant)
        eager = model(*frames)
        start = time.perf_counter()
        with time_limit(args.compile_timeout, f"compiling variant {variant}"):
            out, sources = run_and_get_code(compiled, *frames)
        compile_s = time.perf_counter() - start
    calls = collections.Counter()
    for source in sources:
        body = source[source.find("def call("):]
        body = body[: body.find("\ndef ", 1)] if "\ndef " in body[1:] else body
        for match in _CALL.finditer(body):
            calls[_call_kind(match.group(1))] += 1
    return dict(variant=variant, calls=dict(calls), compile_s=compile_s, max_diff=(out - eager).abs().max().item())


def _arrive(args) -> None:
    """Mark this worker as done compiling (or failed) in the ``--barrier`` folder."""
    if args.barrier:
        os.makedirs(args.barrier, exist_ok=True)
        open(os.path.join(args.barrier, f"{os.getpid()}.ready"), "w").close()


def _arrive_and_wait(args, timeout: float = 1800.0) -> None:
    """Barrier of the workers sharing ``--barrier``: arrive, then wait until ``--barrier-count`` have."""
    _arrive(args)
    deadline = time.monotonic() + timeout
    while args.barrier and time.monotonic() < deadline:
        if sum(name.endswith(".ready") for name in os.listdir(args.barrier)) >= args.barrier_count:
            return
        time.sleep(0.5)


def _run_worker(args) -> None:
    import torch

    try:
        result = (_cuda_worker(args, args.worker, args.lock) if torch.cuda.is_available()
                  else _cpu_worker(args, args.worker))
    except BaseException:
        _arrive(args)  # a failed variant must not keep the others waiting
        raise
    with open(args.result, "w") as f:
        json.dump(result, f)


def _spawn(args, variant: str, folder: str) -> dict:
    result = os.path.join(folder, f"{variant}.json")
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", variant, "--result", result,
           "--lock", args.lock or os.path.join(folder, "gpu.lock"), "--preset", args.preset,
           "--size", format_size(args.size), "--scope", args.scope, "--top", str(args.top),
           "--barrier", args.barrier or os.path.join(folder, "barrier"),
           "--barrier-count", str(args.barrier_count or len(args.variants)),
           "--compile-timeout", str(args.compile_timeout), "--schedules", ",".join(args.schedules),
           "--priorities", ",".join(f"{m}:{s}" for m, s in args.priorities)]
    if args.prior_inline:
        cmd.append("--prior-inline")
    if args.model:
        cmd += ["--model", args.model]
    cache = os.path.join(args.cache_dir or folder, f"inductor_{variant}")
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        return dict(variant=variant, error=(proc.stderr.strip().splitlines() or ["failed"])[-1][:200])
    with open(result) as f:
        return json.load(f)


def _device() -> str:
    import torch

    name = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    return f"{name}, torch {torch.__version__}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _table(args, results: list[dict]) -> str:
    title = (f"# torch.compile variants: {args.preset} {args.size[0]}x{args.size[1]}, scope {args.scope}\n\n"
             f"{_device()}; batch 1, inductor freezing on.\n\n")
    if "calls" in next((r for r in results if "error" not in r), {"calls": {}}):
        kinds = sorted({k for r in results for k in r.get("calls", {})})
        head = "| variant | all calls | " + " | ".join(kinds) + " | compile s | max diff |\n"
        head += "|---" * (len(kinds) + 4) + "|\n"
        rows = [f"| {r['variant']} | error: {r['error']} |" if "error" in r else
                f"| {r['variant']} | {sum(r['calls'].values())} | "
                + " | ".join(str(r["calls"].get(k, 0)) for k in kinds)
                + f" | {r['compile_s']:.1f} | {r['max_diff']:.2g} |" for r in results]
        return title + "CPU census of the generated code (one forward; no timing).\n\n" + head + "\n".join(rows) + "\n"
    head = ("| variant | p50 ms | p10 ms | p90 ms | queued p50 ms | one-stream p50 ms | launch us | kernels a call | "
            "GPU busy ms | compile s | max diff |\n" + "|---" * 11 + "|\n")
    rows = [f"| {r['variant']} | error: {r['error']} |" if "error" in r else
            f"| {r['variant']} | {r['p50_ms']:.3f} | {r['p10_ms']:.3f} | {r['p90_ms']:.3f} | "
            f"{r['queued_p50_ms']:.3f} | {_ms(r.get('one_stream_p50_ms'))} | "
            f"{r['launch_us']:.0f} | {r['kernels']:.0f} | {r['busy_ms']:.3f} | "
            f"{r['compile_s']:.1f} | {r['max_diff']:.2g} |" for r in results]
    text = title + "float16 model copy, compiled model replayed as one CUDA graph.\n\n" + head + "\n".join(rows) + "\n"
    for r in results:
        if len(r.get("schedule_p50_ms") or {}) > 2:
            text += (f"\nThe compiled blocks of `{r['variant']}` captured under each cross-block schedule "
                     "(`fusion_edge/models/cross_stream.py`; MAIN:SIDE are the CUDA priorities of the two "
                     f"streams, as applied: {r.get('priorities_applied')}), timed in alternating rounds:\n\n"
                     "| schedule | p50 ms |\n|---|---|\n"
                     + "".join(f"| {name} | {_ms(p50)} |\n" for name, p50 in r["schedule_p50_ms"].items()))
    for r in results:
        if r.get("top"):
            text += (f"\nKernels of `{r['variant']}` by GPU time (a call):\n\n"
                     "| kernel | launches | us |\n|---|---|---|\n"
                     + "".join(f"| `{name}` | {n:g} | {us:.1f} |\n" for name, n, us in r["top"]))
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="edge")
    parser.add_argument("--size", type=_size, default=(512, 640))
    parser.add_argument("--scope", choices=("model", "blocks", "stages"), default="model",
                        help="compile the whole model, each block, or each encoder/decoder stage "
                        "(fusion_edge.bench.backends_compile.compile_units)")
    parser.add_argument("--variants", type=_variant_list, default=list(VARIANTS))
    parser.add_argument("--jobs", type=int, default=max(1, min(len(VARIANTS), (os.cpu_count() or 1) // 4)))
    parser.add_argument("--out", help="also write the table to this markdown file")
    parser.add_argument("--top", type=int, default=0, help="list each variant's N costliest kernel groups (GPU)")
    parser.add_argument("--lock", help="time the variants holding this lock file, so several runs of this script "
                        "(or anything else taking the lock with flock) never time at once")
    parser.add_argument("--barrier", help="folder shared with other runs of this script: no variant is timed before "
                        "--barrier-count variants (of all of them) have compiled, since compiling autotunes on the GPU")
    parser.add_argument("--barrier-count", type=int, help="variants to wait for (default: this run's)")
    parser.add_argument("--compile-timeout", type=float, default=300.0,
                        help="seconds a variant may compile before it gives up (its row says so), so one slow "
                        "variant does not hold the others at the barrier (default 300)")
    parser.add_argument("--cache-dir", help="keep each variant's inductor cache in DIR/inductor_<variant> (a later "
                        "compilation of the same configuration, e.g. by `fusion-edge bench`, can reuse it); by "
                        "default the caches are temporary")
    parser.add_argument("--schedules", type=_schedule_list, default=[SIDE_SCHEDULE],
                        help="side-stream variants: the cross-block schedules to capture (the first is the "
                        "variant's own; the one-stream schedule 'inline' is always timed beside them), from "
                        f"{', '.join(s for s in SCHEDULES if s != 'inline')}")
    parser.add_argument("--priorities", type=_priority_pairs, default=[(0, 0)],
                        help="side-stream variants: MAIN:SIDE pairs of CUDA stream priorities (lower is more "
                        "urgent) to capture each schedule under, e.g. 0:0,-1:0,0:-1 (default 0:0)")
    parser.add_argument("--prior-inline", action="store_true",
                        help="models with a two-scale prior: also capture each schedule with the prior on the "
                        "main stream (by default it runs on a side stream of its own)")
    parser.add_argument("--model", help="a checkpoint to time instead of --preset with random weights")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _run_worker(args)
        return 0
    with tempfile.TemporaryDirectory() as folder, ThreadPoolExecutor(max(1, args.jobs)) as pool:
        results = list(pool.map(lambda v: _spawn(args, v, folder), args.variants))
    table = _table(args, results)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table)
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
