"""The contract of our custom ONNX nodes, shared by the exporter, the plugins and ONNX Runtime.

Torch-free on purpose: the runtime imports the plugins (and so this module) on devices that
only run engines.
"""

from __future__ import annotations

from dataclasses import dataclass

DOMAIN = "ai.onnx.contrib"
DOMAIN_VERSION = 1
PLUGIN_NAMESPACE = "fusion_edge"
PLUGIN_VERSION = "1"

ES2D_OP = "FusionEdgeES2DScan"
SCAN_OP = "FusionEdgeSelectiveScan"
LDC_OP = "FusionEdgeLDC"
CUSTOM_OPS = (ES2D_OP, SCAN_OP, LDC_OP)
# What the plugin flavour turns each ES2D core into: the fused node, or the plain selective scan
# with the route gather/scatter and projections as standard ops (one kernel: an AOT plugin).
SCAN_NODES = ("es2d", "selective_scan")


@dataclass(frozen=True)
class NodeSpec:
    """What a reader of the ONNX file needs to know about one custom node type."""

    op_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    fields: tuple[str, ...]  # integer attributes besides plugin_version / plugin_namespace
    doc: str


ES2D_SPEC = NodeSpec(
    op_type=ES2D_OP,
    inputs=("x", "x_proj_weight", "dt_projs_weight", "dt_projs_bias", "A_logs", "Ds"),
    outputs=("y",),
    fields=("d_state", "dt_rank"),
    doc=(
        "ES2D core (skip-sampled 4-route selective scan): x (B, D, h, w) fp32 -> y (B, D, h, w) fp32; "
        "x_proj_weight (4, R+2N, D), dt_projs_weight (4, D, R), dt_projs_bias (4, D), A_logs (4D, N), Ds (4D); "
        "softplus on delta, A = -exp(A_logs); odd h/w zero-padded and scanned as the reference does"
    ),
)
SCAN_SPEC = NodeSpec(
    op_type=SCAN_OP,
    inputs=("u", "delta", "A", "B", "C", "D", "delta_bias"),
    outputs=("y",),
    fields=("d_state", "delta_softplus"),
    doc=(
        "selective scan (mamba_ssm semantics, no z): u, delta (B, D, L) fp32, A (D, N) fp32 (negative), "
        "B, C (B, G, N, L) fp32 with G dividing D, D and delta_bias (D) fp32 -> y (B, D, L) fp32; "
        "delta = softplus(delta + delta_bias) when delta_softplus"
    ),
)
LDC_SPEC = NodeSpec(
    op_type=LDC_OP,
    inputs=("x", "weight", "base_mask", "learnable_mask", "theta"),
    outputs=("y",),
    fields=(),
    doc=(
        "LDC 3x3 convolution, stride 1, padding 1, no bias: W_eff = W * (M - theta * m[o,i] * e * sum(W[o,i])); "
        "x (B, Cin, H, W) fp32 -> y (B, Cout, H, W) fp32"
    ),
)
SPECS = {spec.op_type: spec for spec in (ES2D_SPEC, SCAN_SPEC, LDC_SPEC)}
