"""The MLP's fc1 + GELU: library GEMM then an elementwise GELU, against one GEMM with GELU in its epilogue.

    python benchmarks/linear_gelu.py [--sizes 512x640 ...] [--presets paper,edge] [--out FILE.md]

For the MLP of every stage of the presets (tokens = the stage's pixels, batch 2 for the shared encoder and 1
for the decoder; dims -> 4 x dims; float16, no gradients) it times ``F.gelu(F.linear(...))`` (what eager
PyTorch and a compiled model run: a cuBLAS GEMM with its bias, then a GELU kernel) against
``fusion_edge.ops.linear_gelu`` (cuBLASLt with the bias and GELU applied before the store), and reports the
largest difference of each to the float64 result with the exact GELU, relative to its largest value.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kernels as kbench  # noqa: E402  (benchmarks/kernels.py: timing helpers)
from fusion_edge.bench.config import format_size, parse_size  # noqa: E402
from fusion_edge.models.presets import PRESETS  # noqa: E402
from fusion_edge.ops import linear_gelu  # noqa: E402, F401  (registers fusion_edge::linear_gelu)

PATCH = 4  # the stage-1 map is the image / 4


def row(preset: str, size: tuple[int, int], stage: int, batch: int, gen: torch.Generator) -> str:
    dim = PRESETS[preset]["dims"][stage]
    tokens = batch * (size[0] // (PATCH << stage)) * (size[1] // (PATCH << stage))
    x = torch.randn(tokens, dim, generator=gen).cuda().half()
    w = (torch.randn(4 * dim, dim, generator=gen) / dim ** 0.5).cuda().half()
    b = torch.randn(4 * dim, generator=gen).cuda().half()
    truth = F.gelu(x.double() @ w.double().T + b.double())
    with torch.no_grad():
        separate = lambda: F.gelu(F.linear(x, w, b))  # noqa: E731
        fused = lambda: torch.ops.fusion_edge.linear_gelu(x, w, b)  # noqa: E731
        errs = [kbench.rel_diff(fn(), truth) for fn in (separate, fused)]
        times = [kbench.bench(fn) for fn in (separate, fused)]
    moved = 2 * (tokens * dim + 4 * dim * dim + 4 * dim + tokens * 4 * dim)  # bytes the fused call must move
    return (f"| {preset} | {format_size(size)} | {stage + 1} | {batch} | {tokens} x {dim} -> {4 * dim} | "
            f"{times[0]:.4f} | {times[1]:.4f} | {times[0] / times[1]:.2f}x | "
            f"{moved / times[1] / 1e6:.0f} | {errs[0]:.1e} | {errs[1]:.1e} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=parse_size, default=[(512, 640)])
    parser.add_argument("--presets", default="paper,edge")
    parser.add_argument("--batches", default="1,2")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("needs a CUDA GPU", file=sys.stderr)
        return 2
    gen = torch.Generator().manual_seed(0)
    lines = [f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, float16, median ms", "",
             "| preset | HxW | stage | batch | tokens x in -> out | GEMM + GELU ms | GELU epilogue ms | speed-up | "
             "fused GB/s | max rel. err. separate | max rel. err. epilogue |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for preset in args.presets.split(","):
        for size in args.sizes:
            for stage in range(4):
                for batch in (int(b) for b in args.batches.split(",")):
                    lines.append(row(preset, size, stage, batch, gen))
                    print(lines[-1], flush=True)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
