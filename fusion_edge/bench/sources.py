"""What is benchmarked: a preset (random weights), a checkpoint, an ONNX file or a TensorRT engine.

Torch backends need a torch model (preset or checkpoint); ONNX Runtime and TensorRT take an ONNX
graph, exported here per input size when the source is a torch model. Random weights are fine
for latency: every layer runs whatever the values.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")
ONNX_SUFFIXES = (".onnx",)
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


class SourceUnavailable(Exception):
    """This source cannot feed that backend (the message says why)."""


def source_kind(path: Path) -> str:
    suffix = path.suffix.lower()
    for kind, suffixes in (("checkpoint", CHECKPOINT_SUFFIXES), ("onnx", ONNX_SUFFIXES), ("engine", ENGINE_SUFFIXES)):
        if suffix in suffixes:
            return kind
    known = ", ".join(CHECKPOINT_SUFFIXES + ONNX_SUFFIXES + ENGINE_SUFFIXES)
    raise ValueError(f"--model {path}: unknown file type {suffix or '(none)'!r}; expected one of {known}")


class ModelSource:
    """Hands each backend the form of the model it runs, built once and cached."""

    def __init__(self, preset: str | None, model: Path | None, workdir: Path | None = None) -> None:
        self.preset = preset
        self.path = Path(model) if model is not None else None
        self.kind = "preset" if self.path is None else source_kind(self.path)
        self._tmp = tempfile.TemporaryDirectory(prefix="fusion-edge-bench-") if workdir is None else None
        self.workdir = Path(workdir) if workdir is not None else Path(self._tmp.name)
        self._torch_models: dict[str, object] = {}
        self._onnx: dict[tuple, Path] = {}
        self.config = self._model_config()

    # ------------------------------------------------------------------ description
    @property
    def label(self) -> str:
        if self.path is None:
            return f"preset {self.preset} (random weights)"
        return f"{self.kind} {self.path.name}" + (f" (preset {self.preset})" if self.preset else "")

    def _model_config(self) -> dict | None:
        """The FusionMamba constructor arguments, when known (needed for FLOP counting)."""
        from fusion_edge.models.presets import preset_config

        if self.kind == "checkpoint":
            return dict(self.torch_model("cpu").config)
        preset = self.preset or self._manifest_preset()
        return preset_config(preset) if preset else None

    def _manifest_preset(self) -> str | None:
        manifest = self.path.parent / "manifest.json" if self.path is not None else None
        if manifest is None or not manifest.is_file():
            return None
        try:
            return json.loads(manifest.read_text()).get("preset")
        except (OSError, ValueError):
            return None

    # ------------------------------------------------------------------ torch
    def torch_model(self, device: str):
        """The inference-ready torch model on ``device`` (input checks off: they sync the host)."""
        if self.kind in ("onnx", "engine"):
            raise SourceUnavailable(f"--model is an {self.kind} file; torch backends need --preset or a checkpoint")
        if device not in self._torch_models:
            import torch

            from fusion_edge.inference import load_model

            torch.manual_seed(0)
            model = load_model(self.path, self.preset, device, random_init=self.path is None)
            model.check_inputs = False
            self._torch_models[device] = model
        return self._torch_models[device]

    # ------------------------------------------------------------------ onnx
    def onnx_for(self, height: int, width: int, batch: int, fp16: bool) -> Path:
        """A portable (standard-op) ONNX graph for this input shape, exported on first use."""
        if self.kind == "engine":
            raise SourceUnavailable("--model is a TensorRT engine; ONNX Runtime needs --preset, a checkpoint or ONNX")
        if self.kind == "onnx":
            check_onnx_shape(self.path, height, width, batch)
            return self.path
        key = (height, width, batch, fp16)
        if key not in self._onnx:
            out = self.workdir / f"model_{height}x{width}_b{batch}_{'fp16' if fp16 else 'fp32'}.onnx"
            export_portable_onnx(self.torch_model("cpu"), out, height, width, batch, fp16)
            self._onnx[key] = out
        return self._onnx[key]

    def fixed_size(self) -> tuple[int, int] | None:
        """The (height, width) an ONNX file is fixed at, or None (any size, or not an ONNX file)."""
        if self.kind != "onnx":
            return None
        import onnx

        graph = onnx.load(str(self.path), load_external_data=False).graph
        initializers = {i.name for i in graph.initializer}
        inputs = [i for i in graph.input if i.name not in initializers]
        dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim]
        return (dims[2], dims[3]) if len(dims) == 4 and None not in dims[2:] else None

    def engine_path(self) -> Path | None:
        return self.path if self.kind == "engine" else None

    def close(self) -> None:
        self._torch_models.clear()
        if self._tmp is not None:
            self._tmp.cleanup()


def check_onnx_shape(path: Path, height: int, width: int, batch: int) -> None:
    """Raise SourceUnavailable when a fixed-shape graph cannot take (batch, 1, height, width)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    for inp in (i for i in graph.input if i.name not in initializers):
        dims = [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]
        want = [batch, None, height, width]
        if len(dims) != 4 or any(d is not None and w is not None and d != w for d, w in zip(dims, want)):
            shown = "x".join("?" if d is None else str(d) for d in dims)
            raise SourceUnavailable(f"the ONNX input {inp.name!r} is fixed at {shown}; not {batch}x1x{height}x{width}")


def export_portable_onnx(model, out: Path, height: int, width: int, batch: int, fp16: bool) -> None:
    """Export the portable flavour with ``fusion_edge.export`` (standard ops, chunked scan).

    The graph follows the model I/O contract (inputs ``vis``/``ir``, output ``fused`` clamped to
    [0, 1], float32 at the interface; with ``fp16`` the weights and arithmetic inside are fp16).
    Batch 1 exports a fixed shape; a larger batch needs the dynamic graph (batch, height, width).
    """
    try:
        from fusion_edge.export.model_prep import prepare
        from fusion_edge.export.onnx_export import export_onnx
        from fusion_edge.export.portable import chunked_available
    except ImportError as exc:
        raise SourceUnavailable(f"the ONNX exporter cannot be imported ({exc}); install fusion-edge[export]") from exc
    if not chunked_available():
        raise SourceUnavailable("the chunked selective scan is not available, so no portable ONNX can be exported")
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.stem + ".partial.onnx")
    log.info("exporting %s", out.name)
    export_onnx(prepare(model, fp16=fp16), partial, height=height, width=width, flavour="portable",
                dynamic=batch != 1)
    partial.replace(out)
