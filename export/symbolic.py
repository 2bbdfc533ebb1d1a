"""The custom ONNX nodes of the plugin flavour, and the torch functions that emit them.

One node per call, named the way TensorRT's ONNX parser looks plugins up: ``op_type`` is the
plugin name, ``plugin_version`` / ``plugin_namespace`` are string attributes, and the plugin
fields are the remaining attributes. The parser dispatches on ``op_type`` alone (the domain is
not consulted), so the nodes live in ``ai.onnx.contrib``, the one domain in which
onnxruntime-extensions runs Python custom ops: the same file runs in TensorRT (through our
plugins) and in ONNX Runtime on a CPU (through :mod:`fusion_edge.export.ort_custom_ops`).
"""

from __future__ import annotations

import torch

from fusion_edge.ops.es2d import es2d_scan_unfused
from fusion_edge.ops.ldc import ldc_conv2d_ref
from fusion_edge.ops.selective_scan import selective_scan

from .contract import DOMAIN, ES2D_OP, LDC_OP, PLUGIN_NAMESPACE, PLUGIN_VERSION, SCAN_OP


def _plugin_attrs() -> dict[str, str]:
    return {"plugin_version_s": PLUGIN_VERSION, "plugin_namespace_s": PLUGIN_NAMESPACE}


class ES2DScanNode(torch.autograd.Function):
    """Computes the ES2D core in PyTorch; exports as one ``FusionEdgeES2DScan`` node."""

    @staticmethod
    def forward(ctx, x, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds):
        return es2d_scan_unfused(x, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds)

    @staticmethod
    def symbolic(g, x, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds):
        # The weights are initializers, so their shapes are static: the fields come from them.
        d_state = A_logs.type().sizes()[1]
        dt_rank = dt_projs_weight.type().sizes()[2]
        y = g.op(
            f"{DOMAIN}::{ES2D_OP}",
            x,
            x_proj_weight,
            dt_projs_weight,
            dt_projs_bias,
            A_logs,
            Ds,
            d_state_i=int(d_state),
            dt_rank_i=int(dt_rank),
            **_plugin_attrs(),
        )
        y.setType(x.type())
        return y


class SelectiveScanNode(torch.autograd.Function):
    """Computes the selective scan (softplus on delta) in PyTorch; exports as one ``FusionEdgeSelectiveScan``."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, delta_bias):
        return selective_scan(u, delta, A, B, C, D=D, delta_bias=delta_bias, delta_softplus=True)

    @staticmethod
    def symbolic(g, u, delta, A, B, C, D, delta_bias):
        d_state = A.type().sizes()[1]  # A is an initializer (folded from A_logs): static
        y = g.op(f"{DOMAIN}::{SCAN_OP}", u, delta, A, B, C, D, delta_bias, d_state_i=int(d_state),
                 delta_softplus_i=1, **_plugin_attrs())
        y.setType(u.type())
        return y


class LDCNode(torch.autograd.Function):
    """Computes an unfolded LDC in PyTorch; exports as one ``FusionEdgeLDC`` node."""

    @staticmethod
    def forward(ctx, x, weight, base_mask, learnable_mask, theta):
        return ldc_conv2d_ref(x, weight, base_mask, learnable_mask, theta)

    @staticmethod
    def symbolic(g, x, weight, base_mask, learnable_mask, theta):
        y = g.op(f"{DOMAIN}::{LDC_OP}", x, weight, base_mask, learnable_mask, theta, **_plugin_attrs())
        y.setType(x.type())  # every LDC of the model maps C channels to C channels
        return y


def es2d_scan_node(
    x: torch.Tensor,
    x_proj_weight: torch.Tensor,
    dt_projs_weight: torch.Tensor,
    dt_projs_bias: torch.Tensor,
    A_logs: torch.Tensor,
    Ds: torch.Tensor,
    *,
    impl: str | None = None,
) -> torch.Tensor:
    """Drop-in for ``es2d_scan`` that exports as one custom node (fp32 in and out)."""
    weights = (x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds)
    return ES2DScanNode.apply(x.float(), *(w.float() for w in weights))


def selective_scan_node(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
) -> torch.Tensor:
    """Drop-in for ``selective_scan`` as ES2D calls it (D, delta_bias, softplus, no z): one custom node."""
    if z is not None or D is None or delta_bias is None or not delta_softplus:
        raise NotImplementedError(
            f"{SCAN_OP} covers the scan as ES2D calls it (D and delta_bias given, delta_softplus, no z)"
        )
    return SelectiveScanNode.apply(*(t.float() for t in (u, delta, A, B, C, D, delta_bias)))


def es2d_scan_unfused_node(
    x: torch.Tensor,
    x_proj_weight: torch.Tensor,
    dt_projs_weight: torch.Tensor,
    dt_projs_bias: torch.Tensor,
    A_logs: torch.Tensor,
    Ds: torch.Tensor,
    *,
    impl: str | None = None,
) -> torch.Tensor:
    """``es2d_scan`` with gather, projections and scatter as standard ops and the scan as one custom node.

    The gather pads by amounts computed from the shape, so a dynamic graph is right at every size.
    """
    weights = (x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds)
    return es2d_scan_unfused(x.float(), *(w.float() for w in weights), scan=selective_scan_node, pad_always=True)


def ldc_node(
    x: torch.Tensor,
    weight: torch.Tensor,
    base_mask: torch.Tensor,
    learnable_mask: torch.Tensor,
    theta: torch.Tensor,
    *,
    impl: str | None = None,
) -> torch.Tensor:
    """Drop-in for ``ldc_conv2d`` that exports as one custom node (fp32 in and out)."""
    y = LDCNode.apply(x.float(), weight.float(), base_mask.float(), learnable_mask.float(), theta.float())
    return y.to(x.dtype)
