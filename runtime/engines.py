"""Engine backends behind one interface, and choosing one by file and availability.

A backend runs the exported network on batches: ``infer(vis, ir) -> fused``, each
(B, 1, H, W) float32 in [0, 1]. TensorRT engines (``.engine``/``.plan``) run on TensorRT,
ONNX graphs on ONNX Runtime (TensorRT, CUDA, then CPU execution providers), PyTorch
checkpoints (``.pt``/``.pth``) on PyTorch for development. Each backend module imports its
library only when opened, so the runtime imports without any of them (and never imports torch).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

INPUT_NAMES = ("vis", "ir")
OUTPUT_NAME = "fused"

ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
ONNX_SUFFIXES = (".onnx",)
TORCH_SUFFIXES = (".pt", ".pth", ".ckpt")

# backend name -> (module, class, extra keyword arguments)
BACKENDS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "tensorrt": ("fusion_edge.runtime.backend_tensorrt", "TensorRTBackend", {}),
    "ort": ("fusion_edge.runtime.backend_ort", "OrtBackend", {"providers": "auto"}),
    "ort-trt": ("fusion_edge.runtime.backend_ort", "OrtBackend", {"providers": "tensorrt"}),
    "ort-cuda": ("fusion_edge.runtime.backend_ort", "OrtBackend", {"providers": "cuda"}),
    "ort-cpu": ("fusion_edge.runtime.backend_ort", "OrtBackend", {"providers": "cpu"}),
    "torch": ("fusion_edge.runtime.backend_torch", "TorchBackend", {}),
}


class Backend(ABC):
    """One loaded network. Subclasses set the attributes in ``__init__``.

    ``infer`` takes host (numpy) or device (CuPy) arrays. A CPU backend returns numpy; a GPU
    backend returns a CuPy array that is complete once ``stream`` has reached it (work is
    queued on ``stream``, so later work on the same stream may use it directly).
    """

    name: str = "backend"
    on_gpu: bool = False
    device_id: int = 0
    stream: Any = None  # a cupy.cuda.Stream for GPU backends
    input_hw: tuple[int | None, int | None] = (None, None)  # from the graph; None = dynamic
    path: Path

    @abstractmethod
    def infer(self, vis, ir):
        """Fuse a batch: vis, ir (B, 1, H, W) float32 in [0, 1] -> fused (B, 1, H, W) float32."""

    def synchronize(self) -> None:
        if self.stream is not None:
            self.stream.synchronize()

    def close(self) -> None:  # noqa: B027 - most backends free everything when collected
        """Release the session/engine (also done when garbage collected)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {getattr(self, 'path', '')}>"


def check_io_names(inputs: list[str], outputs: list[str], path: Path) -> None:
    """The model contract: inputs ``vis`` and ``ir``, output ``fused``; say what differs."""
    if set(inputs) != set(INPUT_NAMES) or OUTPUT_NAME not in outputs:
        raise ValueError(
            f"{path.name}: expected inputs {list(INPUT_NAMES)} and output {OUTPUT_NAME!r} "
            f"(the fusion-edge export contract), found inputs {inputs} and outputs {outputs}"
        )


@dataclass
class ModelInfo:
    """What the runtime needs to know about a model's input size.

    Fixed models take exactly (height, width). Dynamic models take any size that is a
    multiple of ``size_multiple`` within [min_hw, max_hw].
    """

    height: int | None = None
    width: int | None = None
    dynamic: bool = True
    size_multiple: int = 32
    min_hw: tuple[int, int] | None = None
    max_hw: tuple[int, int] | None = None
    manifest: dict = field(default_factory=dict)

    @property
    def fixed_hw(self) -> tuple[int, int] | None:
        if self.dynamic or self.height is None or self.width is None:
            return None
        return self.height, self.width


