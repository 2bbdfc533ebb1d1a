"""``fusion-edge eval``: score fused images (or a model, or classical baselines) with the fusion metrics."""

from __future__ import annotations

import argparse
import re
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval",
        help="score fused images with the fusion metrics",
        description="Score fused images against their IR/visible sources with the fusion metrics (EN, SD, SF, "
        "AG, MI, SCD, VIF, Qabf, SSIM, MS-SSIM, FMI, PSNR; see docs/metrics.md). Files are paired by name "
        "(stem) across the folders. Writes OUT/metrics.md, metrics.csv, metrics.json and metrics.png (the "
        "mean of each metric per method) and prints the mean table. Metrics are computed on grey 0-255: "
        "colour images are converted to grey, 16-bit ones scaled.",
    )
    p.add_argument("--ir", required=True, help="folder of infrared images")
    p.add_argument("--vis", required=True, help="folder of visible images")
    p.add_argument(
        "--fused",
        action="append",
        default=[],
        metavar="DIR",
        help="folder of fused images to score (repeat to compare methods; named after the folder)",
    )
    p.add_argument(
        "--model",
        nargs="?",
        const="",
        metavar="PATH",
        help="fuse with this checkpoint first (a file, or packaged weights by name: edge, edge-sum; without "
        "PATH: the packaged default weights); "
        "the fused images are saved to OUT/fused/",
    )
    p.add_argument("--preset", help="model preset of the checkpoint (paper, tiny, edge)")
    p.add_argument("--model-label", help="row name of the model in the tables (default: the checkpoint name)")
    p.add_argument("--device", default="cpu", help="torch device for --model, e.g. cpu or cuda (default cpu)")
    p.add_argument(
        "--baselines",
        action="store_true",
        help="add reference rows computed on the same pairs: average, max, Laplacian pyramid, "
        "and the visible and infrared images themselves",
    )
    p.add_argument("--pyramid-levels", type=int, default=4, help="levels of the Laplacian-pyramid baseline (4)")
    p.add_argument(
        "--metrics",
        nargs="+",
        metavar="NAME",
        help="metrics to compute (default all), e.g. --metrics Qabf VIF SCD or Qabf,VIF,SCD",
    )
    p.add_argument("-o", "--out", required=True, help="output folder for the reports")
    p.set_defaults(func=run)


