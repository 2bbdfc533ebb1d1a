"""Where the fused ES2D scan should get delta: formed inside the scan from the dt rows, or from a GEMM.

    python benchmarks/es2d_delta.py [--sizes 512x640 ...] [--batches 1,2] [--out FILE.md]

For every stage of the paper and edge presets (float16 maps, the route projections given, as a compiled
model's wide layers get them from a library GEMM) it times one layer's scan two ways: (a) the scan forming
delta itself (R loads and multiply-adds a channel and step), (b) ``es2d.es2d_delta``'s batched GEMM, then
the scan reading that delta; and (c) the GEMM alone. The last column is what ``fusion_edge.ops.es2d``
picks (``DELTA_MIN_WORK``), so the table checks that rule shape by shape, free of the noise that whole
compiled models carry from one compilation to the next. Both forms' outputs are compared first.
Batch 2 is the shared encoder's (both modalities stacked), batch 1 the decoder's.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kernels as kbench  # noqa: E402  (benchmarks/kernels.py: timing helpers and shapes)
from fusion_edge import kernels  # noqa: E402
from fusion_edge.bench.config import format_size, parse_size  # noqa: E402
from fusion_edge.ops import es2d  # noqa: E402


def scan(x, params, proj, out, workspace, stream, delta_from_gemm: bool) -> None:
    """One layer's scan from given projections; delta formed in the scan or by the GEMM first."""
    dtw = params[0]
    delta = es2d.es2d_delta(proj, dtw) if delta_from_gemm else None
    kernels.launch_es2d_scan(x, None, *params, out, workspace=workspace, proj=proj, delta=delta, stream=stream)


def rule_picks(x: torch.Tensor, rank: int) -> str:
    """Which form ``fusion_edge.ops.es2d`` picks for a layer over the map x with this dt rank."""
    return "GEMM" if es2d.deltas_with_library(x, rank) else "scan"


def row(preset: str, size: tuple[int, int], stage: int, d: int, h: int, w: int, batch: int,
        gen: torch.Generator) -> str:
    x = torch.randn(batch, d, h, w, generator=gen, device="cuda").half()
    xw, *params = kbench.es2d_params(d, gen)
    rank = params[0].shape[-1]
    proj = es2d.es2d_project(x, xw).contiguous()
    need = kernels.es2d_workspace_bytes(batch, d, h, w, rank, params[2].shape[1])
    workspace = torch.empty(need, device="cuda", dtype=torch.uint8)
    stream = torch.cuda.current_stream().cuda_stream
    outs = [torch.empty(batch, d, h, w, device="cuda") for _ in range(2)]
    runs = [functools.partial(scan, x, params, proj, outs[i], workspace, stream, bool(i)) for i in range(2)]
    for run in runs:
        run()
    diff = kbench.rel_diff(outs[1], outs[0])
    in_scan, with_gemm = (kbench.bench(run) for run in runs)
    gemm = kbench.bench(lambda: es2d.es2d_delta(proj, params[0]))
    better = "GEMM" if with_gemm < in_scan else "scan"
    return (f"| {preset} | {format_size(size)} | {stage + 1} | {batch} | {d} | {rank} | {es2d.route_length(h, w)} | "
            f"{in_scan:.4f} | {with_gemm:.4f} | {gemm:.4f} | {better} | {rule_picks(x, rank)} | {diff:.1e} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", type=parse_size, default=[(512, 640)])
    parser.add_argument("--batches", default="1,2", help="comma-separated batch sizes (default 1,2)")
    parser.add_argument("--out", help="also write the table to this markdown file")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        parser.error("needs a CUDA GPU")
    es2d.set_delta("auto")
    batches = [int(b) for b in args.batches.split(",") if b]
    gen = torch.Generator(device="cuda").manual_seed(0)
    lines = [f"# ES2D delta: in the scan or from a GEMM ({torch.cuda.get_device_name()}, torch {torch.__version__})",
             "", "float16 maps, projections given; ms per layer (medians of CUDA-event timings).", "",
             "| preset | HxW | stage | batch | D | R | L' | delta in scan | GEMM + scan | GEMM alone | faster "
             "| rule picks | max rel diff |", "|---" * 13 + "|"]
    print("\n".join(lines), flush=True)
    with torch.no_grad():
        for preset, size, stage, d, h, w in kbench.stage_shapes():
            if tuple(size) not in [tuple(s) for s in args.sizes]:
                continue
            for batch in batches:
                lines.append(row(preset, size, stage, d, h, w, batch, gen))
                print(lines[-1], flush=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
