"""Benchmark of our CUDA kernels on the model's shapes; prints markdown tables naming the device.

    python benchmarks/kernels.py [--out FILE.md] [--compile-budget SECONDS]

1. Selective scan, every stage of the `paper` and `edge` presets at 256x256 and 512x640,
   batch 1 and 8 (u (batch, 4*2*dims[s], L), B/C (batch, 4, 16, L), float16, softplus,
   D and delta_bias): median time, the bytes the op must move, GB/s and the fraction of
   the device-to-device copy bandwidth measured in the same run; beside it the chunked
   op eager and under torch.compile, and the sequential reference (small cases only).
2. Fused ES2D against gather + scan + scatter (es2d_scan_unfused) on the same maps.
3. The conv gather (SiLU(depthwise 3x3 conv + bias) of an in_proj output half, gathered into route rows
   in one launch) against the conv (cuDNN) + SiLU + the split kernel, and the split kernel alone.
4. The merge-norm (the scanned routes merged with the SS2D layer's LayerNorm and gate applied) against our
   merge alone and the merge followed by PyTorch's LayerNorm and gate.
5. BiAttn's pooled LayerNorm with ECA's mean (fusion_edge::ln_pool) against the plain expression, both
   compiled by inductor and replayed from a CUDA graph (as in the captured model), and the op alone.
6. The LDC kernel against the folded convolution (cuDNN).
7. Model forward (512x640, float16 autocast, batch 1) with our kernels and with the chunked scan.

Timing: CUDA events around a batch of calls queued behind a GPU sleep (so CPU launch
overhead does not pad the kernels' time), median of several rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import math
import os
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from fusion_edge.kernels import launch_params

from fusion_edge.bench.profile import profile_calls
from fusion_edge.models import create_model
from fusion_edge.models.presets import PRESETS
from fusion_edge.ops import ln_pool as ln_pool_module
from fusion_edge.ops import use_impl
from fusion_edge.ops.es2d import es2d_scan_unfused
from fusion_edge.ops.ldc import ldc_effective_weight
from fusion_edge.ops.ln_pool import ln_pool
from fusion_edge.ops.selective_scan_chunked import selective_scan_chunked
from fusion_edge.ops.selective_scan_cuda import (
    es2d_conv_gather_cuda,
    es2d_scan_fused,
    ldc_conv2d_cuda,
    selective_scan_cuda,
)
from fusion_edge.ops.selective_scan_ref import selective_scan_ref

RESOLUTIONS = ((256, 256), (512, 640))
BATCHES = (1, 8)
# mamba_ssm's own forward kernel on this H100 (issue 5's anchor), paper preset, batch 1, ms.
MAMBA_ANCHOR_MS = {((512, 640), 0): 0.148, ((512, 640), 1): 0.104, ((512, 640), 2): 0.055,
                   ((512, 640), 3): 0.041, ((256, 256), 0): 0.026}
COMPILED_CHUNK_LEN = 16
REFERENCE_MAX_STEPS = 5120      # sequential reference only for batch 1 and L up to this
_CYCLES_PER_MS: float | None = None


def cycles_per_ms() -> float:
    global _CYCLES_PER_MS
    if _CYCLES_PER_MS is None:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda._sleep(1000)
        start.record()
        torch.cuda._sleep(10_000_000)
        end.record()
        end.synchronize()
        _CYCLES_PER_MS = 10_000_000 / start.elapsed_time(end)
    return _CYCLES_PER_MS


def bench(fn: Callable[[], object], *, rounds: int = 7, reps: int = 20, warmup: int = 2) -> float:
    """Median milliseconds per call of ``fn`` on the GPU timeline."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    cpu_ms = (time.perf_counter() - t0) * 1e3
    reps = max(1, min(reps, int(200 / max(cpu_ms, 1e-3))))
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(rounds):
        torch.cuda._sleep(int(min(reps * cpu_ms * 1.5 + 0.2, 400) * cycles_per_ms()))
        start.record()
        for _ in range(reps):
            fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / reps)
    return statistics.median(times)


