"""``fusion-edge export``: ONNX (plugin or portable flavour), optionally a TensorRT engine, and a manifest."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export",
        help="export ONNX / a TensorRT engine, checked against PyTorch",
        description="Export the model to ONNX (portable: standard ops only; plugin: the ES2D scan as one custom "
        "node per call, for our TensorRT plugins) and optionally build a TensorRT engine. Writes model.onnx, "
        "model.engine (with --engine) and manifest.json (sizes, colour handling, versions, parity measured on "
        "real image pairs). Files appear only when the whole export succeeded.",
    )
    source = p.add_argument_group("model")
    source.add_argument("--checkpoint", type=Path,
                        help="checkpoint file (reference state_dict or training checkpoint) or packaged weights by "
                        "name (edge, edge-sum); without it and without --preset: the packaged edge weights")
    source.add_argument("--preset", help="preset name (paper, tiny, edge); checks --checkpoint against it, or alone "
                        "exports the packaged weights of that preset")
    source.add_argument("--random-weights", action="store_true",
                        help="with --preset and no checkpoint: export untrained weights (to try the toolchain)")
    size = p.add_argument_group("size")
    size.add_argument("--height", type=int, required=True, help="input height in pixels")
    size.add_argument("--width", type=int, required=True, help="input width in pixels")
    size.add_argument("--dynamic", action="store_true", help="dynamic batch/height/width axes and an engine "
                      "optimisation profile from --min-size to --max-size")
    size.add_argument("--min-size", type=int, nargs=2, metavar=("H", "W"),
                      help="smallest size of a dynamic export (default: a quarter of the size, at least 32)")
    size.add_argument("--max-size", type=int, nargs=2, metavar=("H", "W"),
                      help="largest size of a dynamic export (default: twice the size)")
    graph = p.add_argument_group("graph")
    graph.add_argument("--flavour", choices=("portable", "plugin"), default="portable",
                       help="portable: standard ONNX ops only (default); plugin: custom nodes for our TensorRT plugins")
    graph.add_argument("--fp16", action="store_true", help="half-precision graph and engine (the scan stays fp32)")
    graph.add_argument("--no-fold-ldc", dest="fold_ldc", action="store_false",
                       help="keep each LDC as its own operation (a custom node in the plugin flavour)")
    graph.add_argument("--opset", type=int, default=17, help="ONNX opset (17 or newer; default 17)")
    graph.add_argument("--scan-chunk", type=int, default=8,
                       help="positions per chunk of the portable graph's scan (default 8; see docs/export.md)")
    graph.add_argument("--scan-node", choices=("es2d", "selective-scan"), default="es2d",
                       help="plugin flavour: one fused ES2D node per scan (default), or a plain selective-scan node "
                       "with the route gather and projections as standard ops (needed by --aot-plugins)")
    build = p.add_argument_group("engine and checks")
    build.add_argument("--engine", action="store_true",
                       help="also build model.engine with TensorRT (else TensorRT for RTX, when that is installed)")
    build.add_argument("--aot-plugins", action="store_true",
                       help="build the engine with ahead-of-time plugins (PTX in the engine, no Python when it runs; "
                       "TensorRT 10.9+, --flavour plugin --scan-node selective-scan)")
    build.add_argument("--timing-cache", type=Path, help="TensorRT timing cache file (default: in the user cache)")
    build.add_argument("--builder-optimization-level", type=int, choices=range(6), metavar="0-5",
                       help="TensorRT builder optimisation level: lower builds faster, higher may run faster")
    build.add_argument("--parity-pairs", type=int, default=2,
                       help="real image pairs per size for the parity check (default 2; 0 skips it)")
    build.add_argument("--parity-data", type=Path,
                       help="folder with vis/ and ir/ image pairs for the parity check (default: the bundled sample)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fusion_edge.cli import CommandError
    from fusion_edge.export.pipeline import ExportOptions, run_export

    preset = args.preset
    if preset is None and args.checkpoint is None:  # the weights every other command uses by default
        preset = "edge"
    options = ExportOptions(
        output=args.output,
        height=args.height,
        width=args.width,
        preset=preset,
        checkpoint=args.checkpoint,
        random_weights=args.random_weights,
        flavour=args.flavour,
        dynamic=args.dynamic,
        min_size=tuple(args.min_size) if args.min_size else None,
        max_size=tuple(args.max_size) if args.max_size else None,
        fp16=args.fp16,
        engine=args.engine,
        fold_ldc=args.fold_ldc,
        opset=args.opset,
        scan_chunk=args.scan_chunk,
        parity_pairs=args.parity_pairs,
        parity_data=args.parity_data,
        timing_cache=args.timing_cache,
        builder_optimization_level=args.builder_optimization_level,
        scan_node=args.scan_node.replace("-", "_"),
        aot_plugins=args.aot_plugins,
    )
    try:
        result = run_export(options, log=lambda message: print(message, file=sys.stderr))
    except OSError as exc:  # unwritable folder, disk full: say so without a traceback
        if isinstance(exc, FileNotFoundError):
            raise
        raise CommandError(str(exc)) from exc
    parity = result.manifest.get("parity")
    summary = f"parity max abs diff {parity['max_abs_diff']:.2g}" if parity else "parity not checked"
    print(f"exported to {result.folder}: {', '.join(p.name for p in result.files)} ({summary})")
    return 0
