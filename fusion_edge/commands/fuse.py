"""``fusion-edge fuse``: fuse one infrared/visible pair of image files into a PNG."""

from __future__ import annotations

import argparse
import time


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "fuse",
        help="fuse one IR/visible image pair",
        description="Fuse one infrared/visible pair. A colour visible image is fused on its luma and keeps "
        "its colour; IR of another size is resized onto the visible grid. 8- and 16-bit inputs; the output "
        "has the visible image's bit depth.",
    )
    p.add_argument("--ir", required=True, help="infrared image file")
    p.add_argument("--vis", required=True, help="visible image file (grey or colour)")
    p.add_argument("-o", "--output", required=True, help="output image (PNG)")
    p.add_argument("--checkpoint",
                   help="model weights: a file, or packaged weights by name (edge, the default; edge-sum)")
    p.add_argument("--preset", help="check the checkpoint against this preset (paper, tiny, edge)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fusion_edge.imaging import read_image, write_image
    from fusion_edge.inference import fuse_arrays, load_model

    ir, vis = read_image(args.ir), read_image(args.vis)
    if ir.shape[:2] != vis.shape[:2]:
        print(f"note: infrared {ir.shape[1]}x{ir.shape[0]} is resized to the visible {vis.shape[1]}x{vis.shape[0]}")
    model = load_model(args.checkpoint, args.preset, args.device)
    start = time.perf_counter()
    fused = fuse_arrays(model, ir, vis)
    elapsed = time.perf_counter() - start
    write_image(args.output, fused)
    print(f"wrote {args.output} ({fused.shape[1]}x{fused.shape[0]}, {fused.dtype}) in {elapsed:.2f} s")
    return 0
