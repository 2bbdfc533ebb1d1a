"""The portable flavour: standard ONNX operators only, the scan in chunked (parallel) form.

Two things make the graph portable. The ES2D route gather pads unconditionally (pad amounts
computed from the input shape) instead of branching on odd sizes, so a dynamic graph is right
at every size. The scan is the ``chunked`` implementation: a fixed number of parallel steps
made of standard ops, no Loop or Scan over tokens, which every ONNX runtime and TensorRT runs.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterator
from unittest import mock

import onnx
import torch

from fusion_edge.ops.es2d import es2d_scan_unfused
from fusion_edge.ops.selective_scan import available_impls, register_impl, use_impl

from .model_prep import swapped_ops

SCAN_IMPL = "chunked"
# Positions per chunk in the exported scan. Every position is unrolled into the graph, so a short
# chunk keeps the graph small; the carry between chunks is a log-depth pass. Of 4, 8, 16 and 32,
# 8 gave the edge graph's best ONNX Runtime CPU time at 256x256 with few nodes (docs/export.md).
EXPORT_CHUNK_LEN = 8
MIN_OPSET = 17
# Control flow makes a graph data-dependent and slow in TensorRT; the portable graph has none.
FORBIDDEN_OPS = frozenset({"Loop", "Scan", "If", "SequenceConstruct", "SequenceInsert", "SplitToSequence"})
STANDARD_DOMAINS = frozenset({"", "ai.onnx"})


def chunked_scan():
    """The chunked scan function, or None when this installation lacks it."""
    try:
        from fusion_edge.ops.selective_scan_chunked import selective_scan_chunked
    except ImportError:
        return None
    if SCAN_IMPL not in available_impls():  # so that the PyTorch reference can use it too
        register_impl(SCAN_IMPL, selective_scan_chunked)
    return selective_scan_chunked


def chunked_available() -> bool:
    return chunked_scan() is not None


def es2d_scan_portable(
    x: torch.Tensor,
    x_proj_weight: torch.Tensor,
    dt_projs_weight: torch.Tensor,
    dt_projs_bias: torch.Tensor,
    A_logs: torch.Tensor,
    Ds: torch.Tensor,
    *,
    impl: str | None = None,
    chunk_len: int = EXPORT_CHUNK_LEN,
) -> torch.Tensor:
    """``es2d_scan`` with a shape-generic route gather and the chunked scan (the same maths)."""
    scan = functools.partial(chunked_scan(), chunk_len=chunk_len)
    weights = (x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds)
    return es2d_scan_unfused(x, *weights, scan=scan, pad_always=True)


def carry_doublings(max_length: int, chunk_len: int) -> int:
    """Doubling steps the carry pass needs so that state reaches every chunk of ``max_length``."""
    chunks = -(-max_length // chunk_len)
    return max(0, math.ceil(math.log2(chunks))) if chunks > 1 else 0


def longest_route(height: int, width: int, multiple: int = 32, patch: int = 4) -> int:
    """Scan length of the longest ES2D route (stage 0) at an input size: (H/8) * (W/8) after padding."""
    hp, wp = -(-height // multiple) * multiple, -(-width // multiple) * multiple
    return (hp // patch // 2) * (wp // patch // 2)


@contextlib.contextmanager
def fixed_length_carry(max_length: int | None, chunk_len: int) -> Iterator[None]:
    """For static exports, trace only the carry steps the export size needs.

    While tracing, the chunked scan emits enough doubling steps for any length (it cannot see
    the runtime length); with a fixed input size the exact number is known and the graph
    shrinks. Dynamic exports keep the general form.
    """
    import fusion_edge.ops.selective_scan_chunked as chunked

    if max_length is None or not hasattr(chunked, "TRACE_CHUNKS_LOG2"):
        yield
        return
    with mock.patch.object(chunked, "TRACE_CHUNKS_LOG2", carry_doublings(max_length, chunk_len)):
        yield


@contextlib.contextmanager
def portable_ops(chunk_len: int = EXPORT_CHUNK_LEN, max_length: int | None = None) -> Iterator[None]:
    """Trace the model with the portable ES2D core and the chunked scan (``max_length``: static size)."""
    if not chunked_available():
        raise RuntimeError(
            "the portable flavour needs the chunked selective scan (fusion_edge.ops.selective_scan_chunked), "
            "which this installation lacks; use --flavour plugin"
        )
    if chunk_len < 1:
        raise ValueError(f"scan chunk length must be positive, got {chunk_len}")
    es2d = functools.partial(es2d_scan_portable, chunk_len=chunk_len)
    with use_impl(SCAN_IMPL), swapped_ops(es2d=es2d), fixed_length_carry(max_length, chunk_len):
        yield


def standard_op_types(opset: int) -> frozenset[str]:
    """Operator names of the default ONNX domain that exist at ``opset``."""
    names = set()
    for schema in onnx.defs.get_all_schemas_with_history():
        if schema.domain in STANDARD_DOMAINS and schema.since_version <= opset and not schema.deprecated:
            names.add(schema.name)
    return frozenset(names)


def portability_problems(model: onnx.ModelProto) -> list[str]:
    """Everything that keeps a graph from being plain standard ONNX; empty when portable."""
    problems = []
    opsets = {o.domain: o.version for o in model.opset_import}
    opset = opsets.get("", opsets.get("ai.onnx", 0))
    if opset < MIN_OPSET:
        problems.append(f"opset {opset} is older than {MIN_OPSET}")
    extra = sorted(d for d in opsets if d not in STANDARD_DOMAINS)
    if extra:
        problems.append(f"non-standard opset domains imported: {extra}")
    if model.functions:
        problems.append(f"graph defines local functions: {[f.name for f in model.functions]}")
    allowed = standard_op_types(opset)
    for node in model.graph.node:
        where = f"node {node.name or '?'} ({node.op_type})"
        if node.domain not in STANDARD_DOMAINS:
            problems.append(f"{where} is in domain {node.domain!r}")
        elif node.op_type in FORBIDDEN_OPS:
            problems.append(f"{where} is control flow")
        elif node.op_type not in allowed:
            problems.append(f"{where} is not a standard op at opset {opset}")
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            problems.append(f"{where} has a subgraph")
    return problems


def check_portable(model: onnx.ModelProto) -> None:
    """Raise ValueError listing the first problems if the graph is not portable."""
    problems = portability_problems(model)
    if problems:
        more = f" (and {len(problems) - 8} more)" if len(problems) > 8 else ""
        raise ValueError("exported graph is not portable: " + "; ".join(problems[:8]) + more)