def copy_bandwidth_gbs() -> float:
    n = 1 << 28  # 1 GiB of float32
    src = torch.empty(n, device="cuda")
    dst = torch.empty_like(src)
    ms = bench(lambda: dst.copy_(src), rounds=5, reps=5)
    return 2 * src.numel() * 4 / ms / 1e6


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.float(), b.float()
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def fmt(ms: float | None) -> str:
    if ms is None:
        return "—"
    return f"{ms:.4f}" if ms < 1 else f"{ms:.2f}"


def stage_shapes():
    for preset in ("paper", "edge"):
        dims = PRESETS[preset]["dims"]
        for height, width in RESOLUTIONS:
            for s in range(4):
                h, w = height // 4 // 2**s, width // 4 // 2**s
                yield preset, (height, width), s, 2 * dims[s], h, w


def scan_inputs(batch: int, channels: int, length: int, gen: torch.Generator):
    def rnd(*shape, scale=1.0, dtype=torch.float16):
        return (torch.randn(*shape, generator=gen, device="cuda") * scale).to(dtype)

    u = rnd(batch, channels, length)
    delta = rnd(batch, channels, length, scale=0.5)
    A = -torch.exp(rnd(channels, 16, scale=0.5, dtype=torch.float32))
    B = rnd(batch, 4, 16, length)
    C = rnd(batch, 4, 16, length)
    D = rnd(channels, dtype=torch.float32)
    bias = rnd(channels, scale=0.5, dtype=torch.float32) - 1
    return u, delta, A, B, C, D, bias


def scan_row(preset, res, s, channels, length, batch, copy_gbs, gen):
    u, delta, A, B, C, D, bias = scan_inputs(batch, channels, length, gen)
    args = (u, delta, A, B, C)
    kw = dict(D=D, delta_bias=bias, delta_softplus=True)
    nbytes = (3 * u.numel() + B.numel() + C.numel()) * 2 + (A.numel() + D.numel() + bias.numel()) * 4
    ours = bench(functools.partial(selective_scan_cuda, *args, **kw))
    unsplit = None
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    if launch_params.scan_chunks(channels, length, 16, sms)[1] > 1:
        launch_params.SCAN_SPLIT = False
        try:
            unsplit = bench(functools.partial(selective_scan_cuda, *args, **kw))
        finally:
            launch_params.SCAN_SPLIT = True
    chunk = bench(functools.partial(selective_scan_chunked, *args, **kw), rounds=3, reps=3)
    diff = rel_diff(selective_scan_cuda(*args, **kw), selective_scan_chunked(*args, **kw))
    ref = None
    if batch == 1 and length <= REFERENCE_MAX_STEPS:
        ref = bench(functools.partial(selective_scan_ref, *args, **kw), rounds=1, reps=1, warmup=1)
    anchor = MAMBA_ANCHOR_MS.get((res, s)) if preset == "paper" and batch == 1 else None
    gbs = nbytes / ours / 1e6
    return (
        f"| {preset} | {res[0]}x{res[1]} | {s + 1} | {batch} | ({batch}, {channels}, {length}) "
        f"| {nbytes / 1e6:.1f} | {fmt(ours)} | {fmt(unsplit)} | {gbs:.0f} | {100 * gbs / copy_gbs:.1f}% | {fmt(chunk)} "
        f"| {fmt(ref)} | {fmt(anchor)} | {f'{anchor / ours:.1f}x' if anchor else '—'} | {chunk / ours:.0f}x "
        f"| {diff:.1e} |"
    )


