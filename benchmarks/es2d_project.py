"""The fused ES2D op's route-projection kernel alone, per layer shape: time, bytes, GB/s, and its error.

    python benchmarks/es2d_project.py [--sizes 512x640,256x256] [--batches 1,2] [--out FILE.md]

For every stage of the `paper` and `edge` presets: the projection kernel (proj[b, k, c, l] = sum_d
W[k, c, d] x_k[d, l], x read through the route indexing) timed alone (the scan kernels not launched)
with 16 and with 48 rows a block (``fe_es2d_project_*`` / ``fe_es2d_project_wide_*``), the width
``kernels/launch_params.es2d_project_rows`` chooses, and the whole fused op, on the map's planes and
on its channels-last buffer. Error: the largest relative difference of either width's projections to
a float64 reference of the route gather and product, and of the channels-last output to the planes'.
Bytes: the float16 map read once and the float32 projections written once, the least the kernel must
move. Batch 2 is the shared encoder's.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fusion_edge.kernels import launch_params  # noqa: E402
from scan_variants import es2d_call, only_projection, rel  # noqa: E402

import kernels as kbench  # noqa: E402  (benchmarks/kernels.py: timing helpers and shapes)
from fusion_edge import kernels  # noqa: E402
from fusion_edge.ops.es2d import es2d_gather  # noqa: E402


def reference_projection(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """(B, 4, R+2N, L') float64: each route's sequence times its projection weight."""
    return torch.einsum("kcd,bkdl->bkcl", weight.double(), es2d_gather(x.double()))


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="512x640,256x256")
    parser.add_argument("--batches", default="1,2")
    parser.add_argument("--out")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("needs a CUDA GPU")
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    stream = torch.cuda.current_stream().cuda_stream
    gen = torch.Generator(device="cuda").manual_seed(0)
    lines = [f"# ES2D route projections alone: {torch.cuda.get_device_name()}, torch {torch.__version__}", "",
             "| preset | HxW | stage | batch | D | R+2N | L' | 16 rows ms | 48 rows ms | chosen | GB/s (chosen) | "
             "fused op ms | fused op, channels-last ms | max rel err |", "|---" * 14 + "|"]
    chosen_rows = launch_params.es2d_project_rows
    for preset, res, stage, d_inner, h, w in kbench.stage_shapes():
        if tuple(res) not in sizes:
            continue
        for batch in batches:
            x = torch.randn(batch, d_inner, h, w, generator=gen, device="cuda").half()
            xw, dtw, dtb, A_logs, Ds = kbench.es2d_params(d_inner, gen)
            out = torch.empty((batch, d_inner, h, w), device="cuda")
            ws: list = []
            run = functools.partial(es2d_call, (x, xw, dtw, dtb, A_logs, Ds, out), sms, stream, ws)
            rows, length = xw.shape[1], math.ceil(h / 2) * math.ceil(w / 2)
            ref = reference_projection(x, xw)
            times, err = {}, 0.0
            for width in (launch_params.ES2D_PROJ_C, launch_params.ES2D_PROJ_WIDE_C):
                launch_params.es2d_project_rows = lambda *_, width=width: width
                try:
                    with only_projection():
                        run()
                        torch.cuda.synchronize()
                        proj = ws[0][: batch * 4 * rows * length * 4].view(torch.float32).view(batch, 4, rows, length)
                        err = max(err, ((proj.double() - ref).abs().max() / ref.abs().max()).item())
                        times[width] = kbench.bench(run, rounds=5, reps=20)
                finally:
                    launch_params.es2d_project_rows = chosen_rows
            t_op = kbench.bench(run, rounds=5, reps=20)
            # the same op on the map's channels-last buffer (as the model's depthwise conv writes it)
            x_cl, out_cl = x.permute(0, 2, 3, 1).contiguous(), torch.empty((batch, h, w, d_inner), device="cuda")
            run_cl = functools.partial(kernels.launch_es2d_scan, x_cl, xw, dtw, dtb, A_logs, Ds, out_cl,
                                       workspace=ws[0], channels_last=True, stream=stream)
            run_cl()
            cl_err = rel(out_cl.permute(0, 3, 1, 2), out)
            t_cl = kbench.bench(run_cl, rounds=5, reps=20)
            chosen = chosen_rows(batch, length, rows, d_inner, sms)
            moved = batch * d_inner * h * w * 2 + batch * 4 * rows * length * 4
            lines.append(f"| {preset} | {res[0]}x{res[1]} | {stage + 1} | {batch} | {d_inner} | {rows} | {length} | "
                         f"{times[16]:.4f} | {times[48]:.4f} | {chosen} | {moved / times[chosen] / 1e6:.0f} | "
                         f"{t_op:.4f} | {t_cl:.4f} | {max(err, cl_err):.1e} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
