"""Pipeline throughput and latency against the engine alone, on the same model and frames.

For each model it measures, on the shared ``sequence`` frames held in memory (no decoding):

- engine only: ``backend.infer`` on one preprocessed pair, back to back (synchronised per
  frame on a GPU): the ceiling;
- ``FusionEngine.fuse``: engine plus pre/postprocessing, one pair at a time;
- the pipeline, recorded-input mode (blocking queues, nothing dropped): its throughput, and
  the engine's own time per frame inside that same run (so that load changing between runs
  on a shared machine does not skew the ratio);
- the pipeline, live mode: sources paced like cameras at 80% of the pipeline's throughput,
  newest-wins queues: capture-to-output latency p50/p99, and the latency added over the
  engine's median time per frame in that run, next to the camera's frame period;
- the pipeline, overloaded live mode (``--overload``, default cameras at 1.5x the pipeline's
  throughput): frames come faster than they can be fused, so this shows whether stale frames
  queue up (latency growing by frame periods) or the newest frame wins.

Prints one markdown table with the device named, and writes it with ``--out``.

    python3 benchmarks/pipeline.py --reference max --out benchmarks/results/pipeline_cpu.md
    python3 benchmarks/pipeline.py --model exported/edge --backend ort-cuda --frames 300
    python3 benchmarks/pipeline.py --export-edge 480x640 --backend ort-cuda   # needs torch to export
    python3 benchmarks/pipeline.py --model model.onnx --backend ort-cuda --cuda-graph  # also with ORT's CUDA graph

Targets (issue 4): pipeline throughput >= 90% of engine-only, added latency <= one frame period.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]


def default_data() -> Path:
    """$DATA_DIR/sequence, else a copy carried into the checkout (.carry_data), else ../shared/data."""
    if os.environ.get("DATA_DIR"):
        return Path(os.environ["DATA_DIR"]) / "sequence"
    carried = REPO / ".carry_data" / "sequence"
    return carried if carried.is_dir() else REPO.parent / "shared" / "data" / "sequence"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(engine) -> str:
    if engine.on_gpu:
        try:
            import cupy

            props = cupy.cuda.runtime.getDeviceProperties(engine.backend.device_id)
            name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
            return f"{name} (GPU {engine.backend.device_id})"
        except Exception as exc:  # still name something
            return f"GPU ({exc})"
    return f"{cpu_name()}, {os.cpu_count()} cores"


def load_frames(folder: Path, count: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    ir_files = sorted((folder / "ir").glob("*.jpg"))[:count]
    vis_files = sorted((folder / "vis").glob("*.jpg"))[:count]
    if not ir_files or len(ir_files) != len(vis_files):
        raise SystemExit(f"no matching ir/ and vis/ frames in {folder}")
    return ([cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in ir_files],
            [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in vis_files])


def engine_only(engine, ir, vis, frames: int) -> float:
    """Seconds per frame of the network alone (after warm-up)."""
    prep = engine.prepare(ir, vis)
    for _ in range(2):
        engine.infer(prep.vis, prep.ir)
        engine.backend.synchronize()
    times = []
    for _ in range(frames):
        t = time.perf_counter()
        engine.infer(prep.vis, prep.ir)
        engine.backend.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def fuse_only(engine, irs, viss, frames: int) -> float:
    engine.fuse(irs[0], viss[0])
    t = time.perf_counter()
    for i in range(frames):
        engine.fuse(irs[i % len(irs)], viss[i % len(viss)])
    return (time.perf_counter() - t) / frames


class TimedInfer:
    """Wraps ``backend.infer`` to record the engine's own time per frame during a pipeline run
    (CUDA events on a GPU, so the pipeline's overlap is not disturbed). Comparing it with the
    pipeline's frame interval in the same run is immune to load that changes between runs."""

    def __init__(self, backend) -> None:
        self.backend, self.inner, self.spans = backend, backend.infer, []

    def __call__(self, vis, ir):
        if self.backend.on_gpu:
            import cupy

            start, end = cupy.cuda.Event(), cupy.cuda.Event()
            start.record(self.backend.stream)
            out = self.inner(vis, ir)
            end.record(self.backend.stream)
            self.spans.append((start, end))
            return out
        t = time.perf_counter()
        out = self.inner(vis, ir)
        self.spans.append(time.perf_counter() - t)
        return out

    def seconds(self, skip: int) -> list[float]:
        spans = self.spans[skip:]
        if spans and not isinstance(spans[0], float):
            import cupy

            spans[-1][1].synchronize()
            return [cupy.cuda.get_elapsed_time(a, b) / 1e3 for a, b in spans]
        return spans


def pipeline_recorded(engine, irs, viss, frames: int) -> tuple[float, float]:
    """(seconds per frame, engine seconds per frame in the same run), steady state, blocking queues."""
    from fusion_edge.runtime import ArraySource, FusionPipeline

    ir = ArraySource(irs, loop=True, count=frames)
    vis = ArraySource(viss, loop=True, count=frames)
    stamps = []
    timer = TimedInfer(engine.backend)
    engine.backend.infer = timer
    try:
        with FusionPipeline(engine, ir=ir, vis=vis, log_every_s=None) as pipe:
            for _ in pipe:
                stamps.append(time.perf_counter())
    finally:
        del engine.backend.infer  # back to the class method
    if pipe.stats.dropped or len(stamps) != frames:
        raise RuntimeError(f"recorded mode lost frames: {pipe.stats.summary()}")
    interval = (stamps[-1] - stamps[0]) / (len(stamps) - 1)
    return interval, statistics.mean(timer.seconds(skip=1))


def pipeline_live(engine, irs, viss, frames: int, fps: float):
    from fusion_edge.runtime import ArraySource, FusionPipeline

    ir = ArraySource(irs, loop=True, live=True, realtime=True, fps=fps, name="ir-replay")
    vis = ArraySource(viss, loop=True, live=True, realtime=True, fps=fps, name="vis-replay")
    timer = TimedInfer(engine.backend)
    engine.backend.infer = timer
    try:
        with FusionPipeline(engine, ir=ir, vis=vis, tolerance=0.5 / fps, max_frames=frames, log_every_s=None) as pipe:
            for _ in pipe:
                pass
    finally:
        del engine.backend.infer
    return pipe.stats, statistics.median(timer.seconds(skip=1))


def measure(label: str, engine, irs, viss, frames: int, budget_s: float, overload: float = 1.5) -> dict:
    t_engine = engine_only(engine, irs[0], viss[0], 3)
    # slow models (a real network on a CPU): as many frames as fit the time budget per measurement
    frames = max(5, min(frames, int(budget_s / t_engine)))
    t_engine = engine_only(engine, irs[0], viss[0], frames)
    t_fuse = fuse_only(engine, irs, viss, frames)
    t_pipe, t_engine_in_run = pipeline_recorded(engine, irs, viss, frames)
    live_fps = 0.8 / t_pipe
    live, t_engine_live = pipeline_live(engine, irs, viss, max(10, frames), live_fps)
    over = dict(over_p50=float("nan"), over_added=float("nan"), over_dropped=0)
    if overload > 0:
        busy, t_engine_busy = pipeline_live(engine, irs, viss, max(10, frames), overload / t_pipe)
        over = dict(over_p50=busy.latency_p50_ms, over_added=busy.latency_p50_ms - t_engine_busy * 1e3,
                    over_dropped=busy.dropped)
    size = engine.info.fixed_hw or engine.preprocessor.work_size(viss[0].shape[:2])
    return dict(
        label=label, device=device_name(engine), backend=engine.name,
        sizes=f"{viss[0].shape[1]}x{viss[0].shape[0]} -> {size[1]}x{size[0]}",
        engine_fps=1 / t_engine, fuse_fps=1 / t_fuse, pipe_fps=1 / t_pipe, ratio=t_engine_in_run / t_pipe,
        overhead=(t_pipe - t_engine_in_run) * 1e3, engine_in_run_fps=1 / t_engine_in_run,
        engine_ms=t_engine * 1e3, live_fps=live_fps, p50=live.latency_p50_ms, p99=live.latency_p99_ms,
        added=live.latency_p50_ms - t_engine_live * 1e3, period=1e3 / live_fps, live_dropped=live.dropped,
        live_frames=live.frames, frames=frames, overload=overload, **over,
    )


def table(rows: list[dict]) -> str:
    head = ("| model | backend | frames in -> engine | frames | engine-only fps | fuse() fps | pipeline fps "
            "| engine fps during the pipeline run | pipeline / engine (same run) | pipeline ms/frame over engine "
            "| live: camera fps | latency p50 / p99 ms | added latency ms (p50 - engine) | frame period ms "
            f"| overloaded live (cameras at {rows[0]['overload']:g}x): latency p50 ms / added ms |")
    lines = [head, "|" + "|".join(["---"] * 15) + "|"]
    for r in rows:
        lines.append(
            f"| {r['label']} | {r['backend']} | {r['sizes']} | {r['frames']} | {_fmt(r['engine_fps'])} "
            f"| {_fmt(r['fuse_fps'])} | {_fmt(r['pipe_fps'])} | {_fmt(r['engine_in_run_fps'])} "
            f"| {100 * r['ratio']:.0f}% | {r['overhead']:.2f} "
            f"| {_fmt(r['live_fps'])} | {r['p50']:.1f} / {r['p99']:.1f} | {r['added']:.1f} | {r['period']:.1f} "
            f"| {_over(r)} |"
        )
    return "\n".join(lines)


def _over(r: dict) -> str:
    return "-" if r["overload"] <= 0 else f"{r['over_p50']:.1f} / {r['over_added']:.1f}"


def _fmt(fps: float) -> str:
    return f"{fps:.1f}" if fps >= 10 else f"{fps:.3g}"


def export_edge(size: str, work: Path) -> Path:
    """Export the edge preset (random weights) as a portable ONNX graph; needs torch."""
    from fusion_edge.export.pipeline import ExportOptions, run_export

    h, w = (int(v) for v in size.lower().split("x"))
    folder = work / f"edge_{h}x{w}"
    if not (folder / "model.onnx").is_file():
        print(f"exporting the edge preset at {w}x{h} into {folder} ...", file=sys.stderr)
        run_export(ExportOptions(output=folder, height=h, width=w, preset="edge", random_weights=True,
                                 parity_pairs=0))
    return folder


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", default=[], help="model file or folder (repeatable)")
    p.add_argument("--reference", action="append", default=[], choices=["max", "mean"],
                   help="a stand-in graph with the model's I/O (near-zero compute: shows the pipeline's own cost)")
    p.add_argument("--reference-size", default=None, help="HxW of a fixed-size stand-in (default: dynamic)")
    p.add_argument("--export-edge", action="append", default=[], metavar="HxW",
                   help="export the edge preset (random weights) at this size and benchmark it (needs torch)")
    p.add_argument("--work-dir", type=Path, default=None, help="where exported/stand-in models go (default: temp)")
    p.add_argument("--backend", default="auto", help="auto, ort, ort-cpu, ort-cuda, ort-trt, tensorrt, torch")
    p.add_argument("--frames", type=int, default=120, help="frames per measurement (default 120)")
    p.add_argument("--budget-s", type=float, default=20.0,
                   help="for slow models, use only as many frames as take about this long per measurement")
    p.add_argument("--data", type=Path, default=None, help="folder with ir/ and vis/ frames (default: the shared "
                   "sequence data; $DATA_DIR/sequence when set)")
    p.add_argument("--cuda-graph", action="store_true",
                   help="with --backend ort-cuda: measure each model a second time with ORT's CUDA graph replay")
    p.add_argument("--overload", type=float, default=1.5,
                   help="also measure live latency with cameras this many times faster than the pipeline "
                   "(frames arrive faster than they are fused; 0 skips it; default 1.5)")
    p.add_argument("--out", type=Path, help="write the table (markdown) here as well")
    args = p.parse_args(argv)

    from fusion_edge.runtime import FusionEngine
    from fusion_edge.runtime.testing import write_reference_model

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="fusion_edge_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    models: list[tuple[str, Path]] = []
    for kind in args.reference:
        size = tuple(int(v) for v in args.reference_size.lower().split("x")) if args.reference_size else None
        path = write_reference_model(work / f"reference_{kind}" / "model.onnx", kind, size=size)
        models.append((f"stand-in ({kind})", path))
    for size in args.export_edge:
        models.append((f"edge preset, random weights ({size})", export_edge(size, work)))
    models += [(Path(m).name, Path(m)) for m in args.model]
    if not models:
        p.error("give --model, --reference or --export-edge")

    irs, viss = load_frames(args.data or default_data(), 60)
    variants = [("", {})]
    if args.cuda_graph:
        if args.backend != "ort-cuda":
            p.error("--cuda-graph needs --backend ort-cuda")
        variants.append((", ORT CUDA graph", {"cuda_graph": True}))
    rows = []
    for label, path in models:
        for suffix, options in variants:
            try:
                engine = FusionEngine(path, backend=args.backend, out_dtype=np.uint8, **options)
            except Exception as exc:  # e.g. a graph whose nodes cannot all be captured: say so, go on
                print(f"cannot open {label}{suffix}: {type(exc).__name__}: {exc}", file=sys.stderr)
                continue
            print(f"measuring {label}{suffix} on {engine.name} ...", file=sys.stderr)
            try:
                rows.append(measure(label + suffix, engine, irs, viss, args.frames, args.budget_s, args.overload))
            except Exception as exc:  # one variant failing (say, a graph capture) must not lose the others
                print(f"measuring {label}{suffix} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            finally:
                engine.close()
    if not rows:
        print("no model could be measured", file=sys.stderr)
        return 1

    devices = sorted({r["device"] for r in rows})
    text = "\n".join([
        f"Device: {', '.join(devices)}; Python {platform.python_version()}, numpy {np.__version__}, "
        f"OpenCV {cv2.__version__}, onnxruntime {_version('onnxruntime')}.",
        f"Input: the shared `sequence` frames (IR grey + VIS colour, {viss[0].shape[1]}x{viss[0].shape[0]}) "
        "held in memory; live mode: sources paced at 80% of the pipeline's throughput (overloaded: "
        f"{args.overload:g}x). Load average at the end: "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} (a shared machine: other jobs ran alongside).",
        "",
        table(rows),
        "",
    ])
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(f"# Pipeline vs engine-only ({time.strftime('%Y-%m-%d')})\n\n" + text)
    return 0


def _version(module: str) -> str:
    try:
        return __import__(module).__version__
    except Exception:
        return "absent"


if __name__ == "__main__":
    sys.exit(main())
