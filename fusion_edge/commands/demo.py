"""``fusion-edge demo``: fuse the bundled sample pair with the bundled weights, no flags needed."""

from __future__ import annotations

import argparse
from importlib import resources
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="fuse the bundled sample pair with the default weights")
    p.add_argument("-o", "--out-dir", default="fusion_edge_demo", help="where to write the images")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=run)


def sample_paths() -> tuple[Path, Path]:
    assets = resources.files("fusion_edge") / "assets"
    return Path(str(assets / "sample_ir.jpg")), Path(str(assets / "sample_vis.jpg"))


def run(args: argparse.Namespace) -> int:
    import cv2
    import numpy as np

    from fusion_edge.imaging import read_image, to_grey, write_image
    from fusion_edge.inference import fuse_arrays, load_model

    ir_path, vis_path = sample_paths()
    ir, vis = read_image(ir_path), read_image(vis_path)
    model = load_model(device=args.device)
    fused = fuse_arrays(model, ir, vis)
    out = Path(args.out_dir)
    write_image(out / "fused.png", fused)
    panels = [cv2.cvtColor(to_grey(ir), cv2.COLOR_GRAY2BGR), vis, fused]
    labels = ["infrared", "visible", "fused (FusionMamba edge)"]
    for panel, label in zip(panels, labels):
        cv2.putText(panel, label, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 255, 255), 2, cv2.LINE_AA)
    write_image(out / "comparison.png", np.hstack(panels))
    print(f"fused the sample pair: {out / 'fused.png'} and side by side: {out / 'comparison.png'}")
    return 0
