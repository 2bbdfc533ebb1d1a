"""The model against the public reference: weights, key layout and outputs."""

from __future__ import annotations

import json

import pytest
import torch

from fusion_edge import create_model
from fusion_edge.models import FusionMamba


@pytest.fixture(scope="module")
def vectors(data_dir):
    return torch.load(data_dir / "official_fusionmamba" / "small_64x96.pt", weights_only=True)


@pytest.fixture(scope="module")
def reference_model(vectors):
    model = FusionMamba(**vectors["config"]).eval()
    model.load_state_dict(vectors["state_dict"], strict=True)
    return model


def _errors(out, vectors):
    residual = 2 * (vectors["x1"] + vectors["x2"])
    ref = vectors["out"]
    return (out - ref).abs().max().item(), ((out - residual) - (ref - residual)).abs().max().item()


def test_reference_outputs_match(reference_model, vectors):
    with torch.no_grad():
        out = reference_model(vectors["x1"], vectors["x2"])
    raw, head = _errors(out, vectors)
    assert raw < 1e-4 and head < 1e-4, (raw, head)


def test_inference_model_matches_reference(reference_model, vectors):
    fast = reference_model.for_inference()
    with torch.no_grad():
        out = fast(vectors["x1"], vectors["x2"])
    raw, head = _errors(out, vectors)
    assert raw < 1e-4 and head < 1e-4, (raw, head)
    # the dead weights are gone
    keys = fast.state_dict().keys()
    assert not any(k.startswith("Cross_block.0.") for k in keys)
    assert not any("lastconv" in k or "base_mask" in k for k in keys)


def test_swapping_modalities_changes_output(reference_model, vectors):
    with torch.no_grad():
        a = reference_model(vectors["x1"], vectors["x2"])
        b = reference_model(vectors["x2"], vectors["x1"])
    assert (a - b).abs().max() > 1e-3


def test_paper_preset_matches_manifest(data_dir):
    manifest = json.loads((data_dir / "official_fusionmamba" / "paper_state_dict_manifest.json").read_text())
    with torch.device("meta"):
        model = create_model("paper")
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    expected = {k: list(v) for k, v in manifest["state_dict_shapes"].items()}
    assert shapes == expected
    assert len(shapes) == 1039
