"""Trace the prepared model to ONNX in either flavour and check the result.

Uses the TorchScript-based exporter (``dynamo=False``): its ``symbolic`` functions are what
turn our autograd Functions into custom nodes, and it records shape arithmetic so that the
in-graph padding stays dynamic.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import onnx
import torch

from .contract import DOMAIN, DOMAIN_VERSION
from .graph_cleanup import optimize_basic
from .model_prep import ExportWrapper
from .plugin_graph import plugin_node_problems, plugin_ops
from .portable import EXPORT_CHUNK_LEN, MIN_OPSET, check_portable, longest_route, portable_ops

FLAVOURS = ("plugin", "portable")
INPUT_NAMES = ("vis", "ir")
OUTPUT_NAME = "fused"
DEFAULT_OPSET = 17
DYNAMIC_AXES = {0: "batch", 2: "height", 3: "width"}


def example_inputs(height: int, width: int, batch: int = 1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    vis = torch.rand(batch, 1, height, width, generator=generator)
    ir = torch.rand(batch, 1, height, width, generator=generator)
    return vis, ir


def export_onnx(
    module: ExportWrapper,
    path: str | Path,
    *,
    height: int,
    width: int,
    flavour: str = "portable",
    dynamic: bool = False,
    opset: int = DEFAULT_OPSET,
    metadata: dict[str, str] | None = None,
    scan_chunk: int = EXPORT_CHUNK_LEN,
    cleanup: bool = True,
    scan_node: str = "es2d",
) -> onnx.ModelProto:
    """Write ``module`` as ONNX to ``path`` and return the checked model.

    Portable fp32 graphs are shrunk with ONNX Runtime's basic optimisations (``cleanup``).
    ``scan_node`` (plugin flavour): "es2d" (one fused node per ES2D core) or "selective_scan". Raises
    ValueError if the graph breaks its flavour's rules (portable: standard ops only; plugin:
    custom nodes as specified).
    """
    if flavour not in FLAVOURS:
        raise ValueError(f"unknown flavour {flavour!r}; choose one of: {', '.join(FLAVOURS)}")
    if opset < MIN_OPSET:
        raise ValueError(f"opset {opset} is too old; LayerNormalization needs opset {MIN_OPSET} or newer")
    path = Path(path)
    if flavour == "plugin":
        ops = plugin_ops(scan_node)
    else:
        ops = portable_ops(scan_chunk, max_length=None if dynamic else longest_route(height, width))
    axes = {name: DYNAMIC_AXES for name in (*INPUT_NAMES, OUTPUT_NAME)} if dynamic else None
    # Traced where the module lives: on a GPU the forward pass of a large model at a large size
    # takes seconds instead of minutes (the graph does not depend on the device).
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    inputs = tuple(t.to(device) for t in example_inputs(height, width))
    with ops, torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        torch.onnx.export(
            module,
            inputs,
            str(path),
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            opset_version=opset,
            dynamic_axes=axes,
            custom_opsets={DOMAIN: DOMAIN_VERSION} if flavour == "plugin" else None,
            do_constant_folding=True,
            dynamo=False,
        )
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    if flavour == "portable":
        # Not for fp16 graphs: ONNX Runtime's CPU provider would bake fp32 casts into the saved graph.
        if cleanup and not module.fp16:
            model = optimize_basic(path)
            onnx.checker.check_model(model)
        check_portable(model)
    else:
        problems = plugin_node_problems(model)
        if problems:
            raise ValueError("plugin graph is malformed: " + "; ".join(problems[:8]))
    if metadata:
        onnx.helper.set_model_props(model, {str(k): str(v) for k, v in metadata.items()})
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        onnx.save(model, str(path))
    return model
