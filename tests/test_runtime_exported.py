"""The real network through the runtime: the ``edge`` preset (random weights) exported as a
portable ONNX graph by ``fusion_edge.export``, streamed over the shared sequence, and checked
against PyTorch on the runtime's own preprocessed inputs. Slow (about a minute: tracing)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
export_pipeline = pytest.importorskip("fusion_edge.export.pipeline")

SIZE = (64, 64)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("edge") / "edge64"
    options = export_pipeline.ExportOptions(output=Path(folder), height=SIZE[0], width=SIZE[1], preset="edge",
                                            random_weights=True, parity_pairs=0, seed=0)
    export_pipeline.run_export(options)
    return folder


@pytest.mark.slow
def test_exported_edge_preset_streams_and_matches_pytorch(exported, data_dir):
    import torch
    from fusion_edge.export.source_model import from_preset
    from fusion_edge.runtime import FusionEngine, FusionPipeline

    engine = FusionEngine(exported)  # the folder: model.onnx and its manifest
    assert engine.backend.name == "onnxruntime[CPU]" and engine.info.fixed_hw == SIZE
    assert engine.manifest["model"]["preset"] == "edge"

    seq = data_dir / "sequence"
    with FusionPipeline(engine, ir=seq / "ir", vis=seq / "vis", max_frames=4, keep_inputs=True) as pipe:
        frames = list(pipe)
    assert len(frames) == 4 and pipe.stats.rejected == 0
    for f in frames:
        assert f.image.shape == (480, 640, 3) and f.image.dtype == np.uint8
        assert f.image.std() > 1.0  # a picture, not a constant

    # the graph on the runtime's preprocessed inputs equals PyTorch on the same inputs
    prep = engine.prepare(frames[0].ir, frames[0].vis)
    onnx_out = engine.infer(prep.vis, prep.ir)
    model = from_preset("edge", random_weights=True, seed=0).model.for_inference()
    with torch.no_grad():
        torch_out = model(torch.from_numpy(prep.vis), torch.from_numpy(prep.ir)).clamp(0, 1).numpy()
    assert onnx_out.shape == (1, 1, *SIZE)
    assert np.abs(onnx_out - torch_out).max() < 1e-3
