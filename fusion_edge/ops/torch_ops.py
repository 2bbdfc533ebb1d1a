"""Our CUDA kernels as ``torch.library`` custom ops (namespace ``fusion_edge``), for torch.compile.

Dynamo cannot trace into the kernels (they launch through CuPy), so each inference kernel is an
opaque operator with a fake implementation that gives only the output's shape and dtype:

* ``fusion_edge::es2d_scan``  the fused ES2D route scan -> (B, D, h, w) float32
* ``fusion_edge::es2d_scan_projected``  the same with the route projections (and deltas) given (a library GEMM's)
* ``fusion_edge::es2d_gather``  the map's routes as rows -> (B, 4, D, L') in x's dtype (``es2d.es2d_gather``)
* ``fusion_edge::es2d_conv_gather``  the routes of the SS2D layer's map SiLU(depthwise conv) computed from its
  BHWC input on the way -> (B, 4, D, L') in a's dtype (``es2d.es2d_gather(es2d.conv_map(...))``)
* ``fusion_edge::es2d_scan_routes``  the plain scan of gathered routes, merged into the map -> (B, D, h, w)
  channels-last in the routes' dtype (``es2d.scan_routes_merged``)
* ``fusion_edge::es2d_scan_routes_norm``  the same with the SS2D layer's LayerNorm and gate applied in the merge
  -> (B, h, w, D) in the routes' dtype (``es2d.norm_gate`` of the above)
* ``fusion_edge::selective_scan``  the selective scan forward -> u's shape and dtype
* ``fusion_edge::ldc_conv2d``  the LDC convolution -> (B, Cout, H, W) in x's dtype

Defined beside their Python wrappers with :func:`define_op`: ``fusion_edge::linear_gelu``
(``fusion_edge.ops.linear_gelu``) and ``fusion_edge::ln_pool`` (``fusion_edge.ops.ln_pool``).

The CUDA kernel of each op is the inference branch of ``fusion_edge.ops.selective_scan_cuda``;
its CPU kernel is the reference path, so the ops run (and ``torch.library.opcheck`` checks
them) on any machine. :func:`install` routes the ops' dispatch (``es2d``, ``ldc`` and the
selective scan's ``"cuda"`` implementation) through them for inference calls on CUDA
tensors; anything that needs gradients keeps the existing differentiable paths.
Importing this module registers nothing with CUDA and imports no CuPy.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch

from fusion_edge.ops import es2d, ldc, selective_scan_cuda
from fusion_edge.ops.selective_scan import get_default_impl, register_impl
from fusion_edge.ops.selective_scan_chunked import selective_scan_chunked

NAMESPACE = "fusion_edge"
OPS_SUPPORTED = hasattr(torch.library, "custom_op") and hasattr(torch.library, "register_fake")

# Explicit schemas: inferring them from annotations differs between torch versions.
ES2D_SCHEMA = "(Tensor x, Tensor x_proj_weight, Tensor dt_projs_weight, Tensor dt_projs_bias, Tensor A_logs, " \
              "Tensor Ds) -> Tensor"
ES2D_PROJECTED_SCHEMA = "(Tensor x, Tensor proj, Tensor dt_projs_weight, Tensor dt_projs_bias, Tensor A_logs, " \
                        "Tensor Ds, Tensor? delta=None) -> Tensor"
GATHER_SCHEMA = "(Tensor x) -> Tensor"
CONV_GATHER_SCHEMA = "(Tensor a, Tensor weight, Tensor bias, Tensor? a2=None) -> Tensor"
ROUTES_SCHEMA = "(Tensor xs, Tensor delta, Tensor A, Tensor B, Tensor C, Tensor D, Tensor delta_bias, int h, " \
                "int w) -> Tensor"
ROUTES_NORM_SCHEMA = "(Tensor xs, Tensor delta, Tensor A, Tensor B, Tensor C, Tensor D, Tensor delta_bias, int h, " \
                     "int w, Tensor z, Tensor norm_weight, Tensor norm_bias, float eps, bool cross) -> Tensor"
SCAN_SCHEMA = "(Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, Tensor? D, Tensor? z, Tensor? delta_bias, " \
              "bool delta_softplus) -> Tensor"
LDC_SCHEMA = "(Tensor x, Tensor weight, Tensor base_mask, Tensor learnable_mask, Tensor theta) -> Tensor"

_route_cpu = False
_es2d_unfused = es2d.es2d_scan_unfused  # bound once: cpu_route() swaps the module's name for a router
_es2d_projected_unfused = es2d.es2d_scan_projected_unfused


# ----------------------------------------------------------------------------- kernels of the ops
def _computed(fn, *args, memory_format: torch.memory_format = torch.contiguous_format, **kwargs) -> torch.Tensor:
    """``fn``'s output as a fresh dense tensor in ``memory_format`` (the ES2D ops keep their input map's
    layout), computed without autograd (the ops are inference-only)."""
    with torch.no_grad():
        out = fn(*args, **kwargs)
    return out.contiguous(memory_format=memory_format)


def _map_layout(x: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if selective_scan_cuda.is_channels_last(x) else torch.contiguous_format


def _es2d_cuda(x, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds):
    return _computed(selective_scan_cuda.es2d_scan_fused, x, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs,
                     Ds, memory_format=_map_layout(x))


def _es2d_cpu(x, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds):
    return _computed(_es2d_unfused, x, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds,
                     scan=selective_scan_chunked, memory_format=_map_layout(x))


def _es2d_fake(x, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds):
    es2d.check_map(x, "es2d_scan")
    return torch.empty_like(x, dtype=torch.float32, memory_format=_map_layout(x))


def _es2d_projected_cuda(x, proj, dt_projs_weight, dt_projs_bias, A_logs, Ds, delta=None):
    return _computed(selective_scan_cuda.es2d_scan_projected_fused, x, proj, dt_projs_weight, dt_projs_bias, A_logs,
                     Ds, delta, memory_format=_map_layout(x))


def _es2d_projected_cpu(x, proj, dt_projs_weight, dt_projs_bias, A_logs, Ds, delta=None):
    return _computed(_es2d_projected_unfused, x, proj, dt_projs_weight, dt_projs_bias, A_logs, Ds, delta=delta,
                     scan=selective_scan_chunked, memory_format=_map_layout(x))


def _es2d_projected_fake(x, proj, dt_projs_weight, dt_projs_bias, A_logs, Ds, delta=None):
    es2d._check_projections(x, proj, dt_projs_weight, A_logs, delta)
    return torch.empty_like(x, dtype=torch.float32, memory_format=_map_layout(x))


def _gather_cuda(x):
    es2d.check_map(x, "es2d_gather")
    return _computed(selective_scan_cuda.es2d_gather_cuda, x)


def _gather_cpu(x):
    es2d.check_map(x, "es2d_gather")
    return _computed(es2d.es2d_gather, x)


def _gather_fake(x):
    es2d.check_map(x, "es2d_gather")
    return x.new_empty((x.shape[0], es2d.ROUTES, x.shape[1], es2d.route_length(*x.shape[2:])))


def _conv_gather_cuda(a, weight, bias, a2=None):
    _check_conv_input(a, weight, a2)
    return _computed(selective_scan_cuda.es2d_conv_gather_cuda, a, weight, bias, a2)


def _conv_gather_cpu(a, weight, bias, a2=None):
    _check_conv_input(a, weight, a2)
    return _computed(lambda: es2d.es2d_gather(es2d.conv_map(a, weight, bias, a2)))


def _conv_gather_fake(a, weight, bias, a2=None):
    _check_conv_input(a, weight, a2)
    return a.new_empty((a.shape[0], es2d.ROUTES, weight.shape[0], es2d.route_length(*a.shape[1:3])))


def _check_conv_input(a: torch.Tensor, weight: torch.Tensor, a2: torch.Tensor | None) -> None:
    """ValueError unless a (and a2) are (B, h, w, D) inputs of a (D, 1, 3, 3) depthwise conv."""
    if a.dim() != 4 or tuple(weight.shape) != (a.shape[3], 1, 3, 3):
        raise ValueError(f"es2d_conv_gather: a must be (B, h, w, D) and weight (D, 1, 3, 3), got {tuple(a.shape)} "
                         f"and {tuple(weight.shape)}")
    if a2 is not None and a2.shape != a.shape:
        raise ValueError(f"es2d_conv_gather: a2 must have a's shape {tuple(a.shape)}, got {tuple(a2.shape)}")


def _routes_cuda(xs, delta, A, B, C, D, delta_bias, h, w):
    es2d.check_routes(xs, h, w)
    return _computed(selective_scan_cuda.es2d_scan_routes_cuda, xs, delta, A, B, C, D, delta_bias, h, w,
                     memory_format=torch.channels_last)


def _routes_cpu(xs, delta, A, B, C, D, delta_bias, h, w):
    es2d.check_routes(xs, h, w)
    return _computed(es2d.scan_routes_merged, xs, delta, A, B, C, D, delta_bias, h, w, scan=selective_scan_chunked,
                     memory_format=torch.channels_last)


def _routes_fake(xs, delta, A, B, C, D, delta_bias, h, w):
    es2d.check_routes(xs, h, w)
    return xs.new_empty((xs.shape[0], xs.shape[2], h, w)).contiguous(memory_format=torch.channels_last)


def _check_gate(xs, h, w, z, norm_weight, norm_bias):
    es2d.check_routes(xs, h, w)
    want = (xs.shape[0], h, w, xs.shape[2])
    if tuple(z.shape) != want or tuple(norm_weight.shape) != want[3:] or tuple(norm_bias.shape) != want[3:]:
        raise ValueError(f"es2d_scan_routes_norm: z must be (B, h, w, D) = {want} and the LayerNorm's weight and "
                         f"bias (D,); got z {tuple(z.shape)}, weight {tuple(norm_weight.shape)}, bias "
                         f"{tuple(norm_bias.shape)}")


def _routes_norm_cuda(xs, delta, A, B, C, D, delta_bias, h, w, z, norm_weight, norm_bias, eps, cross):
    _check_gate(xs, h, w, z, norm_weight, norm_bias)
    return _computed(selective_scan_cuda.es2d_scan_routes_norm_cuda, xs, delta, A, B, C, D, delta_bias, h, w, z,
                     norm_weight, norm_bias, eps, cross)


def _routes_norm_cpu(xs, delta, A, B, C, D, delta_bias, h, w, z, norm_weight, norm_bias, eps, cross):
    _check_gate(xs, h, w, z, norm_weight, norm_bias)
    y = _routes_cpu(xs, delta, A, B, C, D, delta_bias, h, w)
    gate = es2d.NormGate((xs.shape[2],), norm_weight.to(xs.dtype), norm_bias.to(xs.dtype), eps, z.to(xs.dtype), cross)
    return _computed(es2d.norm_gate, y, gate)


def _routes_norm_fake(xs, delta, A, B, C, D, delta_bias, h, w, z, norm_weight, norm_bias, eps, cross):
    _check_gate(xs, h, w, z, norm_weight, norm_bias)
    return xs.new_empty((xs.shape[0], h, w, xs.shape[2]))


def _scan_cuda(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    return _computed(selective_scan_cuda.selective_scan_cuda, u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias,
                     delta_softplus=delta_softplus)


def _scan_cpu(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    return _computed(selective_scan_chunked, u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias,
                     delta_softplus=delta_softplus)


def _scan_fake(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    if u.dim() != 3:
        raise ValueError(f"selective_scan: u must be (batch, dim, L), got shape {tuple(u.shape)}")
    return u.new_empty(u.shape)


def _ldc_cuda(x, weight, base_mask, learnable_mask, theta):
    return _computed(selective_scan_cuda.ldc_conv2d_cuda, x, weight, base_mask, learnable_mask, theta)


def _ldc_cpu(x, weight, base_mask, learnable_mask, theta):
    return _computed(ldc.ldc_conv2d_ref, x, weight, base_mask, learnable_mask, theta)


def _ldc_fake(x, weight, base_mask, learnable_mask, theta):
    if x.dim() != 4 or weight.dim() != 4:
        raise ValueError(f"ldc_conv2d: x and weight must be 4-D, got {tuple(x.shape)} and {tuple(weight.shape)}")
    return x.new_empty((x.shape[0], weight.shape[0], x.shape[2], x.shape[3]))


_OPS = {
    "es2d_scan": (ES2D_SCHEMA, _es2d_cuda, _es2d_cpu, _es2d_fake),
    "es2d_scan_projected": (ES2D_PROJECTED_SCHEMA, _es2d_projected_cuda, _es2d_projected_cpu, _es2d_projected_fake),
    "es2d_gather": (GATHER_SCHEMA, _gather_cuda, _gather_cpu, _gather_fake),
    "es2d_conv_gather": (CONV_GATHER_SCHEMA, _conv_gather_cuda, _conv_gather_cpu, _conv_gather_fake),
    "es2d_scan_routes": (ROUTES_SCHEMA, _routes_cuda, _routes_cpu, _routes_fake),
    "es2d_scan_routes_norm": (ROUTES_NORM_SCHEMA, _routes_norm_cuda, _routes_norm_cpu, _routes_norm_fake),
    "selective_scan": (SCAN_SCHEMA, _scan_cuda, _scan_cpu, _scan_fake),
    "ldc_conv2d": (LDC_SCHEMA, _ldc_cuda, _ldc_cpu, _ldc_fake),
}


_EXACT_STRIDES = tuple(getattr(torch.Tag, tag) for tag in ("needs_exact_strides",) if hasattr(torch.Tag, tag))


def _registered(name: str) -> bool:
    try:
        getattr(getattr(torch.ops, NAMESPACE), name)
    except (AttributeError, RuntimeError):
        return False
    return True


def define_op(name: str, schema: str, cuda_fn, cpu_fn, fake_fn, tags: tuple = ()) -> bool:
    """Define ``fusion_edge::<name>`` (a CUDA kernel, a CPU kernel and a fake) unless it exists already;
    False where this torch has no ``torch.library.custom_op``."""
    if not OPS_SUPPORTED:
        return False
    if not _registered(name):
        op = torch.library.custom_op(f"{NAMESPACE}::{name}", cuda_fn, mutates_args=(), device_types="cuda",
                                     schema=schema, tags=tags)
        op.register_kernel("cpu", cpu_fn)
        op.register_fake(fake_fn)
    return True


def register_ops() -> bool:
    """Define the ops once per process; False where this torch has no ``torch.library.custom_op``."""
    for name, (schema, cuda_fn, cpu_fn, fake_fn) in _OPS.items():
        # The ES2D ops return their map in the input map's layout (channels-last or not), so a compiler
        # must hand them inputs with exactly the traced strides, or its idea of the output's layout
        # would be wrong.
        if not define_op(name, schema, cuda_fn, cpu_fn, fake_fn, _EXACT_STRIDES if name.startswith("es2d") else ()):
            return False
    return True


# ----------------------------------------------------------------------------- dispatch wrappers
def _kernels_ready() -> bool:
    """Whether CuPy and a GPU are usable; a constant to the compiler (it probes CuPy, which Dynamo cannot trace)."""
    return selective_scan_cuda.kernels_available()


# What torch.compiler.assume_constant_result sets; spelled out because that function imports the whole
# compiler, which would make importing the ops several times slower.
_kernels_ready._dynamo_marked_constant = True


def _inference_only(*tensors: torch.Tensor | None) -> bool:
    return not (torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors))


def use_ops(x: torch.Tensor, *tensors: torch.Tensor | None) -> bool:
    """Inference on a dtype our kernels take, on a GPU with the kernels (or the CPU route for tests)."""
    if x.dtype not in selective_scan_cuda.SUPPORTED_DTYPES or not _inference_only(x, *tensors):
        return False
    if x.is_cuda:
        return _kernels_ready()
    return _route_cpu and x.device.type == "cpu"


def es2d_scan_dispatch(x, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds):
    """The fused ES2D route: the custom op for inference, the existing fused function otherwise."""
    params = (x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds)
    if _es2d_op_applies(x, params):
        return _es2d_op(x, params)
    return selective_scan_cuda.es2d_scan_fused(x, *params)


def _es2d_op(x: torch.Tensor, params: tuple) -> torch.Tensor:
    """The fused op, given its projections by a library GEMM where ``es2d.projects_with_library`` says so,
    or the plain scan on gathered routes where ``es2d.scans_routes`` does."""
    if es2d.scans_routes(x):
        return es2d.es2d_scan_routes(x, *params, gather=torch.ops.fusion_edge.es2d_gather,
                                     scan_merge=torch.ops.fusion_edge.es2d_scan_routes)
    if es2d.projects_with_library(x):
        proj = es2d.es2d_project(x, params[0])
        delta = es2d.es2d_delta(proj, params[1]) if es2d.deltas_with_library(x, params[1].shape[-1]) else None
        return torch.ops.fusion_edge.es2d_scan_projected(x, proj, *params[1:], delta)
    return torch.ops.fusion_edge.es2d_scan(x, *params)


def es2d_conv_routes_dispatch(a, conv_weight, conv_bias, a2, params, gate=None) -> torch.Tensor | None:
    """The SS2D layer on the routes form with its routes gathered straight from its input a (B, h, w, D) (the
    map SiLU(conv) computed on the way, never stored), where the routes form serves the map; else None. With
    ``gate`` (``es2d.NormGate``) the LayerNorm'd, gated (B, h, w, D) output, applied in the merge where
    ``es2d.merges_with_norm``."""
    if (a.dim() != 4 or conv_bias is None or tuple(conv_weight.shape) != (a.shape[3], 1, 3, 3)
            or not es2d.gathers_through_conv()):
        return None
    b, h, w, d = a.shape
    if not (_es2d_op_applies(a, params) and use_ops(a, conv_weight, conv_bias, a2)
            and es2d.scans_routes_of((b, d, h, w), a.dtype)):
        return None
    rows = torch.ops.fusion_edge.es2d_conv_gather(a, conv_weight, conv_bias, a2)
    if gate is not None and _merge_norm_applies(rows, gate):
        merge = functools.partial(_routes_norm_op, gate=gate)
        return es2d.es2d_scan_gathered(rows, (h, w), *params, scan_merge=merge)
    y = es2d.es2d_scan_gathered(rows, (h, w), *params, scan_merge=torch.ops.fusion_edge.es2d_scan_routes)
    return y if gate is None else es2d.norm_gate(y, gate)


def _merge_norm_applies(rows: torch.Tensor, gate: es2d.NormGate) -> bool:
    """The merge-norm kernel serves this layer: switched on, inference, its D channels fit a block."""
    return (es2d.merges_with_norm() and _inference_only(gate.z, gate.weight, gate.bias)
            and gate.z.dtype == rows.dtype and gate.z.shape[-1] == rows.shape[2]
            and selective_scan_cuda.es2d_merge_norm_fits(rows.shape[2], rows.element_size()))


def _routes_norm_op(xs, delta, A, B, C, D, delta_bias, h, w, *, gate: es2d.NormGate) -> torch.Tensor:
    return torch.ops.fusion_edge.es2d_scan_routes_norm(xs, delta, A, B, C, D, delta_bias, h, w, gate.z, gate.weight,
                                                       gate.bias, float(gate.eps), bool(gate.cross))


def _es2d_op_applies(x: torch.Tensor, params: tuple) -> bool:
    """The conditions of the fused function's own kernel branch (scan not pinned elsewhere, N small)."""
    return (get_default_impl() in ("auto", "cuda") and params[3].shape[-1] <= selective_scan_cuda.MAX_STATES
            and use_ops(x, *params))


