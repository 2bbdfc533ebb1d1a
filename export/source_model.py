"""Load the model to export: a checkpoint, the packaged weights of a preset, or random weights."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from fusion_edge.models.checkpoint import extract_state_dict, load_checkpoint, upgrade_legacy_keys
from fusion_edge.models.fusion_mamba import FusionMamba
from fusion_edge.models.packaged import checkpoint_not_found, resolve_checkpoint
from fusion_edge.models.presets import create_model, preset_config


@dataclass
class SourceModel:
    model: FusionMamba
    preset: str | None
    weights: str  # "checkpoint", "packaged" or "random"
    description: dict = field(default_factory=dict)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def shape_mismatches(path: Path, preset: str, limit: int = 4) -> list[str]:
    """A few keys whose shapes (or presence) differ between a checkpoint and a preset's model."""
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
        state, _, _ = upgrade_legacy_keys(extract_state_dict(raw))
    except Exception:  # the loader's own message already says what is wrong with the file
        return []
    expected = create_model(preset, drop_path_rate=0.0).state_dict()
    found = []
    for key, value in expected.items():
        if key not in state:
            found.append(f"{key}: missing from the checkpoint")
        elif tuple(state[key].shape) != tuple(value.shape):
            found.append(f"{key}: checkpoint {tuple(state[key].shape)} vs preset {tuple(value.shape)}")
        if len(found) >= limit:
            break
    return found


def from_checkpoint(path: str | Path, preset: str | None = None) -> SourceModel:
    path = resolve_checkpoint(path)  # a file, or packaged weights by name ("edge-sum")
    if not path.is_file():
        raise checkpoint_not_found(path)
    if preset is not None:
        preset_config(preset)  # unknown preset -> ValueError listing the known ones
    try:
        model = load_checkpoint(path, preset=preset)
    except ValueError as exc:
        details = shape_mismatches(path, preset) if preset is not None else []
        hint = f" (e.g. {'; '.join(details)})" if details else ""
        raise ValueError(f"{exc}{hint}") from None
    name = preset or getattr(model, "preset", None)
    description = {
        "preset": name,
        "config": model.config,
        "weights": "checkpoint",
        "checkpoint": {"file": path.name, "sha256": _sha256(path)},
    }
    return SourceModel(model.eval(), name, "checkpoint", description)


def packaged_weights(preset: str) -> Path | None:
    """Trained weights shipped inside the package for ``preset``, if this build has them."""
    from fusion_edge.inference import DEFAULT_WEIGHTS, default_weights_path

    path = default_weights_path()
    return path if path is not None and Path(DEFAULT_WEIGHTS).stem == preset else None


def from_preset(preset: str, *, random_weights: bool = False, seed: int = 0) -> SourceModel:
    preset_config(preset)  # unknown preset -> ValueError listing the known ones
    if not random_weights:
        path = packaged_weights(preset)
        if path is None:
            raise FileNotFoundError(
                f"no trained weights for preset {preset!r} in this installation: pass --checkpoint PATH, or "
                "--random-weights to export an untrained model (to try the toolchain)"
            )
        source = from_checkpoint(path, preset)
        source.weights = source.description["weights"] = "packaged"
        return source
    torch.manual_seed(seed)
    model = create_model(preset).eval()
    description = {"preset": preset, "config": model.config, "weights": f"random (seed {seed})", "checkpoint": None}
    return SourceModel(model, preset, "random", description)