def scan_table(copy_gbs: float) -> list[str]:
    lines = [
        "| preset | HxW | stage | batch | u shape | MB moved | ours ms | ours, L not split ms | GB/s "
        "| % of copy BW | chunked ms | reference ms | mamba_ssm anchor ms | ours vs anchor | ours vs chunked "
        "| max rel diff vs chunked |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    gen = torch.Generator(device="cuda").manual_seed(0)
    for preset, res, s, d_inner, h, w in stage_shapes():
        channels, length = 4 * d_inner, math.ceil(h / 2) * math.ceil(w / 2)
        for batch in BATCHES:
            lines.append(scan_row(preset, res, s, channels, length, batch, copy_gbs, gen))
            print(lines[-1], flush=True)
    return lines


def compiled_cases() -> list[tuple[str, int, int, int]]:
    """(preset, stage, channels, L) of the compiled comparison: batch 1 at 512x640, every paper stage and
    edge's stage 1."""
    return [(preset, s, 4 * d_inner, math.ceil(h / 2) * math.ceil(w / 2))
            for preset, res, s, d_inner, h, w in stage_shapes()
            if res == (512, 640) and not (preset == "edge" and s > 0)]


def _compiled_worker(case, go, lock, queue) -> None:
    """One case in its own process: compile, report, wait for ``go`` (every case compiled, or the budget
    spent), then time the compiled op and ours holding ``lock`` (one case on the GPU at a time)."""
    preset, s, channels, length = case
    gen = torch.Generator(device="cuda").manual_seed(3 + s)
    # chunk_len 16: a quarter of the default's graph, so inductor compiles it in reasonable time
    compiled = torch.compile(functools.partial(selective_scan_chunked, chunk_len=COMPILED_CHUNK_LEN), dynamic=False)
    u, delta, A, B, C, D, bias = scan_inputs(1, channels, length, gen)
    args, kw = (u, delta, A, B, C), dict(D=D, delta_bias=bias, delta_softplus=True)
    t0 = time.perf_counter()
    compiled(*args, **kw)
    torch.cuda.synchronize()
    took = time.perf_counter() - t0
    queue.put(("compiled", case, took))
    go.wait()
    with lock:
        comp = bench(functools.partial(compiled, *args, **kw), rounds=5, reps=5)
        ours = bench(functools.partial(selective_scan_cuda, *args, **kw))
    queue.put(("timed", case, (took, comp, ours)))


def compiled_table(budget_s: float, wait_for: str | None = None) -> list[str]:
    """The chunked op under torch.compile, batch 1 at 512x640. Inductor takes about a minute a shape,
    so every case compiles at once in its own process (compiling is CPU work); timing starts once all
    have compiled or ``budget_s`` is spent (and, with ``wait_for``, once that file exists, so another
    benchmark can have the GPU alone), one case at a time. A case still compiling then is reported."""
    import multiprocessing as mp
    import queue as queue_module

    lines = [f"| preset | stage | u shape | compile s | chunked (T={COMPILED_CHUNK_LEN}) compiled ms | ours ms "
             "| ours vs compiled |", "|---|---|---|---|---|---|---|"]
    ctx = mp.get_context("spawn")  # CUDA in the children
    go, lock, results = ctx.Event(), ctx.Lock(), ctx.Queue()
    cases = compiled_cases()
    workers = [ctx.Process(target=_compiled_worker, args=(case, go, lock, results), daemon=True) for case in cases]
    for worker in workers:
        worker.start()
    deadline, compiled, timed = time.monotonic() + budget_s, {}, {}

    def collect(until: float, done: Callable[[], bool]) -> None:
        while not done() and time.monotonic() < until:
            with contextlib.suppress(queue_module.Empty):
                kind, case, value = results.get(timeout=1.0)
                (compiled if kind == "compiled" else timed)[case] = value
                if kind == "compiled":
                    print(f"compiled {case[0]} stage {case[1] + 1} in {value:.0f} s", flush=True)

    collect(deadline, lambda: len(compiled) == len(cases))
    while wait_for and not os.path.exists(wait_for):
        time.sleep(1)
    go.set()
    collect(time.monotonic() + 120 * len(compiled), lambda: len(timed) == len(compiled))
    for worker in workers:
        worker.join(timeout=1)
        if worker.is_alive():
            worker.terminate()
    for case in cases:
        preset, s, channels, length = case
        if case in timed:
            took, comp, ours = timed[case]
            lines.append(f"| {preset} | {s + 1} | (1, {channels}, {length}) | {took:.0f} | {fmt(comp)} | "
                         f"{fmt(ours)} | {comp / ours:.0f}x |")
        else:
            code = workers[cases.index(case)].exitcode
            why = (f"failed (exit code {code}; its error is above)" if code not in (None, 0, -15)
                   else "compiled, not timed" if case in compiled else f"not compiled within {budget_s:.0f} s")
            lines.append(f"| {preset} | {s + 1} | (1, {channels}, {length}) | {why} | — | — | — |")
        print(lines[-1], flush=True)
    return lines


def es2d_params(d: int, gen: torch.Generator):
    rank, n = math.ceil(d / 2 / 16), 16
    xw = torch.randn(4, rank + 2 * n, d, generator=gen, device="cuda") / d**0.5
    dtw = torch.randn(4, d, rank, generator=gen, device="cuda") / rank**0.5
    dtb = torch.randn(4, d, generator=gen, device="cuda") * 0.5 - 2
    A_logs = torch.randn(4 * d, n, generator=gen, device="cuda") * 0.5
    Ds = torch.randn(4 * d, generator=gen, device="cuda")
    return xw, dtw, dtb, A_logs, Ds


@torch.no_grad()
def es2d_table() -> list[str]:
    lines = [
        "| preset | HxW | stage | batch | x shape | fused ms | gather+scan+scatter (our scan) ms "
        "| gather+scan+scatter (chunked) ms | fused speed-up | max rel diff |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    gen = torch.Generator(device="cuda").manual_seed(1)
    for preset, res, s, d, h, w in stage_shapes():
        for batch in BATCHES:
            x = torch.randn(batch, d, h, w, generator=gen, device="cuda").half()
            params = es2d_params(d, gen)
            fused = bench(functools.partial(es2d_scan_fused, x, *params))
            unfused = bench(functools.partial(es2d_scan_unfused, x, *params, impl="cuda"))
            chunked = bench(functools.partial(es2d_scan_unfused, x, *params, impl="chunked"), rounds=3, reps=3)
            diff = rel_diff(es2d_scan_fused(x, *params), es2d_scan_unfused(x, *params, impl="cuda"))
            lines.append(
                f"| {preset} | {res[0]}x{res[1]} | {s + 1} | {batch} | {tuple(x.shape)} | {fmt(fused)} "
                f"| {fmt(unfused)} | {fmt(chunked)} | {unfused / fused:.1f}x | {diff:.1e} |"
            )
            print(lines[-1], flush=True)
    return lines


def _conv_silu(a: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """The unfused SS2D map: cuDNN's depthwise conv of the (1, h, w, D) input, SiLU, channels-last."""
    m = F.silu(F.conv2d(a.permute(0, 3, 1, 2), weight, bias, padding=1, groups=a.shape[-1]))
    return m.permute(0, 2, 3, 1).contiguous()


def _conv_silu_split(a, weight, bias, rows, stream) -> torch.Tensor:
    from fusion_edge import kernels

    kernels.launch_es2d_split(_conv_silu(a, weight, bias), rows, channels_last=True, stream=stream)
    return rows


@torch.no_grad()
def conv_gather_table(copy_gbs: float) -> list[str]:
    """The SS2D layer's conv gather on each stage's map (float16, batch 1 and 2: the decoder's and the shared
    encoder's): a (batch, h, w, 2D) in_proj output whose first half is convolved in place, with the launcher's
    tile and each tile forced; bytes = that half read once + the route rows written once."""
    from fusion_edge.kernels import launch, launch_params

    from fusion_edge import kernels

    big = launch_params.ES2D_CONV_TILE
    lines = [f"| preset | HxW | stage | batch | map (h, w, D) | conv gather ms (tile) | GB/s | of copy bw "
             f"| tile {big} ms | tile {big // 2} ms | conv (cuDNN) + SiLU + split ms | split alone ms | max rel diff |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    gen = torch.Generator(device="cuda").manual_seed(3)
    stream = torch.cuda.current_stream().cuda_stream
    sms = launch.sm_count(launch.current_device())
    for preset, res, s, d, h, w in stage_shapes():
        if res != (512, 640):
            continue
        for batch in (1, 2):
            full = torch.randn(batch, h, w, 2 * d, generator=gen, device="cuda").half()
            a = full[..., :d]
            weight = (torch.randn(d, 1, 3, 3, generator=gen, device="cuda") / 3).half()
            bias = torch.randn(d, generator=gen, device="cuda").half()
            rows = torch.empty(batch, 4 * d, ((h + 1) // 2) * ((w + 1) // 2), device="cuda", dtype=torch.half)
            conv_then_split = functools.partial(_conv_silu_split, a, weight, bias, rows, stream)
            gathered = bench(functools.partial(es2d_conv_gather_cuda, a, weight, bias))
            forced = [bench(functools.partial(kernels.launch_es2d_conv_split, full, weight, bias, rows, tile=tile,
                                              stream=stream)) for tile in (big, big // 2)]
            separate = bench(conv_then_split)
            conv_map = _conv_silu(a, weight, bias)
            split = bench(functools.partial(kernels.launch_es2d_split, conv_map, rows, channels_last=True,
                                            stream=stream))
            nbytes = (a.numel() + rows.numel()) * 2
            chosen = launch_params.es2d_conv_split_tile(batch, d, h, w, 2, sms)
            diff = rel_diff(es2d_conv_gather_cuda(a, weight, bias).reshape(rows.shape), conv_then_split())
            lines.append(f"| {preset} | {res[0]}x{res[1]} | {s + 1} | {batch} | ({h}, {w}, {d}) | {fmt(gathered)} "
                         f"({chosen}) | {nbytes / gathered / 1e6:.0f} | {nbytes / gathered / 1e6 / copy_gbs:.0%} "
                         f"| {fmt(forced[0])} | {fmt(forced[1])} | {fmt(separate)} | {fmt(split)} | {diff:.1e} |")
            print(lines[-1], flush=True)
    return lines


def _pooled_plain(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor):
    """BiAttn's pooled LayerNorm and ECA's mean as the blocks wrote them before fusion_edge::ln_pool."""
    return F.layer_norm(x, x.shape[-1:], weight, bias, 1e-5).mean(dim=(1, 2)), x.mean(dim=(1, 2))


def _pooled_op(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor):
    """The same through fusion_edge.ops.ln_pool (the op where it applies)."""
    return ln_pool(x, weight, bias, 1e-5, with_raw=True)


def capture(fn: Callable[[], object], calls: int = 1):
    """``fn()`` captured ``calls`` times in one CUDA graph after three warm-up calls on a side stream (compilation,
    lazy loading and the allocator's pools happen there, not in the capture): the replay and the last output."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            out = fn()
    return graph.replay, out


def graph_replay(fn: Callable[[], object], *, calls: int = 20) -> tuple[float, float]:
    """(milliseconds, GPU kernels) per call of ``fn`` captured ``calls`` times in one CUDA graph and replayed: what
    a captured model pays for it, launch gaps included and host overhead excluded."""
    replay, _ = capture(fn, calls)
    kernels = profile_calls(replay, 1, on_gpu=True).launches_per_call / calls
    return bench(replay) / calls, kernels


@torch.no_grad()
def ln_pool_table(copy_gbs: float) -> list[str]:
    """BiAttn's pooled LayerNorm with ECA's mean of the same map (float16, batch 1 and 2, a DVSS block's map at
    each stage of paper and edge, 512x640), compiled by inductor both ways, each captured 20 times in a CUDA
    graph and replayed (as in the captured model): fusion_edge::ln_pool (the pass and the shares' sum) against
    the plain expression; the op alone too. Bytes = the map read once."""
    for option in ("recompile_limit", "cache_size_limit"):  # one compilation per shape
        if hasattr(torch._dynamo.config, option):
            setattr(torch._dynamo.config, option, 64)
    compiled_plain = torch.compile(_pooled_plain, dynamic=False)
    compiled_ours = torch.compile(_pooled_op, dynamic=False)
    lines = ["| preset | stage | batch | map (h, w, C) | compiled with ln_pool ms (kernels) | the op alone ms "
             "| GB/s (op) | of copy bw | compiled expression ms (kernels) | expression / ln_pool | max abs diff |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    gen = torch.Generator(device="cuda").manual_seed(5)
    previous, ln_pool_module.ENABLED = ln_pool_module.ENABLED, True
    try:
        for preset in ("paper", "edge"):
            for s, dim in enumerate(PRESETS[preset]["dims"]):
                h, w = 512 // 4 // 2**s, 640 // 4 // 2**s
                for batch in (1, 2):
                    x = (torch.randn(batch, h, w, dim, generator=gen, device="cuda") * 2 + 0.5).half()
                    weight = torch.randn(dim, generator=gen, device="cuda").half()
                    bias = torch.randn(dim, generator=gen, device="cuda").half()
                    ours, ours_k = graph_replay(functools.partial(compiled_ours, x, weight, bias))
                    op, _ = graph_replay(functools.partial(torch.ops.fusion_edge.ln_pool, x, weight, bias, 1e-5, True))
                    plain, plain_k = graph_replay(functools.partial(compiled_plain, x, weight, bias))
                    got, want = compiled_ours(x, weight, bias), _pooled_plain(x, weight, bias)
                    diff = max((a.float() - b.float()).abs().max().item() for a, b in zip(got, want))
                    nbytes = x.numel() * 2
                    lines.append(f"| {preset} | {s + 1} | {batch} | ({h}, {w}, {dim}) | {fmt(ours)} ({ours_k:.0f}) "
                                 f"| {fmt(op)} | {nbytes / op / 1e6:.0f} | {nbytes / op / 1e6 / copy_gbs:.0%} "
                                 f"| {fmt(plain)} ({plain_k:.0f}) | {plain / ours:.2f}x | {diff:.1e} |")
                    print(lines[-1], flush=True)
    finally:
        ln_pool_module.ENABLED = previous
    return lines


def _merge_then_norm_gate(kernels, ys, z, weight, bias, d, h, w, stream) -> torch.Tensor:
    """The separate form: our merge into a channels-last map, then PyTorch's LayerNorm and gate."""
    merged = torch.empty(ys.shape[0], h, w, d, device="cuda", dtype=ys.dtype)
    kernels.launch_es2d_merge(ys, merged, h=h, w=w, channels_last=True, stream=stream)
    return F.layer_norm(merged, (d,), weight, bias, 1e-5) * F.silu(z)


@torch.no_grad()
def merge_norm_table(copy_gbs: float) -> list[str]:
    """The SS2D layer's merge + LayerNorm + gate (float16, batch 1 and 2) on each stage's map: the merge-norm
    kernel at the launcher's plan and at the most positions that fit a block, against our merge alone (which
    stores the map the separate form then reads) and the merge followed by PyTorch's LayerNorm and gate.
    Bytes = the rows and z read once, the output written once."""
    from fusion_edge.kernels import launch, launch_params

    from fusion_edge import kernels

    lines = ["| preset | HxW | stage | batch | map (h, w, D) | merge-norm ms (positions) | GB/s | of copy bw "
             "| most positions ms (positions) | merge alone ms | merge + torch LayerNorm, gate ms | max rel diff |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    gen = torch.Generator(device="cuda").manual_seed(4)
    stream = torch.cuda.current_stream().cuda_stream
    sms = launch.sm_count(torch.cuda.current_device())
    for preset, res, s, d, h, w in stage_shapes():
        if res != (512, 640):
            continue
        for batch in (1, 2):
            length = ((h + 1) // 2) * ((w + 1) // 2)
            ys = torch.randn(batch, 4 * d, length, generator=gen, device="cuda").half()
            z = torch.randn(batch, h, w, 2 * d, generator=gen, device="cuda").half()[..., d:]
            weight = (1 + torch.randn(d, generator=gen, device="cuda") / 4).half()
            bias = (torch.randn(d, generator=gen, device="cuda") / 4).half()
            out = torch.empty(batch, h, w, d, device="cuda", dtype=torch.half)
            zrows = kernels.DeviceArray(z.data_ptr(), (batch, h, w, 2 * d), "float16", z.device.index)  # in place
            vec = launch_params.es2d_merge_norm_vectorized(d, 2, length, 2 * d)
            plan = launch_params.es2d_merge_norm_plan(batch, d, length, 2, vec, sms)
            most = launch_params.es2d_merge_norm_positions(d, 2, vectorized=vec)
            fused = [bench(functools.partial(kernels.launch_es2d_merge_norm, ys, zrows, weight, bias, out, h=h, w=w,
                                             eps=1e-5, positions=p, stream=stream)) for p in (plan, most)]
            merged = torch.empty(batch, h, w, d, device="cuda", dtype=torch.half)
            merge = bench(functools.partial(kernels.launch_es2d_merge, ys, merged, h=h, w=w, channels_last=True,
                                            stream=stream))
            separate = functools.partial(_merge_then_norm_gate, kernels, ys, z, weight, bias, d, h, w, stream)
            kernels.launch_es2d_merge_norm(ys, zrows, weight, bias, out, h=h, w=w, eps=1e-5, stream=stream)
            diff = rel_diff(out, separate())
            nbytes = 3 * batch * h * w * d * 2
            lines.append(f"| {preset} | {res[0]}x{res[1]} | {s + 1} | {batch} | ({h}, {w}, {d}) | {fmt(fused[0])} "
                         f"({plan}) | {nbytes / fused[0] / 1e6:.0f} | {nbytes / fused[0] / 1e6 / copy_gbs:.0%} "
                         f"| {fmt(fused[1])} ({most}) | {fmt(merge)} | {fmt(bench(separate))} | {diff:.1e} |")
            print(lines[-1], flush=True)
    return lines


@torch.no_grad()
def ldc_table() -> list[str]:
    lines = ["| preset | HxW | stage | x shape | LDC kernel ms | folded conv (cuDNN) ms | max rel diff |",
             "|---|---|---|---|---|---|---|"]
    gen = torch.Generator(device="cuda").manual_seed(2)
    for preset, res, s, d_inner, h, w in stage_shapes():
        if res != (512, 640):
            continue
        c = d_inner // 2
        x = torch.randn(1, c, h, w, generator=gen, device="cuda").half()
        weight = torch.randn(c, c, 3, 3, generator=gen, device="cuda") / (3 * c**0.5)
        mask = torch.ones(c, c, 3, 3, device="cuda")
        lmask = torch.randn(c, c, generator=gen, device="cuda")
        theta = torch.full((1,), 0.5, device="cuda")
        folded = ldc_effective_weight(weight, mask, lmask, theta).half()
        ours = bench(functools.partial(ldc_conv2d_cuda, x, weight, mask, lmask, theta))
        cudnn = bench(functools.partial(F.conv2d, x, folded, padding=1))
        diff = rel_diff(ldc_conv2d_cuda(x, weight, mask, lmask, theta), F.conv2d(x, folded, padding=1))
        lines.append(f"| {preset} | {res[0]}x{res[1]} | {s + 1} | {tuple(x.shape)} | {fmt(ours)} | {fmt(cudnn)} "
                     f"| {diff:.1e} |")
        print(lines[-1], flush=True)
    return lines


@contextlib.contextmanager
def ldc_kernel(enabled: bool):
    """Let the model's LDC layers run our kernel (otherwise the reference cuDNN convolution)."""
    ldc_ops = importlib.import_module("fusion_edge.ops.ldc")
    saved = ldc_ops._CUDA_LDC_AUTO
    ldc_ops._CUDA_LDC_AUTO = enabled
    try:
        yield
    finally:
        ldc_ops._CUDA_LDC_AUTO = saved


def autocast_forward(model, vis, ir):
    with torch.autocast("cuda", dtype=torch.float16):
        return model(vis, ir)


@torch.no_grad()
def model_table() -> list[str]:
    lines = ["| preset | input | chunked scan ms | our kernels ms | our kernels + LDC kernel ms | speed-up "
             "| max rel diff |", "|---|---|---|---|---|---|---|"]
    for preset in ("paper", "edge"):
        torch.manual_seed(0)
        model = create_model(preset).cuda().eval()
        vis = torch.rand(1, 1, 512, 640, device="cuda")
        ir = torch.rand(1, 1, 512, 640, device="cuda")

        run = functools.partial(autocast_forward, model, vis, ir)

        with use_impl("chunked"), ldc_kernel(False):
            chunked = bench(run, rounds=3, reps=2)
            y_chunked = run()
        with ldc_kernel(False):
            ours = bench(run, rounds=5, reps=5)
            y_ours = run()
        with ldc_kernel(True):
            ours_ldc = bench(run, rounds=5, reps=5)
        lines.append(f"| {preset} | (1, 1, 512, 640) fp16 autocast | {fmt(chunked)} | {fmt(ours)} | {fmt(ours_ldc)} "
                     f"| {chunked / ours:.1f}x | {rel_diff(y_ours, y_chunked):.1e} |")
        print(lines[-1], flush=True)
        del model
        torch.cuda.empty_cache()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="also write the tables to this markdown file (after each section)")
    parser.add_argument("--compile-budget", type=float, default=150.0,
                        help="compiled section: seconds the cases (compiled at once, one process each) may take")
    parser.add_argument("--sections", default="scan,es2d,conv,norm,pool,ldc,model,compiled")
    parser.add_argument("--wait-for", help="compiled section: time only once this file exists")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("this benchmark needs a CUDA GPU")
    copy_gbs = copy_bandwidth_gbs()
    out = [f"Device: {torch.cuda.get_device_name()} (torch {torch.__version__}); device-to-device copy "
           f"bandwidth measured in this run: {copy_gbs:.0f} GB/s (read + write).", ""]
    print("\n".join(out), flush=True)
    sections = {
        "scan": ("Selective scan (float16, N=16, 4 groups, softplus, D, delta_bias)",
                 functools.partial(scan_table, copy_gbs)),
        "es2d": ("Fused ES2D vs gather + scan + scatter (x float16, output float32)", es2d_table),
        "conv": ("Conv gather vs conv + SiLU + split (float16, batch 1 and 2, 512x640; both tiles forced)",
                 functools.partial(conv_gather_table, copy_gbs)),
        "norm": ("Merge-norm vs merge, then LayerNorm and gate (float16, 512x640)",
                 functools.partial(merge_norm_table, copy_gbs)),
        "pool": ("Pooled LayerNorm (BiAttn) with ECA's mean vs the plain expression (float16, paper, 512x640)",
                 functools.partial(ln_pool_table, copy_gbs)),
        "ldc": ("LDC kernel vs the folded convolution (float16, batch 1)", ldc_table),
        "model": ("Model forward, batch 1", model_table),
        "compiled": ("Chunked op under torch.compile (float16, batch 1, 512x640)",
                     functools.partial(compiled_table, args.compile_budget, args.wait_for)),
    }
    for name in args.sections.split(","):
        title, table = sections[name]
        out += [f"## {title}", ""] + table() + [""]
        if args.out:
            with open(args.out, "w") as f:
                f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
