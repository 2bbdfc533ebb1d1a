"""GPU time of the two-scale prior (``residual="twoscale"``) alone: eager, CUDA graph, compiled + CUDA graph.

Prints one table row per mode; p50 of CUDA-event timings after a warm-up, batch 1, fp16 inputs.
Usage: python benchmarks/two_scale_prior.py [--size 512x640] [--iters 200]
"""

from __future__ import annotations

import argparse

import torch

from fusion_edge.bench.timing import CudaEventTimer
from fusion_edge.models.two_scale import TwoScaleFusion


def p50_ms(fn, iters: int) -> float:
    for _ in range(10):
        fn()
    times = sorted(CudaEventTimer().time_calls(fn, iters))
    return times[len(times) // 2]


def graphed(fn):
    """``fn`` captured as a CUDA graph after three warm-up calls on a side stream; returns the replay."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    return graph.replay


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
    print(f"# two-scale prior, {args.size}, batch 1, fp16 inputs: {device}, torch {torch.__version__}")
    print("| mode | p50 ms |\n|---|---|")
    with torch.inference_mode():
        print(f"| eager | {p50_ms(lambda: prior(vis, ir), args.iters):.4f} |")
        print(f"| CUDA graph | {p50_ms(graphed(lambda: prior(vis, ir)), args.iters):.4f} |")
        print(f"| torch.compile + CUDA graph | {p50_ms(graphed(lambda: compiled(vis, ir)), args.iters):.4f} |")


if __name__ == "__main__":
    main()
