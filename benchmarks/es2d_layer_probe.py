"""One call of the fused ES2D op per layer shape, on a channels-last float16 map, for a profiler.

    ncu --clock-control none --kernel-name regex:fe_es2d --section WarpStateStats ... \\
        python benchmarks/es2d_layer_probe.py 2x32x128x160 1x128x32x40 1x256x16x20

Each argument is BxDxHxW of a layer's map (the edge preset at 512x640: stage 1 of the shared encoder at
batch 2, stages 3 and 4 at batch 1). The weights are the other benchmarks' (``kernels.es2d_params``: random,
with the model's shapes: dt rank ceil(D / 32) for D = d_inner channels, 16 states), so the kernels and
plans are the model's; the printed mean only shows the call ran. Timing belongs to benchmarks/kernels.py
and es2d_project.py; this script is for counters (instructions, stalls, occupancy), which those timing
loops would drown.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

import fusion_edge.ops  # noqa: F401  registers torch.ops.fusion_edge

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kernels as kbench  # noqa: E402  (benchmarks/kernels.py: the ES2D layer parameters)


def _shape(text: str) -> tuple[int, int, int, int]:
    parts = text.lower().split("x")
    if len(parts) != 4 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"expected BxDxHxW with positive sizes, got {text!r}")
    return tuple(int(p) for p in parts)  # type: ignore[return-value]


def layer_inputs(batch: int, dim: int, height: int, width: int):
    """The fused op's inputs for one layer: a channels-last float16 map and the layer's float32 weights."""
    gen = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(batch, dim, height, width, device="cuda", generator=gen).half()
    return (x.contiguous(memory_format=torch.channels_last), *kbench.es2d_params(dim, gen))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shapes", nargs="+", type=_shape, help="BxDxHxW of each layer's map")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("es2d_layer_probe needs a CUDA GPU (it launches the fused ES2D kernels)")
    for shape in args.shapes:
        out = torch.ops.fusion_edge.es2d_scan(*layer_inputs(*shape))
        torch.cuda.synchronize()
        print("x".join(map(str, shape)), tuple(out.shape), f"mean |out| {float(out.float().abs().mean()):.4f}")


if __name__ == "__main__":
    main()