def read_manifest(model_path: str | Path) -> dict:
    """``manifest.json`` beside the model (or inside a model folder); {} when there is none."""
    path = Path(model_path)
    folder = path if path.is_dir() else path.parent
    manifest = folder / "manifest.json"
    if not manifest.is_file():
        return {}
    try:
        data = json.loads(manifest.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{manifest} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{manifest} must hold a JSON object, got {type(data).__name__}")
    return data


def model_info(manifest: dict, graph_hw: tuple[int | None, int | None]) -> ModelInfo:
    """Combine the graph's input shape (the truth) with the manifest (sizes, dynamic range)."""
    gh, gw = graph_hw
    info = ModelInfo(manifest=manifest)
    info.size_multiple = int(manifest.get("size_multiple", manifest.get("multiple", 32)) or 1)
    if gh is not None and gw is not None:
        info.height, info.width, info.dynamic = int(gh), int(gw), False
        if manifest.get("height") not in (None, gh) or manifest.get("width") not in (None, gw):
            log.warning("manifest size %sx%s differs from the graph's %sx%s; using the graph's",
                        manifest.get("width"), manifest.get("height"), gw, gh)
        return info
    info.height = _opt_int(manifest.get("height"))
    info.width = _opt_int(manifest.get("width"))
    dynamic = manifest.get("dynamic", True)
    info.dynamic = bool(dynamic) or info.height is None or info.width is None
    ranges = dynamic if isinstance(dynamic, dict) else manifest
    info.min_hw = _opt_hw(ranges.get("min") or ranges.get("min_size"))
    info.max_hw = _opt_hw(ranges.get("max") or ranges.get("max_size"))
    return info


def _opt_int(value) -> int | None:
    return None if value is None else int(value)


def _opt_hw(value) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, dict):
        return int(value["height"]), int(value["width"])
    h, w = (int(v) for v in list(value)[-2:])
    return h, w


def resolve_model_path(path: str | Path, backend: str = "auto") -> tuple[Path, str]:
    """Pick the file and backend: by suffix, or for a folder, ``model.engine`` when TensorRT is
    importable and ``model.onnx`` otherwise."""
    path = Path(path)
    if backend != "auto" and backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose auto or one of: {', '.join(BACKENDS)}")
    if path.is_dir():
        candidates = []
        if backend in ("auto", "tensorrt"):
            candidates += [path / f"model{s}" for s in ENGINE_SUFFIXES]
        if backend == "auto" or backend.startswith("ort"):
            candidates += [path / "model.onnx"]
        if backend in ("auto", "torch"):
            candidates += [path / f"model{s}" for s in TORCH_SUFFIXES]
        present = [c for c in candidates if c.is_file()]
        if backend == "auto" and any(c.suffix in ENGINE_SUFFIXES for c in present) and not tensorrt_available():
            present = [c for c in present if c.suffix not in ENGINE_SUFFIXES] or present
        if not present:
            raise FileNotFoundError(f"no model file in {path} (looked for {', '.join(c.name for c in candidates)})")
        path = present[0]
    if not path.is_file():
        raise FileNotFoundError(f"model not found: {path}")
    if backend != "auto":
        return path, backend
    suffix = path.suffix.lower()
    if suffix in ENGINE_SUFFIXES:
        return path, "tensorrt"
    if suffix in ONNX_SUFFIXES:
        return path, "ort"
    if suffix in TORCH_SUFFIXES:
        return path, "torch"
    known = ", ".join(ENGINE_SUFFIXES + ONNX_SUFFIXES + TORCH_SUFFIXES)
    raise ValueError(f"cannot tell the backend for {path.name}: expected one of {known}")


def tensorrt_available() -> bool:
    from fusion_edge.runtime.backend_tensorrt import find_tensorrt

    return find_tensorrt() is not None


def open_backend(path: str | Path, backend: str = "auto", *, device_id: int = 0, **options: Any) -> Backend:
    """Load a model with the backend its file and the installed libraries call for."""
    path, name = resolve_model_path(path, backend)
    module, cls_name, extra = BACKENDS[name]
    cls = getattr(importlib.import_module(module), cls_name)
    loaded = cls(path, device_id=device_id, **{**extra, **options})
    log.info("loaded %s with %s", path.name, loaded.name)
    return loaded


def available_backends() -> list[str]:
    """Backends whose library imports here (for ``--help`` and error messages)."""
    found = []
    if tensorrt_available():
        found.append("tensorrt")
    try:
        import onnxruntime as ort

        providers = ort.get_available_providers()
        found.append("ort")
        found += [n for n, p in (("ort-trt", "TensorrtExecutionProvider"), ("ort-cuda", "CUDAExecutionProvider"))
                  if p in providers]
        found.append("ort-cpu")
    except ImportError:
        pass
    try:
        if importlib.util.find_spec("torch") is not None:
            found.append("torch")
    except (ImportError, ValueError):  # torch blocked or broken
        pass
    return found