def selective_scan_dispatch(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """Implementation "cuda" of the selective scan: the custom op for inference, autograd otherwise."""
    if A.shape[-1] <= selective_scan_cuda.MAX_STATES and use_ops(u, delta, A, B, C, D, z, delta_bias):
        return torch.ops.fusion_edge.selective_scan(u, delta, A, B, C, D, z, delta_bias, bool(delta_softplus))
    return selective_scan_cuda.selective_scan_cuda(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias,
                                                   delta_softplus=delta_softplus)


def ldc_conv2d_dispatch(x, weight, base_mask, learnable_mask, theta):
    """The LDC kernel: the custom op for inference, the existing function otherwise."""
    if use_ops(x, weight, base_mask, learnable_mask, theta):
        return torch.ops.fusion_edge.ldc_conv2d(x, weight, base_mask, learnable_mask, theta)
    return selective_scan_cuda.ldc_conv2d_cuda(x, weight, base_mask, learnable_mask, theta)


def scan_available(u: torch.Tensor) -> bool:
    """``selective_scan_cuda.cuda_available`` in a form Dynamo can trace."""
    return u.is_cuda and u.dtype in selective_scan_cuda.SUPPORTED_DTYPES and _kernels_ready()


def install() -> bool:
    """Register the ops and route the CUDA dispatch through them; False (nothing changed) without custom ops."""
    if not register_ops():
        return False
    register_impl("cuda", selective_scan_dispatch, scan_available, selective_scan_cuda.cuda_unavailable_reason)
    es2d.register_fused(es2d_scan_dispatch)
    es2d.register_conv_routes(es2d_conv_routes_dispatch)
    ldc.register_cuda_ldc(ldc_conv2d_dispatch, auto=getattr(ldc, "_CUDA_LDC_AUTO", False))
    return True


@contextlib.contextmanager
def cpu_route() -> Iterator[None]:
    """Send CPU inference calls of ES2D and the scan through the ops too (their CPU kernels are the
    reference paths), so the model traces to the graph it has on a GPU: tests on machines without
    one check what torch.compile sees there. Not thread-safe; for tests and graph inspection.
    """
    global _route_cpu
    previous = _route_cpu
    _route_cpu = True
    es2d.es2d_scan_unfused = _es2d_cpu_router  # es2d_scan's path for non-CUDA inputs
    try:
        yield
    finally:
        _route_cpu = previous
        es2d.es2d_scan_unfused = _es2d_unfused


def _es2d_cpu_router(x, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds, *, impl=None, **kwargs):
    params = (x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds)
    if not kwargs and impl in (None, "auto", "cuda") and _es2d_op_applies(x, params):
        return _es2d_op(x, params)
    return _es2d_unfused(x, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds, impl=impl, **kwargs)


install()
