"""``fusion-edge bench``: measure the model's latency per backend and input size on this machine."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from pathlib import Path


def _size(text: str) -> tuple[int, int]:
    from fusion_edge.bench.config import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def register(subparsers) -> None:
    from fusion_edge.bench.config import (
        BACKENDS,
        COMPILE_BACKENDS,
        COMPILE_MODES,
        COMPILE_SCOPES,
        PRESET_NAMES,
        TORCH_FP16_MODES,
    )

    p = subparsers.add_parser(
        "bench",
        help="measure latency, throughput and memory per backend and input size",
        description="Benchmark the fusion model: warm-up, then latency percentiles (p50/p90/p99), frames/s, "
        "peak GPU memory, GFLOPs and bytes moved per frame, for each backend at each size. Backends that "
        "cannot run here are listed with the reason. Writes a markdown table to stdout and, with --out, "
        "bench.md, bench.json and bench.png.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--preset", choices=PRESET_NAMES, help="benchmark a preset with random weights")
    src.add_argument("--model", type=Path, help="a checkpoint (.pt/.pth), an ONNX file or a TensorRT engine")
    p.add_argument("--model-preset", dest="model_preset", choices=PRESET_NAMES,
                   help="with --model CHECKPOINT: the preset the checkpoint must match")
    p.add_argument("--backend", nargs="+", default=list(BACKENDS), metavar="NAME",
                   help=f"backends to measure (default: all): {', '.join(BACKENDS)}")
    p.add_argument("--size", nargs="+", type=_size, metavar="HxW",
                   help="input sizes, height x width (default: 256x256 480x640 512x640 1024x1280 on a GPU; "
                   "smaller on CPU)")
    p.add_argument("--fp16", action="store_true", help="half precision: autocast for torch, fp16 ONNX/engine")
    p.add_argument("--torch-fp16", choices=TORCH_FP16_MODES, default="autocast",
                   help="how torch backends run --fp16: autocast (default) or half, a float16 copy of the model "
                   "(scan parameters float32) fed float16 inputs")
    p.add_argument("--compile-mode", choices=COMPILE_MODES, default="default",
                   help="torch.compile mode of torch-cuda-compile(-graph) (default: default)")
    p.add_argument("--compile-scope", choices=COMPILE_SCOPES, default="blocks",
                   help="torch-cuda-compile(-graph): compile each block on its own (default: a fraction of the "
                   "compile time, and the cross-modal blocks can run on their own stream), each encoder/decoder "
                   "stage whole (stages: the blocks of a stage fuse at their seams) or the whole model")
    p.add_argument("--compile-backend", choices=COMPILE_BACKENDS, default="inductor",
                   help="torch.compile backend of the compiled backends (default inductor; aot_eager and eager only "
                   "trace, to check for graph breaks quickly)")
    p.add_argument("--no-freeze", action="store_true",
                   help="compiled backends: do not let inductor fold the weights into the compiled code "
                   "(freezing, on by default: the benchmark only runs inference)")
    p.add_argument("--cross-stream", action=argparse.BooleanOptionalAction, default=True,
                   help="PyTorch backends on a GPU: run the cross-modal fusion blocks on a second CUDA stream beside "
                   "the decoder (on by default; the compiled backends with --compile-scope blocks or stages only, "
                   "since a whole-model compilation traces one stream)")
    p.add_argument("--no-combo", action="store_true",
                   help="compiled backends on a GPU: do not let inductor launch independent small kernels as one "
                   "(combo kernels, on by default)")
    p.add_argument("--autotune-pointwise", action="store_true",
                   help="compiled backends on a GPU: let inductor time several configurations of each elementwise "
                   "kernel on the first call (off by default: its heuristic configuration, the same in every "
                   "compilation)")
    p.add_argument("--autotune-reductions", action="store_true",
                   help="compiled backends on a GPU: let inductor time several configurations of each reduction "
                   "kernel (LayerNorms, means) on the first call (off by default: one heuristic configuration, the "
                   "same in every compilation)")
    p.add_argument("--cudnn-benchmark", action=argparse.BooleanOptionalAction, default=True,
                   help="GPU: let cuDNN time its convolution algorithms on first use and keep the fastest (on by "
                   "default; off: its heuristic choice, which can differ in how much room it leaves a second stream)")
    p.add_argument("--compile-timeout", type=float, default=600.0,
                   help="seconds one torch.compile compilation may take before its backend is skipped (default 600)")
    p.add_argument("--time-budget", type=float,
                   help="seconds for the whole run: configurations that would start later are listed as skipped")
    p.add_argument("--batch", type=int, default=1, help="frames per call (default 1)")
    p.add_argument("--warmup", type=int, default=10, help="untimed calls before timing (default 10, at least 2 run)")
    p.add_argument("--warmup-seconds", type=float, default=0.5,
                   help="after --warmup, keep calling until this many seconds went into warming up, so a GPU left "
                   "idle by a compilation is back at its clocks (default 0.5)")
    p.add_argument("--iters", type=int, default=50, help="timed calls (default 50)")
    p.add_argument("--max-seconds", type=float, default=120.0,
                   help="skip a configuration whose timed run would take longer (default 120)")
    p.add_argument("--min-iters", type=int,
                   help="instead of skipping, time fewer calls (at least this many) to fit --max-seconds")
    p.add_argument("--backend-sizes", nargs="+", default=[], metavar="BACKEND=HxW[,HxW]",
                   help="run a backend at these of the --size sizes only (e.g. torch-chunked=256x256,512x640)")
    p.add_argument("--no-cost", action="store_true", help="do not count FLOPs and bytes per frame")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="after timing, profile N more calls of each PyTorch backend: GPU kernels per call, GPU busy "
                   "time against the latency, the top kernels (CPU: operators); in bench.md under Profiles")
    p.add_argument("--device", default="auto", help="torch device: auto (GPU if any), cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, help="CPU threads for torch and ONNX Runtime (default: theirs)")
    p.add_argument("--out", type=Path, help="folder for bench.md, bench.json and bench.png")
    p.add_argument("--quiet", action="store_true", help="no progress lines, only the table")
    p.set_defaults(func=run)


@contextlib.contextmanager
def _stop_on_sigterm():
    """SIGTERM (a caller's time limit) ends the run with what it measured instead of killing it."""
    from fusion_edge.bench.runner import RunStopped

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise RunStopped()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(args: argparse.Namespace) -> int:
    from fusion_edge.bench.config import BenchConfig, parse_backend_sizes
    from fusion_edge.bench.report import markdown_table, write_outputs
    from fusion_edge.bench.runner import run_bench

    config = BenchConfig(
        preset=args.preset or args.model_preset, model=args.model, backends=args.backend, sizes=args.size or [],
        fp16=args.fp16, batch=args.batch, warmup=args.warmup, warmup_seconds=args.warmup_seconds, iters=args.iters,
        max_seconds=args.max_seconds,
        device=args.device, threads=args.threads, out_dir=args.out, torch_fp16=args.torch_fp16,
        compile_mode=args.compile_mode, compile_scope=args.compile_scope,
        compile_backend=args.compile_backend, compile_freeze=not args.no_freeze,
        compile_combo=not args.no_combo, compile_autotune_pointwise=args.autotune_pointwise,
        compile_autotune_reductions=args.autotune_reductions,
        cross_stream=args.cross_stream, cudnn_benchmark=args.cudnn_benchmark,
        compile_timeout=args.compile_timeout,
        time_budget=args.time_budget, min_iters=args.min_iters, count_cost=not args.no_cost,
        backend_sizes=parse_backend_sizes(args.backend_sizes), profile=args.profile,
    )

    def progress(line: str) -> None:
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    # With --out, what is measured so far is written after each configuration (bench.json and bench.md),
    # so a run stopped from outside keeps it.
    checkpoint = None if args.out is None else (lambda partial: write_outputs(partial, args.out, plot=False))
    from fusion_edge.bench.runner import RunStopped

    try:
        with _stop_on_sigterm():
            report = run_bench(config, progress, checkpoint)
    except RunStopped:
        print("bench: stopped (SIGTERM) before anything was measured", file=sys.stderr)
        return 3
    print(markdown_table(report))
    if args.out is not None:
        paths = write_outputs(report, args.out)
        print(f"\nwrote {', '.join(str(p) for p in paths.values())}")
    return 0
