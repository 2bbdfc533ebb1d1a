"""``manifest.json``: everything a runtime or a person needs to use the exported files correctly."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
from datetime import datetime, timezone
from pathlib import Path

FORMAT = "fusion-edge-export"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"

COLOUR = {
    "infrared": "grey; colour infrared images are converted with OpenCV's BGR2GRAY weights",
    "visible": "grey, or the Y channel of OpenCV's YCrCb conversion of a BGR image",
    "output": "grey (the fused Y channel); for a colour visible image, combine it with that image's Cr/Cb "
    "and convert YCrCb back to BGR",
}

_DISTRIBUTIONS = {
    "fusion_edge": "fusion-edge",
    "torch": "torch",
    "onnx": "onnx",
    "onnxruntime": "onnxruntime",
    "onnxruntime_extensions": "onnxruntime-extensions",
    "numpy": "numpy",
    "opencv": "opencv-python-headless",
}


def package_versions(extra: dict[str, str] | None = None) -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for key, dist in _DISTRIBUTIONS.items():
        try:
            versions[key] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[key] = None
    if versions["fusion_edge"] is None:
        from fusion_edge import __version__

        versions["fusion_edge"] = __version__
    versions.update(extra or {})
    return versions


def file_facts(path: Path) -> dict:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def io_spec(height: int, width: int, dynamic: bool) -> dict:
    shape = ["batch", 1, "height", "width"] if dynamic else [1, 1, height, width]
    tensor = {"shape": shape, "dtype": "float32", "range": [0.0, 1.0], "layout": "NCHW"}
    return {
        "inputs": [
            {"name": "vis", **tensor, "content": "visible image (see colour)"},
            {"name": "ir", **tensor, "content": "infrared image, registered to the visible one"},
        ],
        "outputs": [{"name": "fused", **tensor, "content": "fused image, already clamped to [0, 1]"}],
    }


def build_manifest(
    *,
    model: dict,
    height: int,
    width: int,
    dynamic: bool,
    size_range: dict[str, list[int]] | None,
    flavour: str,
    precision: str,
    opset: int,
    custom_ops: dict[str, int],
    files: dict[str, dict],
    parity: dict | None,
    engine: dict | None,
    versions: dict,
) -> dict:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": model,
        "height": height,
        "width": width,
        "dynamic": dynamic,
        **(size_range or {}),  # min_size / opt_size / max_size as [height, width] for dynamic exports
        "size_multiple": 1,
        "padding": "inside the graph: reflect-padded to a multiple of 32, output cropped back",
        **io_spec(height, width, dynamic),
        "colour": COLOUR,
        "flavour": flavour,
        "precision": precision,
        "opset": opset,
        "custom_ops": custom_ops,
        "files": files,
        "engine": engine,
        "parity": parity,
        "versions": versions,
    }


def dumps(manifest: dict) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=False) + "\n").encode()


def read_manifest(folder: str | Path) -> dict:
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no {MANIFEST_NAME} in {folder}")
    data = json.loads(path.read_text())
    if data.get("format") != FORMAT:
        raise ValueError(f"{path} is not a fusion-edge export manifest")
    return data
