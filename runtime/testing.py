"""Small stand-in fusion models with the real I/O contract, for tests, examples and smoke checks.

They are not the FusionMamba network: ``max`` fuses by taking the brighter pixel, ``mean``
by a weighted sum. They let the runtime be exercised end to end on a machine that has no
exported network (and no torch). Building them needs the ``onnx`` package.
"""

from __future__ import annotations

import json
from pathlib import Path


def write_reference_model(path: str | Path, kind: str = "max", size: tuple[int, int] | None = None,
                          weight: float = 0.5, opset: int = 17) -> Path:
    """Write ``model.onnx``-style graph ``fused = clip(f(vis, ir), 0, 1)`` and its ``manifest.json``.

    ``size`` = (height, width) makes a fixed-size model; None a dynamic one.
    ``kind``: "max" (per-pixel maximum) or "mean" (``weight * vis + (1 - weight) * ir``).
    """
    try:
        import onnx
        from onnx import TensorProto, helper
    except ImportError as exc:
        raise ImportError(f"writing a reference model needs the onnx package (`pip install onnx`): {exc}") from exc
    path = Path(path)
    dims = [1, 1, *size] if size is not None else ["batch", 1, "height", "width"]
    vis = helper.make_tensor_value_info("vis", TensorProto.FLOAT, dims)
    ir = helper.make_tensor_value_info("ir", TensorProto.FLOAT, dims)
    fused = helper.make_tensor_value_info("fused", TensorProto.FLOAT, dims)
    lo = helper.make_tensor("lo", TensorProto.FLOAT, [], [0.0])
    hi = helper.make_tensor("hi", TensorProto.FLOAT, [], [1.0])
    if kind == "max":
        nodes = [helper.make_node("Max", ["vis", "ir"], ["raw"])]
        inits = [lo, hi]
    elif kind == "mean":
        a = helper.make_tensor("a", TensorProto.FLOAT, [], [weight])
        b = helper.make_tensor("b", TensorProto.FLOAT, [], [1.0 - weight])
        nodes = [helper.make_node("Mul", ["vis", "a"], ["va"]), helper.make_node("Mul", ["ir", "b"], ["ib"]),
                 helper.make_node("Add", ["va", "ib"], ["raw"])]
        inits = [lo, hi, a, b]
    else:
        raise ValueError(f"kind must be 'max' or 'mean', got {kind!r}")
    nodes.append(helper.make_node("Clip", ["raw", "lo", "hi"], ["fused"]))
    graph = helper.make_graph(nodes, f"reference_{kind}", [vis, ir], [fused], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="fusion-edge-reference")
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    manifest = {
        "preset": f"reference-{kind}",
        "height": size[0] if size else None,
        "width": size[1] if size else None,
        "dynamic": size is None,
        "size_multiple": 1,
        "flavour": "portable",
        "colour": "ycrcb-luma",
    }
    (path.parent / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return path
