"""Shrink a traced graph with ONNX Runtime's basic (semantics-preserving) optimisations.

The TorchScript tracer records every ``x.shape`` read as Shape/Gather/Unsqueeze/Concat nodes,
even where the sizes are static, and the unrolled chunked scan adds thousands of them. ONNX
Runtime's basic level folds constants (static shapes included) and removes redundant nodes,
using standard ONNX operators only; the result loads several times faster everywhere and is
checked again by the caller (portability, parity).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import onnx


def used_domains(model: onnx.ModelProto) -> set[str]:
    domains = {node.domain for node in model.graph.node}
    return {"ai.onnx" if d == "" else d for d in domains}


def strip_unused_opsets(model: onnx.ModelProto) -> None:
    """ONNX Runtime declares every domain it knows; keep the default one and those in use."""
    used = used_domains(model)
    keep = [o for o in model.opset_import if o.domain in ("", "ai.onnx") or o.domain in used]
    del model.opset_import[:]
    model.opset_import.extend(keep)


def optimize_basic(path: str | Path) -> onnx.ModelProto:
    """Rewrite ``path`` in place with ONNX Runtime's basic graph optimisations applied."""
    import onnxruntime as ort

    path = Path(path)
    optimized = path.with_name(path.stem + ".basic.onnx")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(optimized)
    try:
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        model = onnx.load(str(optimized))
    finally:
        with contextlib.suppress(FileNotFoundError):
            optimized.unlink()
    original = onnx.load(str(path), load_external_data=False)
    strip_unused_opsets(model)
    del model.metadata_props[:]
    model.metadata_props.extend(original.metadata_props)
    model.producer_name, model.producer_version = original.producer_name, original.producer_version
    onnx.save(model, str(path))
    return model
