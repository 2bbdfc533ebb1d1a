"""One call of the fused ES2D op per layer shape, on a channels-last float16 map, for a profiler.

    ncu --clock-control none --kernel-name regex:fe_es2d --section WarpStateStats ... \\
        python benchmarks/es2d_layer_probe.py 2x32x128x160 1x128x32x40 1x256x16x20

Each argument is BxDxHxW of a layer's map (the edge preset at 512x640: stage 1 of the shared encoder at
batch 2, stages 3 and 4 at batch 1). The weights are random with the model's shapes (dt rank D/16, 16
states, A_logs of the S4D initialisation), so the kernels and plans are the model's; the printed mean
only shows the call ran. Timing belongs to benchmarks/kernels.py and es2d_project.py; this script is
for counters (instructions, stalls, occupancy), which those timing loops would drown.
"""

from __future__ import annotations

import argparse
import math

import torch

import fusion_edge.ops  # noqa: F401  registers torch.ops.fusion_edge


def _shape(text: str) -> tuple[int, int, int, int]:
    parts = text.lower().split("x")
    if len(parts) != 4 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"expected BxDxHxW with positive sizes, got {text!r}")
    return tuple(int(p) for p in parts)  # type: ignore[return-value]


def layer_inputs(batch: int, dim: int, height: int, width: int, n_states: int = 16):
    """The fused op's inputs for one layer: channels-last float16 map, float32 parameters."""
    gen = torch.Generator(device="cuda").manual_seed(0)
    rank = math.ceil(dim / 16)
    x = torch.randn(batch, dim, height, width, device="cuda", generator=gen).half()
    x = x.contiguous(memory_format=torch.channels_last)
    x_proj_weight = torch.randn(4, rank + 2 * n_states, dim, device="cuda", generator=gen) / dim**0.5
    dt_projs_weight = torch.randn(4, dim, rank, device="cuda", generator=gen) * 0.1
    dt_projs_bias = torch.randn(4, dim, device="cuda", generator=gen) * 0.5 - 2
    a_logs = torch.log(torch.arange(1, n_states + 1, device="cuda", dtype=torch.float32)).repeat(4 * dim, 1)
    return x, x_proj_weight, dt_projs_weight, dt_projs_bias, a_logs, torch.ones(4 * dim, device="cuda")


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
