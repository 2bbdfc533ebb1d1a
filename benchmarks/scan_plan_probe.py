"""One call of the plain selective scan per forced plan, for a profiler.

    ncu --clock-control none --kernel-name regex:fe_selective --section WarpStateStats ... \\
        python benchmarks/scan_plan_probe.py 4,16 1,22 8,16 [--shape 1x768x5120]

Each positional argument is a plan, LANES,CHUNKS (lanes a channel x chunks of L, as
``kernels.launch_params.SCAN_OVERRIDE`` takes it); the default shape is the paper preset's stage-1 scan at
512x640 (u (1, 768, 5120), float16, N=16, 4 B/C groups, softplus, D and delta_bias), the shape of issue 5's
anchor, with the other benchmarks' inputs (``kernels.scan_inputs``). Timing belongs to benchmarks/kernels.py
and scan_variants.py; this is for counters.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
from fusion_edge.kernels import launch_params

from fusion_edge import kernels

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kernels as kbench  # noqa: E402  (benchmarks/kernels.py: the scans' inputs)


def _plan(text: str) -> tuple[int, int]:
    parts = text.split(",")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"expected LANES,CHUNKS with positive integers, got {text!r}")
    return int(parts[0]), int(parts[1])


def _shape(text: str) -> tuple[int, int, int]:
    parts = text.lower().split("x")
    if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"expected BxDxL with positive sizes, got {text!r}")
    return int(parts[0]), int(parts[1]), int(parts[2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("plans", nargs="+", type=_plan, help="LANES,CHUNKS of each call")
    parser.add_argument("--shape", type=_shape, default=(1, 768, 5120), help="BxDxL of u (default 1x768x5120)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("scan_plan_probe needs a CUDA GPU (it launches the scan kernels)")
    gen = torch.Generator(device="cuda").manual_seed(0)
    u, delta, A, B, C, D, bias = kbench.scan_inputs(*args.shape, gen)
    stream = torch.cuda.current_stream().cuda_stream
    saved = launch_params.SCAN_OVERRIDE
    try:
        for plan in args.plans:
            launch_params.SCAN_OVERRIDE = plan
            out = torch.empty_like(u)
            kernels.launch_selective_scan(u, delta, A, B, C, D=D, delta_bias=bias, out=out, delta_softplus=True,
                                          stream=stream)
            torch.cuda.synchronize()
            print(f"plan {plan}: mean |out| {float(out.float().abs().mean()):.4f}")
    finally:
        launch_params.SCAN_OVERRIDE = saved


if __name__ == "__main__":
    main()
