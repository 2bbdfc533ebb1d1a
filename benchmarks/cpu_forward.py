"""CPU forward latency of each preset with the sequential and the chunked selective scan.

Prints two markdown tables: the whole model (batch 1, ``for_inference()``, no_grad) per
preset, size and scan implementation, and the scan alone at each preset's stage-1 shape
(where the sequence is longest), with the chunked scan's speed-up over the sequential one.

    PYTHONPATH=. python3 benchmarks/cpu_forward.py --output benchmarks/results/cpu_forward.md
    PYTHONPATH=. python3 benchmarks/cpu_forward.py --presets edge --sizes 256x256 --repeat 3

A combination whose first (warm-up) run shows that its timed runs would take longer than
``--cap`` seconds is not repeated; its cell shows that one cold run, marked as such.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from fusion_edge import create_model
from fusion_edge.models.presets import PRESETS, preset_config
from fusion_edge.ops import selective_scan, use_impl

IMPLS = ("reference", "chunked")
ROUTES = 4
EXPAND = 2
PATCH = 4
SKIP = 2  # ES2D samples every second row and column


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_line() -> str:
    load = " ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return (
        f"Device: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"(torch threads: {torch.get_num_threads()}); load average at start {load}"
    )


def parse_size(text: str) -> tuple[int, int]:
    h, _, w = text.lower().partition("x")
    if not (h.isdigit() and w.isdigit()):
        raise argparse.ArgumentTypeError(f"size must look like 512x640 (height x width), got {text!r}")
    return int(h), int(w)


class Timing:
    """Median wall-clock and CPU (process) seconds of the timed runs of one combination."""

    def __init__(self, walls: list[float], cpus: list[float], capped: bool):
        self.wall, self.cpu = statistics.median(walls), statistics.median(cpus)
        self.runs, self.capped = len(walls), capped

    def cell(self) -> str:
        text = f"{seconds(self.wall)} ({seconds(self.cpu)} CPU)"
        return text + ", 1 cold run: over cap" if self.capped else text


def seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 10 else f"{value:.1f} s"


def measure(fn: Callable[[], object], repeat: int, cap: float) -> Timing:
    """One warm-up run, then ``repeat`` timed runs; when warm-up * repeat > cap, the warm-up
    is the only (cold) run reported."""

    def timed() -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        return time.perf_counter() - wall, time.process_time() - cpu

    warm_wall, warm_cpu = timed()
    if warm_wall * repeat > cap:
        return Timing([warm_wall], [warm_cpu], capped=True)
    runs = [timed() for _ in range(repeat)]
    return Timing([w for w, _ in runs], [c for _, c in runs], capped=False)


def speedup(sequential: Timing, chunked: Timing) -> str:
    return f"{sequential.wall / chunked.wall:.1f}x ({sequential.cpu / chunked.cpu:.1f}x CPU)"


def model_table(presets: list[str], sizes: list[tuple[int, int]], repeat: int, cap: float) -> list[str]:
    rows = ["| preset | size (HxW) | sequential scan | chunked scan | speed-up |", "|---|---|---|---|---|"]
    for preset in presets:
        model = create_model(preset).eval().for_inference()
        for h, w in sizes:
            vis, ir = torch.rand(1, 1, h, w), torch.rand(1, 1, h, w)
            timing = {}
            for impl in IMPLS:
                with use_impl(impl), torch.no_grad():
                    timing[impl] = measure(lambda m=model, a=vis, b=ir: m(a, b), repeat, cap)
                print(f"  {preset} {h}x{w} {impl}: {timing[impl].cell()}", file=sys.stderr, flush=True)
            rows.append(
                f"| {preset} | {h}x{w} | {timing['reference'].cell()} | {timing['chunked'].cell()} | "
                f"{speedup(timing['reference'], timing['chunked'])} |"
            )
    return rows


def stage1_scan_inputs(preset: str, h: int, w: int, seed: int = 0) -> dict:
    """Scan inputs of the shape the first stage's ES2D hands the scan, with model-like values."""
    cfg = preset_config(preset)
    dim = ROUTES * EXPAND * cfg["dims"][0]
    n_state = cfg["d_state"]
    length = -(-h // (PATCH * SKIP)) * -(-w // (PATCH * SKIP))
    g = torch.Generator().manual_seed(seed)
    return dict(
        u=torch.randn(1, dim, length, generator=g),
        delta=torch.randn(1, dim, length, generator=g) * 0.5,
        A=-torch.arange(1, n_state + 1, dtype=torch.float32).repeat(dim, 1),  # the model's A init
        B=torch.randn(1, ROUTES, n_state, length, generator=g),
        C=torch.randn(1, ROUTES, n_state, length, generator=g),
        D=torch.ones(dim),
        delta_bias=torch.empty(dim).uniform_(-6.9, -2.3, generator=g),  # softplus^-1 of dt in [1e-3, 0.1]
        delta_softplus=True,
    )


def scan_table(presets: list[str], sizes: list[tuple[int, int]], repeat: int, cap: float) -> list[str]:
    rows = [
        "| presets | size (HxW) | scan shape (channels x N x L) | sequential | chunked | speed-up |",
        "|---|---|---|---|---|---|",
    ]
    for h, w in sizes:
        by_shape: dict[tuple[int, int, int], list[str]] = {}  # tiny and paper share stage 1
        for preset in presets:
            cfg = preset_config(preset)
            length = -(-h // (PATCH * SKIP)) * -(-w // (PATCH * SKIP))
            by_shape.setdefault((ROUTES * EXPAND * cfg["dims"][0], cfg["d_state"], length), []).append(preset)
        for shape, names in by_shape.items():
            args = stage1_scan_inputs(names[0], h, w)
            timing = {}
            for impl in IMPLS:
                with torch.no_grad():
                    timing[impl] = measure(lambda a=args, i=impl: selective_scan(**a, impl=i), repeat, cap)
            rows.append(
                f"| {', '.join(names)} | {h}x{w} | {shape[0]} x {shape[1]} x {shape[2]} | "
                f"{timing['reference'].cell()} | {timing['chunked'].cell()} | "
                f"{speedup(timing['reference'], timing['chunked'])} |"
            )
            print(f"  scan: {rows[-1]}", file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="edge,tiny,paper", help="comma-separated, of: " + ", ".join(PRESETS))
    parser.add_argument("--sizes", default="256x256,512x640", help="comma-separated HxW")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs after one warm-up (median reported)")
    parser.add_argument("--cap", type=float, default=120.0, help="seconds allowed for one combination's timed runs")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--skip-model", action="store_true", help="only the scan table")
    parser.add_argument("--output", type=Path, help="also write the tables to this markdown file")
    args = parser.parse_args(argv)
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    unknown = [p for p in presets if p not in PRESETS]
    if unknown:
        parser.error(f"unknown preset(s) {unknown}; choose from {', '.join(PRESETS)}")
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)

    lines = [
        "# CPU forward latency: sequential vs chunked selective scan",
        "",
        device_line(),
        "",
        f"Batch 1, `for_inference()`, `torch.no_grad()`; median of {args.repeat} runs after one warm-up. "
        "Each cell: wall-clock time (CPU time of the process, all threads).",
        "",
    ]
    if not args.skip_model:
        lines += ["## Whole model", "", *model_table(presets, sizes, args.repeat, args.cap), ""]
    lines += [
        "## Scan only, stage-1 shape",
        "",
        "channels = 4 routes x 2 (expand) x dims[0]; L = (H/8) x (W/8) after patch embedding and ES2D's skip sampling.",
        "",
        *scan_table(presets, sizes, args.repeat, args.cap),
        "",
    ]
    load = " ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    lines.append(f"Load average at end {load}. A load above the core count means other processes shared the cores.")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