def natural_key(name: str) -> list:
    """'2' before '10'."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def list_images(folder: Path, role: str) -> dict[str, Path]:
    """Image files of a folder by stem; errors for a missing folder, duplicates, or no images."""
    from fusion_edge.cli import CommandError

    if not folder.is_dir():
        raise CommandError(f"{role} folder not found: {folder}")
    found: dict[str, Path] = {}
    for path in folder.iterdir():
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith("."):
            if path.stem in found:
                raise CommandError(
                    f"{role} folder {folder} has two images named {path.stem!r}: "
                    f"{found[path.stem].name} and {path.name}"
                )
            found[path.stem] = path
    if not found:
        raise CommandError(f"{role} folder {folder} has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return found


def pair_folders(folders: dict[str, Path]) -> list[tuple[str, dict[str, Path]]]:
    """Match images by stem across folders (role -> folder); every folder must hold the same names.

    Returns [(stem, {role: path})] in natural order. The error lists what each folder lacks.
    """
    from fusion_edge.cli import CommandError

    listings = {role: list_images(folder, role) for role, folder in folders.items()}
    every = set().union(*(set(names) for names in listings.values()))
    problems = []
    for role, names in listings.items():
        missing = sorted(every - set(names), key=natural_key)
        if missing:
            shown = ", ".join(missing[:20]) + (f" ... ({len(missing)} in all)" if len(missing) > 20 else "")
            problems.append(f"{role} folder {folders[role]} lacks: {shown}")
    if problems:
        raise CommandError("images do not pair up by name:\n  " + "\n  ".join(problems))
    return [(stem, {role: listings[role][stem] for role in listings}) for stem in sorted(every, key=natural_key)]


def unique_label(label: str, taken: set[str]) -> str:
    candidate, n = label, 2
    while candidate in taken:
        candidate, n = f"{label} ({n})", n + 1
    taken.add(candidate)
    return candidate


def run(args: argparse.Namespace) -> int:
    from fusion_edge.baselines import fuse_average, fuse_laplacian_pyramid, fuse_max
    from fusion_edge.cli import CommandError
    from fusion_edge.imaging import read_image
    from fusion_edge.metrics import METRICS, resolve_names
    from fusion_edge.metrics.chart import bar_chart, write_png
    from fusion_edge.metrics.inputs import as_grey
    from fusion_edge.metrics.report import MethodScores, csv_text, json_text, markdown_report, mean_table, write_text

    if not args.fused and args.model is None and not args.baselines:
        raise CommandError("nothing to score: give --fused DIR, --model [PATH] or --baselines")
    names = resolve_names([n for item in args.metrics or [] for n in item.split(",") if n.strip()] or None)
    out = Path(args.out)

    taken: set[str] = set()
    folders = {"ir": Path(args.ir), "vis": Path(args.vis)}
    fused_roles = []
    for folder in args.fused:
        label = unique_label(Path(folder).resolve().name or "fused", taken)
        folders[label] = Path(folder)
        fused_roles.append(label)
    pairs = pair_folders(folders)

    model = fuse = model_label = None
    if args.model is not None:
        model, fuse = _load_model(args)
        default = Path(args.model).stem if args.model else "fusion-edge (default weights)"
        model_label = unique_label(args.model_label or default, taken)

    methods: dict[str, MethodScores] = {}

    def score(label: str, stem: str, fused, ir, vis) -> None:
        values = {name: float(METRICS[name].fn(fused, ir, vis)) for name in names}
        methods.setdefault(label, MethodScores(label)).per_image[stem] = values

    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for index, (stem, paths) in enumerate(pairs, 1):
        print(f"[{index}/{len(pairs)}] {stem}", file=sys.stderr, flush=True)
        ir_raw, vis_raw = read_image(paths["ir"]), read_image(paths["vis"])
        ir, vis = as_grey(ir_raw, f"ir {paths['ir'].name}"), as_grey(vis_raw, f"vis {paths['vis'].name}")
        if ir.shape != vis.shape:
            raise CommandError(
                f"pair {stem!r}: ir is {ir.shape[1]}x{ir.shape[0]} but vis is "
                f"{vis.shape[1]}x{vis.shape[0]}; metrics need registered pairs of one size"
            )
        if model is not None:
            from fusion_edge.imaging import write_image

            fused_raw = fuse(model, ir_raw, vis_raw)
            write_image(out / "fused" / f"{stem}.png", fused_raw)
            score(model_label, stem, as_grey(fused_raw, f"fused {stem}"), ir, vis)
        for label in fused_roles:
            fused = as_grey(read_image(paths[label]), f"{label} {paths[label].name}")
            if fused.shape != ir.shape:
                raise CommandError(
                    f"{paths[label]} is {fused.shape[1]}x{fused.shape[0]} but its sources are "
                    f"{ir.shape[1]}x{ir.shape[0]}"
                )
            score(label, stem, fused, ir, vis)
        if args.baselines:
            score("average", stem, fuse_average(ir, vis), ir, vis)
            score("max", stem, fuse_max(ir, vis), ir, vis)
            score(
                f"Laplacian pyramid ({args.pyramid_levels})",
                stem,
                fuse_laplacian_pyramid(ir, vis, levels=args.pyramid_levels),
                ir,
                vis,
            )
            score("visible only", stem, vis, ir, vis)
            score("infrared only", stem, ir, ir, vis)
    elapsed = time.perf_counter() - start

    rows = list(methods.values())
    context = [
        f"infrared: `{args.ir}`, visible: `{args.vis}`, {len(pairs)} pairs",
        f"computed {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')} in {elapsed:.1f} s; "
        "conventions: docs/metrics.md",
    ]
    write_text(out / "metrics.md", markdown_report(rows, names, context))
    write_text(out / "metrics.csv", csv_text(rows, names))
    write_text(
        out / "metrics.json",
        json_text(rows, names, {"ir": str(args.ir), "vis": str(args.vis), "pairs": [stem for stem, _ in pairs]}),
    )
    write_png(out / "metrics.png", bar_chart({m.name: m.mean(names) for m in rows}, names))
    print(mean_table(rows, names), end="")
    print(
        f"\n{len(pairs)} pairs, {len(rows)} methods, {elapsed:.1f} s; wrote {out}/metrics.md, metrics.csv, "
        "metrics.json, metrics.png"
    )
    return 0


def _load_model(args: argparse.Namespace):
    """(model, fuse_arrays) from fusion_edge.inference, or a clear error when it cannot be used."""
    from fusion_edge.cli import CommandError

    try:
        from fusion_edge import inference
    except ImportError as exc:
        raise CommandError(
            f"--model needs PyTorch and the fusion model (pip install 'fusion-edge[torch]'): {exc}"
        ) from exc
    load_model = getattr(inference, "load_model", None)
    fuse_arrays = getattr(inference, "fuse_arrays", None)
    if load_model is None or fuse_arrays is None:
        raise CommandError(
            "--model is not available in this build (fusion_edge.inference lacks load_model or "
            "fuse_arrays); fuse the images first and pass --fused DIR"
        )
    model = load_model(args.model or None, args.preset, args.device)
    return model, fuse_arrays
