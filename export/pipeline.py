"""The whole export, as ``fusion-edge export`` runs it: check -> trace -> parity -> engine -> manifest.

All files are written into a hidden staging folder inside the output folder and moved into
place only when everything succeeded (manifest last), so a failed or interrupted export
leaves the output folder as it was.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .atomic import atomic_write_bytes, check_writable, publish, staging_folder
from .contract import DOMAIN, SCAN_NODES
from .engine import ShapeProfile, build_engine, default_timing_cache
from .manifest import MANIFEST_NAME, build_manifest, dumps, file_facts, package_versions
from .onnx_export import DEFAULT_OPSET, FLAVOURS
from .portable import EXPORT_CHUNK_LEN

ONNX_NAME = "model.onnx"
ENGINE_NAME = "model.engine"
MIN_DYNAMIC_SIZE = 32  # reflect padding to a multiple of 32 needs at least 32 pixels


@dataclass
class ExportOptions:
    output: Path
    height: int
    width: int
    preset: str | None = None
    checkpoint: Path | None = None
    random_weights: bool = False
    flavour: str = "portable"
    dynamic: bool = False
    min_size: tuple[int, int] | None = None
    max_size: tuple[int, int] | None = None
    fp16: bool = False
    engine: bool = False
    fold_ldc: bool = True
    opset: int = DEFAULT_OPSET
    scan_chunk: int = EXPORT_CHUNK_LEN  # positions per chunk of the portable graph's scan
    parity_pairs: int = 2
    parity_data: Path | None = None  # folder with vis/ and ir/; None: the bundled sample pair
    timing_cache: Path | None = None  # None: the user cache folder
    builder_optimization_level: int | None = None  # None: TensorRT's default
    seed: int = 0
    scan_node: str = "es2d"  # plugin flavour: "es2d" (fused node) or "selective_scan" (AOT-capable)
    aot_plugins: bool = False  # build the engine with the ahead-of-time plugins (no Python at run time)


@dataclass
class ExportResult:
    folder: Path
    files: list[Path]
    manifest: dict = field(default_factory=dict)


def _require(module: str, hint: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ImportError(f"exporting needs {module}: {hint}")


def profile_for(options: ExportOptions) -> ShapeProfile | None:
    """min/opt/max sizes of a dynamic export (defaults: a quarter to twice the export size)."""
    if not options.dynamic:
        return None
    h, w = options.height, options.width
    lo = options.min_size or (max(MIN_DYNAMIC_SIZE, h // 4), max(MIN_DYNAMIC_SIZE, w // 4))
    hi = options.max_size or (2 * h, 2 * w)
    if min(lo) < MIN_DYNAMIC_SIZE:
        raise ValueError(f"dynamic exports need a minimum size of at least {MIN_DYNAMIC_SIZE}x{MIN_DYNAMIC_SIZE}, "
                         f"got {lo[1]}x{lo[0]} (width x height)")
    return ShapeProfile(min=tuple(lo), opt=(h, w), max=tuple(hi))


def validate(options: ExportOptions) -> ShapeProfile | None:
    """Every check that can fail fast, before minutes of tracing."""
    from fusion_edge.models.packaged import checkpoint_not_found, resolve_checkpoint
    from fusion_edge.models.presets import preset_config

    for name, value in (("height", options.height), ("width", options.width)):
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"--{name} must be a positive integer, got {value!r}")
    if options.flavour not in FLAVOURS:
        raise ValueError(f"unknown flavour {options.flavour!r}; choose one of: {', '.join(FLAVOURS)}")
    if options.checkpoint is None and options.preset is None:
        raise ValueError("give --checkpoint PATH or --preset NAME")
    if options.preset is not None:
        preset_config(options.preset)
    if options.checkpoint is not None and not resolve_checkpoint(options.checkpoint).is_file():
        raise checkpoint_not_found(options.checkpoint)
    if options.scan_node not in SCAN_NODES:
        raise ValueError(f"unknown scan node {options.scan_node!r}; choose one of: {', '.join(SCAN_NODES)}")
    if options.scan_node != "es2d" and options.flavour != "plugin":
        raise ValueError("--scan-node applies to the plugin flavour (the portable graph has no custom nodes)")
    if options.aot_plugins:
        if not options.engine or options.flavour != "plugin" or options.scan_node != "selective_scan":
            raise ValueError("--aot-plugins builds an engine whose plugins run without Python: it needs --engine, "
                             "--flavour plugin and --scan-node selective-scan (the fused ES2D node is three "
                             "kernels, which an ahead-of-time plugin cannot launch)")
    if options.scan_chunk < 1:
        raise ValueError(f"--scan-chunk must be a positive integer, got {options.scan_chunk}")
    if options.parity_pairs < 0:
        raise ValueError(f"--parity-pairs must be 0 or more, got {options.parity_pairs}")
    profile = profile_for(options)
    _require("onnx", "pip install onnx (or pip install fusion-edge[export])")
    if options.parity_pairs:
        _require("onnxruntime", "pip install onnxruntime (or pass --parity-pairs 0 to skip the parity check)")
        if options.flavour == "plugin":
            _require("onnxruntime_extensions", "pip install onnxruntime-extensions, which runs the plugin graph "
                     "for the parity check (or pass --parity-pairs 0)")
    if options.flavour == "portable":
        from .portable import chunked_available

        if not chunked_available():
            raise RuntimeError(
                "the portable flavour needs fusion_edge.ops.selective_scan_chunked; use --flavour plugin"
            )
    if options.engine:
        from .trt_loader import import_tensorrt, is_rtx

        trt = import_tensorrt()
        if options.flavour == "plugin" and is_rtx(trt):
            raise ValueError("only TensorRT for RTX is installed, and it cannot build plugin-flavour graphs: "
                             "use --flavour portable, or install full TensorRT")
        if options.aot_plugins:
            from .plugins_aot import import_decorator_api

            import_decorator_api()
    check_writable(options.output)
    return profile


def parity_sizes(options: ExportOptions, profile: ShapeProfile | None) -> list[tuple[int, int]]:
    """The export size, plus for dynamic graphs the smallest size and one off the 32-grid."""
    sizes = [(options.height, options.width)]
    if profile is not None:
        off_grid = (min(profile.max[0], options.height + 20), min(profile.max[1], options.width + 12))
        sizes += [s for s in (profile.min, off_grid) if s not in sizes]
    return sizes


def run_export(options: ExportOptions, log: Callable[[str], None] = lambda message: None) -> ExportResult:
    """Export as described by ``options``; returns the files written. Raises on any failure."""
    profile = validate(options)
    from . import parity as parity_mod
    from .model_prep import pad_mode_for, prepare
    from .onnx_export import export_onnx
    from .plugin_graph import custom_node_counts
    from .source_model import from_checkpoint, from_preset

    if options.checkpoint is not None:
        source = from_checkpoint(options.checkpoint, options.preset)
    else:
        source = from_preset(options.preset, random_weights=options.random_weights, seed=options.seed)
    log(f"model: preset {source.preset or 'custom'}, weights: {source.description['weights']}")
    precision = "fp16" if options.fp16 else "fp32"
    pad_mode = "reflect" if options.dynamic else pad_mode_for(options.height, options.width)
    module = prepare(source.model, fold_ldc=options.fold_ldc, fp16=options.fp16, pad_mode=pad_mode)
    folder = Path(options.output)

    with staging_folder(folder) as stage:
        log(f"tracing the {options.flavour} graph at {options.width}x{options.height} (width x height)"
            + (f", dynamic {profile.min[1]}x{profile.min[0]} .. {profile.max[1]}x{profile.max[0]}" if profile else ""))
        metadata = {"fusion_edge.flavour": options.flavour, "fusion_edge.precision": precision,
                    "fusion_edge.preset": source.preset or ""}
        graph = export_onnx(module, stage / ONNX_NAME, height=options.height, width=options.width,
                            flavour=options.flavour, dynamic=options.dynamic, opset=options.opset, metadata=metadata,
                            scan_chunk=options.scan_chunk, scan_node=options.scan_node)

        parity = None
        if options.parity_pairs:
            files = (parity_mod.pair_files(options.parity_data) if options.parity_data is not None
                     else parity_mod.bundled_pair_files())
            pairs = {s: parity_mod.load_pairs(files, *s, options.parity_pairs) for s in parity_sizes(options, profile)}
            log(f"parity: {sum(len(p) for p in pairs.values())} real pairs at {len(pairs)} size(s) in ONNX Runtime")
            report = parity_mod.measure(source.model, stage / ONNX_NAME, pairs, flavour=options.flavour,
                                        precision=precision)
            parity = report.as_dict()
            log(f"parity: max |graph - PyTorch| = {report.max_abs_diff:.3g} (tolerance {report.tolerance:g})")
            if not report.passed:
                raise RuntimeError(f"parity check failed: max abs difference {report.max_abs_diff:.3g} exceeds "
                                   f"{report.tolerance:g} ({precision}); nothing was written")

        engine = None
        names = [ONNX_NAME]
        if options.engine:
            log("building the TensorRT engine")
            engine = build_engine(stage / ONNX_NAME, stage / ENGINE_NAME, profile=profile, fp16=options.fp16,
                                  timing_cache=options.timing_cache or default_timing_cache(),
                                  optimization_level=options.builder_optimization_level,
                                  aot_plugins=options.aot_plugins)
            names.append(ENGINE_NAME)
            log(f"engine: {engine['builder']}, {engine['precision']}, {engine['bytes'] / 1e6:.1f} MB "
                f"in {engine['build_seconds']} s")

        size_range = None
        if profile is not None:
            size_range = {"min_size": list(profile.min), "opt_size": list(profile.opt), "max_size": list(profile.max)}
        description = dict(source.description, fold_ldc=options.fold_ldc,
                           parameters=sum(p.numel() for p in module.parameters()))
        extra_versions = {}
        if engine is not None:
            extra_versions[engine["builder"].split()[0]] = engine["builder"].split()[1]
        manifest = build_manifest(
            model=description, height=options.height, width=options.width, dynamic=options.dynamic,
            size_range=size_range, flavour=options.flavour, precision=precision, opset=options.opset,
            custom_ops=custom_node_counts(graph) if any(n.domain == DOMAIN for n in graph.graph.node) else {},
            files={name: file_facts(stage / name) for name in names}, parity=parity, engine=engine,
            versions=package_versions(extra_versions),
        )
        atomic_write_bytes(stage / MANIFEST_NAME, dumps(manifest))
        stale = [] if options.engine else [ENGINE_NAME]
        publish(stage, folder, [*names, MANIFEST_NAME], stale=stale)
    log(f"wrote {', '.join([*names, MANIFEST_NAME])} to {folder}")
    return ExportResult(folder, [folder / n for n in (*names, MANIFEST_NAME)], manifest)
