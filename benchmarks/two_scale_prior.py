"""GPU time of the two-scale prior (``residual="twoscale"``) alone: eager, CUDA graph, compiled + CUDA graph.

Prints one table row per mode and input dtype; p50 of CUDA-event timings after a warm-up, batch 1.
float16 inputs (a float16 model) blur with float16 products on tensor cores, float32 inputs with float32
products; the float16 row also gives the largest difference to the float32 prior of the same inputs.
Usage: python benchmarks/two_scale_prior.py [--size 512x640] [--iters 200]
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kernels as kbench  # noqa: E402  (benchmarks/kernels.py: capture)
from fusion_edge.bench.timing import CudaEventTimer  # noqa: E402
from fusion_edge.models.two_scale import TwoScaleFusion  # noqa: E402


def p50_ms(fn, iters: int) -> float:
    for _ in range(10):
        fn()
    times = sorted(CudaEventTimer().time_calls(fn, iters))
    return times[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="512x640")
    parser.add_argument("--iters", type=int, default=200)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("needs a CUDA GPU")
    height, width = (int(v) for v in args.size.lower().split("x"))
    prior = TwoScaleFusion().cuda()
    vis = torch.rand(1, 1, height, width, device="cuda", dtype=torch.float16)
    ir = torch.rand_like(vis)
    compiled = torch.compile(prior)
    device = torch.cuda.get_device_name()
    print(f"# two-scale prior, {args.size}, batch 1: {device}, torch {torch.__version__}")
    print("| inputs | eager ms | CUDA graph ms | torch.compile + CUDA graph ms | max diff to float32 |")
    print("|---|---|---|---|---|")
    with torch.inference_mode():
        exact = prior(vis.float(), ir.float())
        for dtype in (torch.float32, torch.float16):
            a, b = vis.to(dtype), ir.to(dtype)
            calls = [lambda a=a, b=b: prior(a, b), kbench.capture(lambda a=a, b=b: prior(a, b))[0],
                     kbench.capture(lambda a=a, b=b: compiled(a, b))[0]]
            times = [p50_ms(call, args.iters) for call in calls]
            diff = (prior(a, b).float() - exact).abs().max().item()
            print(f"| {str(dtype).split('.')[-1]} | " + " | ".join(f"{t:.4f}" for t in times) + f" | {diff:.2g} |")


if __name__ == "__main__":
    main()
