"""The plugin flavour: each ES2D core (and each unfolded LDC) becomes one custom node.

The ES2D core becomes either the fused ``FusionEdgeES2DScan`` node or, with
``scan_node="selective_scan"``, a ``FusionEdgeSelectiveScan`` node between standard-op route
gather/projections/scatter (a single kernel, so TensorRT's ahead-of-time plugins can carry it).
Everything else stays standard ONNX. The custom nodes are described in
:mod:`fusion_edge.export.contract`; TensorRT resolves them to the plugins in
:mod:`fusion_edge.export.plugins`, ONNX Runtime to :mod:`fusion_edge.export.ort_custom_ops`.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator

import onnx

from .contract import CUSTOM_OPS, DOMAIN, PLUGIN_NAMESPACE, PLUGIN_VERSION, SCAN_NODES, SPECS
from .model_prep import swapped_ops
from .symbolic import es2d_scan_node, es2d_scan_unfused_node, ldc_node


@contextlib.contextmanager
def plugin_ops(scan_node: str = "es2d") -> Iterator[None]:
    """Trace the model with ES2D (fused, or as a plain scan node) and LDC calls emitted as custom nodes."""
    if scan_node not in SCAN_NODES:
        raise ValueError(f"scan node must be one of {SCAN_NODES}, got {scan_node!r}")
    es2d = es2d_scan_node if scan_node == "es2d" else es2d_scan_unfused_node
    with swapped_ops(es2d=es2d, ldc=ldc_node):
        yield


def custom_node_counts(model: onnx.ModelProto) -> dict[str, int]:
    return dict(Counter(n.op_type for n in model.graph.node if n.domain == DOMAIN))


def plugin_node_problems(model: onnx.ModelProto) -> list[str]:
    """Check every custom node against its spec (inputs, outputs, plugin attributes, fields)."""
    problems = []
    for node in model.graph.node:
        if node.domain != DOMAIN:
            continue
        where = f"node {node.name} ({node.op_type})"
        spec = SPECS.get(node.op_type)
        if spec is None:
            problems.append(f"{where}: unknown custom op; known: {', '.join(CUSTOM_OPS)}")
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if attrs.get("plugin_version") != PLUGIN_VERSION.encode():
            problems.append(f"{where}: plugin_version {attrs.get('plugin_version')!r} != {PLUGIN_VERSION!r}")
        if attrs.get("plugin_namespace") != PLUGIN_NAMESPACE.encode():
            problems.append(f"{where}: plugin_namespace {attrs.get('plugin_namespace')!r} != {PLUGIN_NAMESPACE!r}")
        missing = [f for f in spec.fields if f not in attrs]
        if missing:
            problems.append(f"{where}: missing fields {missing}")
        if len(node.input) != len(spec.inputs) or len(node.output) != len(spec.outputs):
            problems.append(f"{where}: {len(node.input)} inputs / {len(node.output)} outputs, expected "
                            f"{len(spec.inputs)} / {len(spec.outputs)}")
    return problems
