"""Time training steps (forward, loss, backward, Adam) per scan implementation, crop and batch.

Prints a markdown table with the device named, to choose the settings of a training run.
Example: python3 benchmarks/train_step_speed.py --configs reference:128:16 chunked:256:16
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from fusion_edge.models import create_model
from fusion_edge.ops import set_default_impl
from fusion_edge.train.losses import FusionLoss, clamp_unit
from fusion_edge.train.trainer import describe_device


def time_steps(preset: str, impl: str, crop: int, batch: int, device: torch.device, amp: bool,
               warmup: int, steps: int) -> dict[str, float]:
    set_default_impl(impl)
    torch.manual_seed(0)
    model = create_model(preset).to(device).train()
    model.check_inputs = False
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_fn = FusionLoss().to(device)
    vis = torch.rand(batch, 1, crop, crop, device=device)
    ir = torch.rand(batch, 1, crop, crop, device=device)
    times, loss = [], float("nan")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for i in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = model(vis, ir)
        total, _ = loss_fn(clamp_unit(out.float()), vis, ir)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        loss = float(total.detach())  # also synchronises
        if i >= warmup:
            times.append(time.perf_counter() - start)
    step = statistics.median(times)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return {"ms": 1e3 * step, "it_s": 1 / step, "crops_s": batch / step, "peak_gib": peak, "loss": loss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="edge")
    parser.add_argument("--configs", nargs="+", default=["reference:128:16", "chunked:128:16", "chunked:256:16"],
                        help="IMPL:CROP:BATCH entries")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-amp", action="store_true", help="fp32 instead of bf16 autocast (on GPU)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    device = torch.device(args.device)
    amp = device.type == "cuda" and not args.no_amp
    print(f"training step of preset {args.preset!r} on {describe_device(device)}, "
          f"{'bf16 autocast' if amp else 'fp32'}, torch {torch.__version__}; median of {args.steps} steps")
    print("| scan | crop | batch | ms/step | steps/s | crops/s | peak GiB | loss |")
    print("|---|---|---|---|---|---|---|---|")
    for entry in args.configs:
        impl, crop, batch = entry.split(":")
        try:
            r = time_steps(args.preset, impl, int(crop), int(batch), device, amp, args.warmup, args.steps)
        except Exception as exc:  # report and go on: one failing implementation must not hide the others
            print(f"| {impl} | {crop} | {batch} | failed: {type(exc).__name__}: {str(exc)[:120]} | | | | |")
            continue
        print(f"| {impl} | {crop} | {batch} | {r['ms']:.0f} | {r['it_s']:.2f} | {r['crops_s']:.1f} | "
              f"{r['peak_gib']:.2f} | {r['loss']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
