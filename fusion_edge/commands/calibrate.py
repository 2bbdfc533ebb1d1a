"""``fusion-edge calibrate``: estimate the IR -> VIS homography that registers the two cameras."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "calibrate",
        help="estimate the IR -> visible registration (homography) for `fusion-edge run --calib`",
        description="Estimate the homography that warps infrared frames onto the visible camera's pixel grid, "
        "from matched points (--points) or from a chessboard both cameras see (--chessboard with --ir/--vis "
        "images or folders of simultaneous shots; a heated board that looks inverted in IR is handled). "
        "Writes JSON or YAML (by the output's suffix).",
    )
    p.add_argument("-o", "--output", required=True, help="calibration file to write (.json, .yaml or .yml)")
    p.add_argument("--points",
                   help="matched points: CSV rows ir_x,ir_y,vis_x,vis_y, or JSON {'ir': [...], 'vis': [...]}")
    p.add_argument("--chessboard", metavar="COLSxROWS", help="inner-corner count of the chessboard, e.g. 9x6")
    p.add_argument("--ir", nargs="+", help="IR image(s) or a folder (chessboard shots, or the frame size for --points)")
    p.add_argument("--vis", nargs="+", help="visible image(s) or a folder, in the same order as --ir")
    p.add_argument("--ir-size", metavar="WxH", help="IR frame size (with --points, when no --ir image is given)")
    p.add_argument("--vis-size", metavar="WxH", help="visible frame size (with --points, when no --vis image is given)")
    p.add_argument("--ransac-px", type=float, default=3.0,
                   help="ignore matches farther than this many pixels from the fit (0: plain least squares)")
    p.add_argument("--preview", help="write an image of the IR warped onto the first visible image, to check by eye")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import cv2
    import numpy as np

    from fusion_edge.cli import CommandError
    from fusion_edge.runtime.calibration import estimate_from_chessboards, estimate_from_points, read_point_pairs

    if bool(args.points) == bool(args.chessboard):
        raise CommandError("give either --points FILE or --chessboard COLSxROWS")
    ransac = args.ransac_px if args.ransac_px and args.ransac_px > 0 else None
    ir_images = _read_images(args.ir, "--ir") if args.ir else []
    vis_images = _read_images(args.vis, "--vis") if args.vis else []
    if args.chessboard:
        pattern = _parse_size(args.chessboard, "--chessboard")
        if not ir_images or not vis_images:
            raise CommandError("--chessboard needs --ir and --vis images (or folders) of the board")
        calib = estimate_from_chessboards(ir_images, vis_images, pattern, ransac_px=ransac)
    else:
        ir_pts, vis_pts = read_point_pairs(args.points)
        ir_size = _size_from(args.ir_size, ir_images, "--ir-size", "--ir")
        vis_size = _size_from(args.vis_size, vis_images, "--vis-size", "--vis")
        calib = estimate_from_points(ir_pts, vis_pts, ir_size, vis_size, ransac_px=ransac)
    path = calib.save(args.output)
    np.set_printoptions(precision=6, suppress=True)
    print(f"homography (IR {calib.ir_size[0]}x{calib.ir_size[1]} -> VIS {calib.vis_size[0]}x{calib.vis_size[1]}):")
    print(calib.homography)
    print(f"{calib.inliers} inlier points, reprojection RMS {calib.rms_px:.3f} px ({calib.method})")
    if calib.rms_px is not None and calib.rms_px > 3.0:
        print("warning: a reprojection error above 3 px suggests mismatched points or a scene too close for a "
              "homography")
    print(f"wrote {path}")
    if args.preview:
        if not ir_images or not vis_images:
            raise CommandError("--preview needs --ir and --vis images")
        ir, vis = ir_images[0], vis_images[0]
        warped = cv2.warpPerspective(_to_u8(ir), calib.homography, (vis.shape[1], vis.shape[0]))
        heat = cv2.applyColorMap(warped if warped.ndim == 2 else cv2.cvtColor(warped, cv2.COLOR_BGR2GRAY),
                                 cv2.COLORMAP_INFERNO)
        base = _to_u8(vis)
        base = base if base.ndim == 3 else cv2.cvtColor(base, cv2.COLOR_GRAY2BGR)
        from fusion_edge.imaging import write_image

        write_image(args.preview, cv2.addWeighted(base, 0.5, heat, 0.5, 0.0))
        print(f"wrote {args.preview}")
    return 0


def _read_images(items: list[str], flag: str) -> list:
    from fusion_edge.imaging import read_image
    from fusion_edge.runtime.sources import IMAGE_SUFFIXES

    paths: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            paths += sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        else:
            paths.append(p)
    if not paths:
        raise FileNotFoundError(f"{flag}: no images found in {', '.join(items)}")
    return [read_image(p) for p in paths]


def _parse_size(text: str, flag: str) -> tuple[int, int]:
    try:
        a, b = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"{flag} must look like 9x6, got {text!r}") from None
    if a <= 0 or b <= 0:
        raise ValueError(f"{flag} must be positive, got {text!r}")
    return a, b


def _size_from(text: str | None, images: list, flag: str, image_flag: str) -> tuple[int, int]:
    if text:
        return _parse_size(text, flag)
    if images:
        return images[0].shape[1], images[0].shape[0]
    raise ValueError(f"give {flag} WxH or an {image_flag} image so the calibration knows the frame size")


def _to_u8(image):
    import numpy as np

    if image.dtype == np.uint8:
        return image
    lo, hi = float(image.min()), float(image.max())
    return ((image.astype(np.float32) - lo) * (255.0 / max(hi - lo, 1e-6))).astype(np.uint8)
