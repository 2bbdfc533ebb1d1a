"""Time training steps of `fusion-edge train` per scan implementation, crop, batch and CUDA graph.

Each configuration builds the real trainer (crops cut on the device, fused Adam, bf16 autocast
on a GPU, gradient clipping, drop-path) on a small set of generated pairs and times its steps:
warm-up first (cuDNN's algorithm search, kernel compilation, graph capture), then steps timed
between two synchronisations, so the host may run ahead of the GPU as in training. Prints a
markdown table naming the device; a time budget skips what does not fit.

    python3 benchmarks/train_step_speed.py   # cuda, cuda+graph, chunked x crop 128/256 x batch 16/32, <= 60 s
    python3 benchmarks/train_step_speed.py --configs cuda:128:16 cuda+graph:128:16 --budget 30
    python3 benchmarks/train_step_speed.py --device cpu --configs chunked:32:2   # a quick check without a GPU

IMPL is a selective-scan implementation (chunked, cuda, reference); IMPL+graph replays the whole
step as one CUDA graph (--cuda-graph).
"""

from __future__ import annotations

import argparse
import gc
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from fusion_edge.train import TrainConfig, Trainer
from fusion_edge.train.graph_step import WARMUP_STEPS
from fusion_edge.train.trainer import describe_device

# Most wanted first: a spent budget skips the tail.
DEFAULT_CONFIGS = [f"{impl}:{crop}:{batch}" for batch in (16, 32) for crop in (128, 256)
                   for impl in ("cuda", "cuda+graph", "chunked")]


def write_pairs(root: Path, count: int = 12, size: tuple[int, int] = (288, 384)) -> Path:
    """Smooth random IR/visible pairs (content does not change the step time)."""
    rng = np.random.default_rng(0)
    for sub in ("ir", "vis"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        for sub in ("ir", "vis"):
            img = cv2.GaussianBlur(rng.random(size).astype(np.float32), (0, 0), 3.0)
            img = (img - img.min()) / (img.max() - img.min())
            cv2.imwrite(str(root / sub / f"p{i:02d}.png"), (img * 255).astype(np.uint8))
    return root


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def batches(trainer: Trainer):
    while True:
        yield from trainer._batches()
        trainer.epoch += 1


def time_config(entry: str, preset: str, data: Path, device: torch.device, amp: str, min_seconds: float,
                max_steps: int) -> dict:
    impl, crop, batch = entry.split(":")
    impl, graph = impl.removesuffix("+graph"), impl.endswith("+graph")
    crop, batch = int(crop), int(batch)
    repeats = math.ceil(8 * batch / 12)  # a few steps per epoch of the 12 pairs
    config = TrainConfig(data=str(data), out=str(data / "run"), preset=preset, epochs=10**6, batch=batch, crop=crop,
                         repeats=repeats, lr=1e-4, grad_clip=1.0, drop_path_rate=0.1, amp=amp, scan_impl=impl,
                         cuda_graph=graph, val_fraction=0.0, device=str(device), log_every=10**9)
    trainer = Trainer(config)
    trainer._build()
    source = batches(trainer)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    warmup = 2 + (WARMUP_STEPS + 1 if graph else 0)  # + eager steps on the capture stream and the capture
    for _ in range(warmup):
        stats = trainer.train_step(*next(source))
    sync(device)
    start = time.perf_counter()  # one step alone says how many fit in min_seconds
    stats = trainer.train_step(*next(source))
    sync(device)
    single = time.perf_counter() - start
    steps = max(2, min(max_steps, math.ceil(min_seconds / max(single, 1e-6))))
    host = 0.0
    start = time.perf_counter()
    for _ in range(steps):
        vis, ir = next(source)
        t0 = time.perf_counter()
        stats = trainer.train_step(vis, ir)
        host += time.perf_counter() - t0
    sync(device)
    step = (time.perf_counter() - start) / steps
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return {"scan": trainer.scan_impl.split(" ")[0], "graph": trainer.graph_status if graph else "-",
            "crop": crop, "batch": batch, "ms": 1e3 * step, "host_ms": 1e3 * host / steps, "crops_s": batch / step,
            "peak_gib": peak, "loss": float(stats[0]), "steps": steps}


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=5).stdout.strip() or "?"
    except Exception:
        return "?"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="edge")
    parser.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS, help="IMPL[+graph]:CROP:BATCH entries")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--amp", default="auto", help="auto (bf16 on a GPU), off, bf16")
    parser.add_argument("--budget", type=float, default=50.0,
                        help="seconds after which no configuration starts (default 50)")
    parser.add_argument("--min-seconds", type=float, default=0.5,
                        help="timed seconds per configuration (default 0.5)")
    parser.add_argument("--max-steps", type=int, default=40, help="timed steps per configuration at most")
    parser.add_argument("--out", type=Path, help="also write the table here")
    args = parser.parse_args()
    device = torch.device(args.device)
    began = time.perf_counter()
    lines = [f"Training step of preset {args.preset!r} on {describe_device(device)}, amp {args.amp}, torch "
             f"{torch.__version__}, commit {commit()}, {time.strftime('%Y-%m-%d')}. ms/step: wall time of the timed "
             "steps between two synchronisations; host ms: time the Python loop spent per step.",
             "",
             "| scan | CUDA graph | crop | batch | ms/step | host ms | crops/s | peak GiB | loss | steps timed |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        data = write_pairs(Path(tmp) / "pairs")
        for entry in args.configs:
            impl, crop, batch = (entry.split(":") + ["", ""])[:3]
            spent = time.perf_counter() - began
            if spent > args.budget:
                row = f"| {impl} | | {crop} | {batch} | skipped: {spent:.0f} s budget spent | | | | | |"
            else:
                try:
                    r = time_config(entry, args.preset, data, device, args.amp, args.min_seconds, args.max_steps)
                    row = (f"| {r['scan']} | {r['graph']} | {r['crop']} | {r['batch']} | {r['ms']:.1f} | "
                           f"{r['host_ms']:.1f} | {r['crops_s']:.0f} | {r['peak_gib']:.2f} | {r['loss']:.3f} | "
                           f"{r['steps']} |")
                except Exception as exc:  # one failing configuration must not hide the others
                    row = f"| {impl} | | {crop} | {batch} | failed: {type(exc).__name__}: {str(exc)[:150]} | | | | | |"
            lines.append(row)
            print(row, flush=True)
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
    lines.append("")
    lines.append(f"({time.perf_counter() - began:.0f} s in all)")
    print(lines[-1])
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
