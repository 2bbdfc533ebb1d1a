"""Build a TensorRT engine from an exported graph: TensorRT if installed, else TensorRT for RTX.

Precision comes from the graph (networks are built strongly typed, so an fp16 export gives an
fp16 engine); full TensorRT reuses a timing cache between builds. TensorRT for RTX builds ahead
of time without a GPU (its engines are JIT-specialised on the user's RTX GPU at load time) and
has no timing cache, so there the cache is not used.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType

import onnx

from .atomic import atomic_write_bytes
from .contract import DOMAIN
from .trt_loader import import_tensorrt, is_rtx

INPUT_NAMES = ("vis", "ir")


@dataclass(frozen=True)
class ShapeProfile:
    """Optimisation profile over image sizes (H, W); batch is fixed."""

    min: tuple[int, int]
    opt: tuple[int, int]
    max: tuple[int, int]
    batch: int = 1

    def __post_init__(self) -> None:
        for i, axis in enumerate(("height", "width")):
            lo, mid, hi = self.min[i], self.opt[i], self.max[i]
            if not 0 < lo <= mid <= hi:
                raise ValueError(f"profile {axis}s must satisfy 0 < min <= opt <= max, got {lo}, {mid}, {hi}")

    def shapes(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        return tuple((self.batch, 1, h, w) for h, w in (self.min, self.opt, self.max))  # type: ignore[return-value]


def default_timing_cache() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "fusion-edge" / "tensorrt-timing.cache"


def _collecting_logger(trt: ModuleType):
    class Logger(trt.ILogger):
        """Keeps errors and warnings so that a failed build can say why."""

        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.messages: list[str] = []

        def log(self, severity, msg):
            if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                self.messages.append(f"error: {msg}")
            elif severity == trt.ILogger.Severity.WARNING:
                self.messages.append(f"warning: {msg}")

    return Logger()


def graph_facts(onnx_path: Path) -> tuple[list[str], bool]:
    """(our custom op types in the graph, is an fp16 graph)."""
    model = onnx.load(str(onnx_path), load_external_data=False)
    custom = sorted({n.op_type for n in model.graph.node if n.domain == DOMAIN})
    fp16 = any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    return custom, fp16


def build_engine(
    onnx_path: str | Path,
    engine_path: str | Path,
    *,
    profile: ShapeProfile | None = None,
    fp16: bool = False,
    timing_cache: str | Path | None = None,
    optimization_level: int | None = None,
    trt: ModuleType | None = None,
    aot_plugins: bool = False,
) -> dict:
    """Parse ``onnx_path``, build, write ``engine_path`` atomically; returns facts for the manifest.

    ``profile`` is required when the graph has dynamic sizes; ``optimization_level`` (0-5, TensorRT's
    default 3 when None) trades build time for engine speed. ``aot_plugins`` registers the
    ahead-of-time plugins (PTX stored in the engine, no Python when it runs) instead of the
    Python ones; every custom node must have one. Raises ImportError (nothing to
    build with), ValueError (a graph/option this builder cannot take) or RuntimeError (the
    parser or builder failed; the message carries TensorRT's errors).
    """
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    trt = trt or import_tensorrt()
    rtx = is_rtx(trt)
    custom, graph_fp16 = graph_facts(onnx_path)
    if custom:
        if rtx:
            raise ValueError(
                "TensorRT for RTX cannot build plugin-flavour graphs (its parser does not take custom plugin "
                "nodes); export with --flavour portable, or build with full TensorRT (Jetson, data-centre GPUs)"
            )
        if aot_plugins:
            from .contract import ES2D_OP
            from .plugins_aot import register_aot

            if ES2D_OP in custom:
                raise ValueError(f"{ES2D_OP} has no ahead-of-time plugin (its launcher runs three kernels); "
                                 "export with --scan-node selective-scan")
            register_aot()
        else:
            from .plugins import register

            register(trt)
    if fp16 and not graph_fp16 and rtx:
        raise ValueError("TensorRT for RTX takes precision from the graph: export with --fp16 to get an fp16 engine")

    logger = _collecting_logger(trt)
    builder = trt.Builder(logger)
    flag_names = trt.NetworkDefinitionCreationFlag.__members__
    weak_fp16 = fp16 and not graph_fp16  # fp32 graph, fp16 kernels allowed: full TensorRT only
    flags = 0
    if "STRONGLY_TYPED" in flag_names and not weak_fp16:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise RuntimeError(f"TensorRT's ONNX parser rejected {onnx_path.name}: " + " | ".join(errors[:5]))

    config = builder.create_builder_config()
    if optimization_level is not None:
        if not 0 <= optimization_level <= 5:
            raise ValueError(f"builder optimisation level must be 0..5, got {optimization_level}")
        config.builder_optimization_level = optimization_level
    if weak_fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    dynamic = any(-1 in tuple(network.get_input(i).shape) for i in range(network.num_inputs))
    if dynamic:
        if profile is None:
            raise ValueError("the graph has dynamic sizes: an optimisation profile (min/opt/max sizes) is needed")
        opt_profile = builder.create_optimization_profile()
        for i in range(network.num_inputs):
            opt_profile.set_shape(network.get_input(i).name, *profile.shapes())
        config.add_optimization_profile(opt_profile)

    cache_path = None
    if timing_cache is not None and not rtx:
        cache_path = Path(timing_cache)
        data = cache_path.read_bytes() if cache_path.is_file() else b""
        config.set_timing_cache(config.create_timing_cache(data), True)

    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - start
    if serialized is None:
        raise RuntimeError("TensorRT could not build the engine: " + " | ".join(logger.messages[-5:] or ["no details"]))
    blob = bytes(serialized)
    atomic_write_bytes(engine_path, blob)
    if cache_path is not None:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(cache_path, bytes(config.get_timing_cache().serialize()))
    return {
        "builder": f"{trt.__name__} {trt.__version__}",
        "precision": "fp16" if (fp16 or graph_fp16) else "fp32",
        "strongly_typed": bool(flags),
        "optimization_level": config.builder_optimization_level,
        "profile": asdict(profile) if (dynamic and profile is not None) else None,
        "timing_cache": str(cache_path) if cache_path is not None else None,
        "timing_cache_note": (
            "TensorRT for RTX has no timing cache (kernels are specialised when the engine is loaded)"
            if rtx
            else None
        ),
        "plugins": custom,
        "plugin_implementation": (None if not custom else
                                  "ahead-of-time (PTX in the engine)" if aot_plugins else "Python IPluginV3"),
        "build_seconds": round(seconds, 1),
        "bytes": len(blob),
    }
