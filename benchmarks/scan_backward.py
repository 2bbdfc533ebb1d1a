"""Selective-scan backward: our kernel against the chunked-autograd recompute; prints a markdown table.

    python benchmarks/scan_backward.py [--out FILE.md] [--presets edge,paper]

Shapes: every stage of the `edge` and `paper` presets at training crops 128x128 and 256x256
(batch 8) and at 512x640 (batch 1): u (batch, 4*2*dims[s], L) with L the route length, B/C
(batch, 4, 16, L), softplus, D and delta_bias, no z (the model's ES2D scan). Both sides compute
all eight gradients from the same saved inputs and output gradient, as
``_SelectiveScanCuda.backward`` does: "ours" is the backward kernel (two launches plus the
casts), "chunked autograd" is the recompute through the chunked op under autograd (the
backward before the kernel, and the fallback). Ours is timed in float32 and bfloat16 inputs,
the recompute in float32 (it always runs in float32). Timing: CUDA events around calls queued
behind a GPU sleep, median of rounds, milliseconds. "max rel diff" compares the two float32
results, gradient by gradient (max |ours - chunked| / max |chunked|).
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kernels as kbench  # noqa: E402  (benchmarks/kernels.py: the GPU timer shared by the kernel benchmarks)
from fusion_edge.models.presets import PRESETS  # noqa: E402
from fusion_edge.ops import selective_scan_cuda as scan_cuda  # noqa: E402

SHAPES = (((128, 128), 8), ((256, 256), 8), ((512, 640), 1))
WANTED = (True,) * 8


def stage_shapes(presets: list[str]):
    for preset in presets:
        dims = PRESETS[preset]["dims"]
        for (height, width), batch in SHAPES:
            for s in range(4):
                h, w = height // 4 // 2**s, width // 4 // 2**s
                yield preset, (height, width), batch, s, 4 * 2 * dims[s], math.ceil(h / 2) * math.ceil(w / 2)


def saved_inputs(batch: int, channels: int, length: int, dtype: torch.dtype, gen: torch.Generator):
    """What the autograd Function saves (u, delta, A, B, C, D, z, delta_bias) and an output gradient."""
    def rnd(*shape, scale=1.0, shift=0.0):
        return torch.randn(*shape, generator=gen, device="cuda") * scale + shift

    u = rnd(batch, channels, length).to(dtype)
    delta = rnd(batch, channels, length, scale=0.5, shift=-1.0).to(dtype)
    A = -torch.exp(torch.rand(channels, 16, generator=gen, device="cuda"))
    B = rnd(batch, 4, 16, length).to(dtype)
    C = rnd(batch, 4, 16, length).to(dtype)
    D = rnd(channels)
    bias = rnd(channels, scale=0.5)
    dout = rnd(batch, channels, length).to(dtype)
    return (u, delta, A, B, C, D, None, bias), dout


def max_rel_diff(ours, theirs) -> float:
    worst = 0.0
    for a, b in zip(ours, theirs):
        if a is None or b is None:  # the recompute returns None for an input the graph never used (L = 1)
            continue
        worst = max(worst, ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-30)).item())
    return worst


def time_stage(batch: int, channels: int, length: int, gen: torch.Generator) -> tuple[float, float, float, float]:
    """(ours fp32, ours bf16, chunked autograd fp32) ms and the max rel diff of the fp32 gradients."""
    saved, dout = saved_inputs(batch, channels, length, torch.float32, gen)
    saved16 = tuple(None if t is None else (t.to(torch.bfloat16) if t.dim() >= 3 else t) for t in saved)
    dout16 = dout.to(torch.bfloat16)
    ours = kbench.bench(functools.partial(scan_cuda._scan_backward, saved, WANTED, True, dout), rounds=5, warmup=1)
    ours16 = kbench.bench(functools.partial(scan_cuda._scan_backward, saved16, WANTED, True, dout16), rounds=5,
                          warmup=1)
    chunked = kbench.bench(functools.partial(scan_cuda._backward_by_recompute, saved, WANTED, True, dout),
                           rounds=3, reps=3, warmup=1)
    diff = max_rel_diff(scan_cuda._scan_backward(saved, WANTED, True, dout),
                        scan_cuda._backward_by_recompute(saved, WANTED, True, dout))
    return ours, ours16, chunked, diff


def fmt(ms: float) -> str:
    return f"{ms:.3f}" if ms < 10 else f"{ms:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="also write the table to this markdown file")
    parser.add_argument("--presets", default="edge,paper")
    args = parser.parse_args()
    if not scan_cuda.kernels_available():
        raise SystemExit("our CUDA kernels cannot run here (CuPy, a GPU or NVRTC is missing)")
    props = torch.cuda.get_device_properties(0)
    lines = [
        f"Device: {torch.cuda.get_device_name()} ({props.multi_processor_count} SMs), torch {torch.__version__}",
        "",
        "| preset | HxW | batch | stage | u shape | ours fp32 ms | ours bf16 ms | chunked autograd fp32 ms "
        "| speed-up (fp32) | max rel diff |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    gen = torch.Generator(device="cuda").manual_seed(0)
    totals: dict[tuple, list[float]] = {}
    for preset, res, batch, s, channels, length in stage_shapes(args.presets.split(",")):
        ours, ours16, chunked, diff = time_stage(batch, channels, length, gen)
        acc = totals.setdefault((preset, res, batch), [0.0, 0.0, 0.0])
        for i, ms in enumerate((ours, ours16, chunked)):
            acc[i] += ms
        lines.append(f"| {preset} | {res[0]}x{res[1]} | {batch} | {s + 1} | ({batch}, {channels}, {length}) "
                     f"| {fmt(ours)} | {fmt(ours16)} | {fmt(chunked)} | {chunked / ours:.0f}x | {diff:.1e} |")
        print(lines[-1], flush=True)
        torch.cuda.empty_cache()
    lines += ["", "Sum over the four stages (one scan each):", "",
              "| preset | HxW | batch | ours fp32 ms | ours bf16 ms | chunked autograd fp32 ms | speed-up |",
              "|---|---|---|---|---|---|---|"]
    for (preset, res, batch), (ours, ours16, chunked) in totals.items():
        lines.append(f"| {preset} | {res[0]}x{res[1]} | {batch} | {fmt(ours)} | {fmt(ours16)} | {fmt(chunked)} "
                     f"| {chunked / ours:.0f}x |")
    print("\n".join(lines[-len(totals) - 5:]), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
