"""ES2D: EfficientVMamba's skip-sampled four-route selective scan over a feature map.

The map is split into its four stride-2 sub-grids (routes); routes 0 and 2 are read
row-major, routes 1 and 3 column-major, each is scanned as one sequence with its own
projections, and every route writes back to its own pixels. Odd sizes are zero-padded
at the bottom/right and the padded positions take part in the scan (as the reference).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F

from fusion_edge.ops.fusable import depthwise_conv2d
from fusion_edge.ops.selective_scan import selective_scan

ROUTES = 4


def es2d_gather(x: torch.Tensor, pad_always: bool = False) -> torch.Tensor:
    """(B, D, h, w) -> (B, 4, D, L') route sequences; pads odd sizes with zeros first.

    ``pad_always`` pads by amounts computed from the shape instead of branching on it, so a
    graph traced at one size stays right at every size (dynamic ONNX export).
    """
    b, d, h, w = x.shape
    if pad_always or h % 2 or w % 2:
        x = F.pad(x, (0, w % 2, 0, h % 2))
    h2, w2 = (h + h % 2) // 2, (w + w % 2) // 2
    grid = x.reshape(b, d, h2, 2, w2, 2)
    ee = grid[:, :, :, 0, :, 0]
    oe = grid[:, :, :, 1, :, 0].transpose(2, 3)
    eo = grid[:, :, :, 0, :, 1]
    oo = grid[:, :, :, 1, :, 1].transpose(2, 3)
    return torch.stack([r.reshape(b, d, h2 * w2) for r in (ee, oe, eo, oo)], dim=1)


def route_length(h: int, w: int) -> int:
    """L': positions of each route of an h x w map (odd sizes padded to even)."""
    return ((h + 1) // 2) * ((w + 1) // 2)


def es2d_scatter(ys: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`es2d_gather`: (B, 4, D, L') -> (B, D, h, w), cropping the padding."""
    b, _, d, _ = ys.shape
    h2, w2 = (h + h % 2) // 2, (w + w % 2) // 2
    ee = ys[:, 0].reshape(b, d, h2, w2)
    oe = ys[:, 1].reshape(b, d, w2, h2).transpose(2, 3)
    eo = ys[:, 2].reshape(b, d, h2, w2)
    oo = ys[:, 3].reshape(b, d, w2, h2).transpose(2, 3)
    even_rows = torch.stack([ee, eo], dim=-1)  # (b, d, h2, w2, col parity)
    odd_rows = torch.stack([oe, oo], dim=-1)
    full = torch.stack([even_rows, odd_rows], dim=3).reshape(b, d, 2 * h2, 2 * w2)
    return full[:, :, :h, :w]


MODES = ("auto", "kernel", "library")  # where the fused op's projections and deltas come from
PROJECTIONS = DELTAS = MODES
_projection = "auto"
_delta = "auto"


def _checked(mode: str, what: str) -> str:
    if mode not in MODES:
        raise ValueError(f"{what} must be one of {MODES}, got {mode!r}")
    return mode


def set_projection(mode: str) -> None:
    """How the fused ES2D op gets its route projections on a GPU (see :func:`projects_with_library`)."""
    global _projection
    _projection = _checked(mode, "projection")


def get_projection() -> str:
    return _projection


# Channels from which a compiled model takes the route projections from a library GEMM. H100, fp16,
# 512x640, compiled (benchmarks/results/compile_variants_h100.md): the paper preset (192-1536 channels)
# went from 8.83 to 8.27 ms with the GEMM; edge (32-256) from 1.73 to 1.84 ms, its products too small to
# pay for the gather copy, the GEMM launch and the float32 cast that replace one projection kernel.
GEMM_MIN_CHANNELS = 192


def projects_with_library(x: torch.Tensor) -> bool:
    """Whether the fused op takes its projections from :func:`es2d_project` (``"library"``) instead of
    its own projection kernel (``"kernel"``). ``"auto"``: the library form while torch.compile traces a
    layer of at least GEMM_MIN_CHANNELS channels, where the route gather fuses into the kernel producing
    x and the product runs on tensor cores; the projection kernel otherwise."""
    if _projection == "auto":
        return x.shape[1] >= GEMM_MIN_CHANNELS and torch.compiler.is_compiling()
    return _projection == "library"


# Work (dt rank x channels x route length, per image) from which a library-projected layer also takes
# delta from a library product. The scan's own delta costs R loads and multiply-adds a channel and step;
# the product costs a launch (some 4 us) and a write and read of (B, 4, D, L') float32. Per layer on the
# H100, fp16, 512x640 (benchmarks/results/es2d_delta_h100.md): every paper layer (R*D*L' = 5.9e6) is
# 15-50% faster with the product, every edge layer (at most 1.6e5) the same or up to 25% slower.
DELTA_MIN_WORK = 1_000_000


def set_delta(mode: str) -> None:
    """Where the fused op's scan gets delta when its projections come from a library GEMM: formed in
    the scan from the dt rows (``"kernel"``), from :func:`es2d_delta` (``"library"``), or the latter
    for layers of DELTA_MIN_WORK and up (``"auto"``; see :func:`deltas_with_library`)."""
    global _delta
    _delta = _checked(mode, "delta")


def get_delta() -> str:
    return _delta


def deltas_with_library(x: torch.Tensor, dt_rank: int) -> bool:
    """Whether a library-projected layer over the map x (B, D, h, w) with this dt rank also takes delta
    from :func:`es2d_delta` (see :func:`set_delta`): ``"auto"``, where dt_rank * D * L' reaches
    DELTA_MIN_WORK, the work the scan would spend forming delta itself."""
    if _delta == "auto":
        return dt_rank * x.shape[1] * route_length(*x.shape[2:]) >= DELTA_MIN_WORK
    return _delta == "library"


SCAN_FORMS = ("auto", "fused", "routes")  # what scans a compiled layer's routes (see scans_routes)
_scan_form = "auto"


def set_scan_form(mode: str) -> None:
    """What scans the routes of a layer on a GPU: the fused op reading the map (``"fused"``), the plain
    scan on gathered routes (``"routes"``, :func:`es2d_scan_routes`), or a choice per layer (``"auto"``)."""
    global _scan_form
    if mode not in SCAN_FORMS:
        raise ValueError(f"scan form must be one of {SCAN_FORMS}, got {mode!r}")
    _scan_form = mode


def get_scan_form() -> str:
    return _scan_form


# Where a compiled float16 layer scans gathered routes (es2d_scan_routes) instead of the fused op: a layer of
# at least GEMM_MIN_CHANNELS channels (one that takes its projections from float16 products anyway) and
# ROUTES_MIN_WORK row-steps (B x 4 x D x L', scanned rows times their length). One compiled layer (SiLU,
# ES2D, LayerNorm) each way on the H200, 512x640 (benchmarks/results/es2d_forms_h200.md): paper layers of
# stages 1-3 1.11-1.54x faster on the routes, stage 4 a tie (the plain scan outruns the fused op's, and the
# route-major rows are what the projection GEMM reads anyway); the whole paper model 6.48 -> 5.37 ms. Edge's
# stages 1-2 at batch 2 are 1.06-1.18x faster too, but they project in float32 on the fused op; on float16
# products the edge model's output moved by up to 3.8e-2 instead of 2.4e-2 from the float32 eager model for
# no measurable gain (1.50 -> 1.48 ms, within the run-to-run spread), so they stay fused. Narrower or
# shorter layers are up to 20% slower on the routes (a scan of a few hundred rows leaves the GPU idle).
ROUTES_MIN_WORK = 400_000


def scans_routes(x: torch.Tensor, compiling: bool | None = None) -> bool:
    """Whether the layer over the map x (B, D, h, w) takes :func:`es2d_scan_routes` instead of the fused op.
    ``"auto"``: a float16 map of at least GEMM_MIN_CHANNELS channels and ROUTES_MIN_WORK row-steps while
    torch.compile traces the layer (``compiling``: whether it does, when not asked of torch)."""
    return scans_routes_of(tuple(x.shape), x.dtype, compiling)


def scans_routes_of(shape: tuple[int, ...], dtype: torch.dtype, compiling: bool | None = None) -> bool:
    """:func:`scans_routes` for a map of this (B, D, h, w) shape and dtype (one not computed yet)."""
    if _scan_form == "auto":
        if compiling is None:
            compiling = torch.compiler.is_compiling()
        work = shape[0] * ROUTES * shape[1] * route_length(*shape[2:])
        return (compiling and dtype == torch.float16 and shape[1] >= GEMM_MIN_CHANNELS
                and work >= ROUTES_MIN_WORK)
    return _scan_form == "routes"


# On by default: the compiled paper model at 512x640 runs 0.2 ms faster (H200) with the conv gathered on the way
# than with the compiler's conv kernel and the split (benchmarks/results/conv_gather_h200.md).
_conv_gather = True


def set_conv_gather(enabled: bool) -> None:
    """Whether a layer on the routes form gathers its routes straight from its input through
    ``fusion_edge::es2d_conv_gather`` (the map SiLU(conv) computed on the way, never stored; default) or from the map
    the depthwise conv wrote (the compiler's conv kernel, then ``fusion_edge::es2d_gather``)."""
    global _conv_gather
    _conv_gather = bool(enabled)


def gathers_through_conv() -> bool:
    return _conv_gather


_merge_norm = True


def set_merge_norm(enabled: bool) -> None:
    """Whether a layer on the routes form merges its scanned rows with its LayerNorm and gate applied on the
    way (``fusion_edge::es2d_scan_routes_norm``: the merged map never stored; default), or writes the merged
    map for the compiler's LayerNorm and gate kernel to read (``fusion_edge::es2d_scan_routes``)."""
    global _merge_norm
    _merge_norm = bool(enabled)


def merges_with_norm() -> bool:
    return _merge_norm


class NormGate(NamedTuple):
    """What follows the scan in an SS2D layer: ``LayerNorm(y)(shape, weight, bias, eps) * gate``, the gate SiLU(z),
    or for the CMFM (``cross``) g1 + g2 with g1 = SiLU(z), g2 = SiLU(g1). z: (B, h, w, D), BHWC. ``shape`` is the
    LayerNorm's (D,) as plain ints, so that a traced graph's LayerNorm has a fixed shape."""

    shape: tuple[int, ...]
    weight: torch.Tensor
    bias: torch.Tensor
    eps: float
    z: torch.Tensor
    cross: bool = False


def norm_gate(y: torch.Tensor, gate: NormGate) -> torch.Tensor:
    """The reference of what follows the scan: y (B, D, h, w), any layout -> (B, h, w, D) in z's dtype
    (the LayerNorm in y's dtype cast to z's, as the model's out_norm module computes it)."""
    normed = F.layer_norm(y.permute(0, 2, 3, 1).to(gate.z.dtype), gate.shape, gate.weight, gate.bias, gate.eps)
    g1 = F.silu(gate.z)
    return normed * g1 + normed * F.silu(g1) if gate.cross else normed * g1


def _product_dtype(x: torch.Tensor) -> torch.dtype:
    """The route products' dtype: float16 for float16 maps (tensor cores, float32 accumulation; the products
    rounded to float16 move B, C and delta by ~1e-3), float32 otherwise (bfloat16 products would keep 8
    mantissa bits)."""
    return torch.float16 if x.dtype == torch.float16 else torch.float32


def es2d_project(x: torch.Tensor, x_proj_weight: torch.Tensor) -> torch.Tensor:
    """Route projections (B, 4, R+2N, L') float32 of the map x (B, D, h, w): one batched matrix product
    over the routes gathered in :func:`_product_dtype` (:func:`_route_projections`)."""
    return _route_projections(es2d_gather(x.to(_product_dtype(x))), x_proj_weight).float()


def _route_projections(xs: torch.Tensor, x_proj_weight: torch.Tensor) -> torch.Tensor:
    """Projections (B, 4, R+2N, L') of gathered routes xs (B, 4, D, L'): one batched product in xs's dtype."""
    return torch.matmul(x_proj_weight.to(xs.dtype), xs)


def es2d_delta(proj: torch.Tensor, dt_projs_weight: torch.Tensor) -> torch.Tensor:
    """Route deltas before bias and softplus, (B, 4, D, L') in proj's dtype (float32 from :func:`es2d_project`,
    float16 in :func:`es2d_scan_routes`) = dt_projs_weight[k] @ proj[b, k, :R]: the dt rows' low-rank product
    as one batched matrix product, for the scan to read instead of forming it itself (R multiply-adds and
    loads a step, which slowed the paper preset's scans by a third; a GEMM writes it for a few microseconds
    a layer)."""
    rank = dt_projs_weight.shape[-1]
    return torch.matmul(dt_projs_weight.to(proj.dtype), proj[:, :, :rank])


def es2d_scan_unfused(
    x: torch.Tensor,
    x_proj_weight: torch.Tensor,
    dt_projs_weight: torch.Tensor,
    dt_projs_bias: torch.Tensor,
    A_logs: torch.Tensor,
    Ds: torch.Tensor,
    *,
    impl: str | None = None,
    scan: Callable[..., torch.Tensor] | None = None,
    pad_always: bool = False,
) -> torch.Tensor:
    """Gather the routes, project, scan, scatter back: (B, D, h, w) -> (B, D, h, w), fp32.

    ``scan`` replaces the dispatched selective scan (export passes the chunked one with its
    chunk length); ``pad_always`` is passed on to :func:`es2d_gather`.
    """
    h, w = x.shape[2:]
    if scan is None:
        scan = functools.partial(selective_scan, impl=impl)
    xs = es2d_gather(x.float(), pad_always=pad_always)
    proj = torch.einsum("bkdl,kcd->bkcl", xs, x_proj_weight.float())
    return _scan_routes(xs, proj, dt_projs_weight, dt_projs_bias, A_logs, Ds, (h, w), _planes_merge(scan))


def es2d_scan_projected_unfused(
    x: torch.Tensor,
    proj: torch.Tensor,
    dt_projs_weight: torch.Tensor,
    dt_projs_bias: torch.Tensor,
    A_logs: torch.Tensor,
    Ds: torch.Tensor,
    *,
    delta: torch.Tensor | None = None,
    impl: str | None = None,
    scan: Callable[..., torch.Tensor] | None = None,
) -> torch.Tensor:
    """:func:`es2d_scan_unfused` with the route projections given (B, 4, R+2N, L'), as from :func:`es2d_project`,
    and optionally their deltas (B, 4, D, L'), as from :func:`es2d_delta`."""
    _check_projections(x, proj, dt_projs_weight, A_logs, delta)
    if scan is None:
        scan = functools.partial(selective_scan, impl=impl)
    xs = es2d_gather(x.float())
    return _scan_routes(xs, proj.float(), dt_projs_weight, dt_projs_bias, A_logs, Ds, x.shape[2:],
                        _planes_merge(scan), delta=None if delta is None else delta.float())


def _planes_merge(scan: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """:func:`scan_routes_merged` on ``scan``, leaving the map in the scatter's own (planes) layout."""
    return functools.partial(scan_routes_merged, scan=scan, channels_last=False)


def es2d_scan_routes(
    x: torch.Tensor,
    x_proj_weight: torch.Tensor,
    dt_projs_weight: torch.Tensor,
    dt_projs_bias: torch.Tensor,
    A_logs: torch.Tensor,
    Ds: torch.Tensor,
    *,
    gather: Callable[[torch.Tensor], torch.Tensor] = es2d_gather,
    scan_merge: Callable[..., torch.Tensor] | None = None,
) -> torch.Tensor:
    """The ES2D core as routes gathered by ``gather``, two library products, and ``scan_merge`` (default
    :func:`scan_routes_merged`): the plain selective scan of the route rows, merged back into the map.
    Returns (B, D, h, w) channels-last in the products' dtype (float16 for float16 maps, see
    :func:`_product_dtype`).

    The form a compiled model takes where the plain scan on route-major rows outruns the fused op,
    which reads and writes the map itself (see :func:`scans_routes`); there the gather and the merge are
    tiled transposes of ours (``fusion_edge::es2d_gather``, ``fusion_edge::es2d_scan_routes``), and the
    deltas come from a product in the scan's dtype."""
    xs = gather(x.to(_product_dtype(x)))
    return es2d_scan_gathered(xs, x.shape[2:], x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds,
                              scan_merge=scan_merge)


def es2d_scan_gathered(
    xs: torch.Tensor,
    size: tuple[int, int],
    x_proj_weight: torch.Tensor,
    dt_projs_weight: torch.Tensor,
    dt_projs_bias: torch.Tensor,
    A_logs: torch.Tensor,
    Ds: torch.Tensor,
    *,
    scan_merge: Callable[..., torch.Tensor] | None = None,
) -> torch.Tensor:
    """:func:`es2d_scan_routes` from the routes already gathered, xs (B, 4, D, L') of an h x w map (``size``):
    the projections and deltas as products in xs's dtype, then ``scan_merge``."""
    proj = _route_projections(xs, x_proj_weight)
    merge = scan_routes_merged if scan_merge is None else scan_merge
    return _scan_routes(xs, proj, dt_projs_weight, dt_projs_bias, A_logs, Ds, tuple(size), merge,
                        delta=es2d_delta(proj, dt_projs_weight))


def scan_routes_merged(xs: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, Bs: torch.Tensor, Cs: torch.Tensor,
                       Ds: torch.Tensor, delta_bias: torch.Tensor, h: int, w: int, *,
                       scan: Callable[..., torch.Tensor] = selective_scan, channels_last: bool = True) -> torch.Tensor:
    """Steps 5-6 on gathered routes: xs and delta (B, 4, D, L') scanned as (B, 4D, L') rows with
    softplus, then scattered into a (B, D, h, w) map in the scan's output dtype, stored channels-last
    unless told not to (``fusion_edge::es2d_scan_routes`` does both on the GPU, the scatter as one tiled
    kernel)."""
    b, _, d, length = xs.shape
    ys = scan(xs.reshape(b, ROUTES * d, length), delta.reshape(b, ROUTES * d, length), A, Bs, Cs, D=Ds,
              delta_bias=delta_bias, delta_softplus=True)
    y = es2d_scatter(ys.reshape(b, ROUTES, d, length), h, w)
    return y.contiguous(memory_format=torch.channels_last) if channels_last else y


def check_routes(xs: torch.Tensor, h: int, w: int) -> None:
    """ValueError unless xs is (B, 4, D, L') with L' the route length of an h x w map."""
    if xs.dim() != 4 or xs.shape[1] != ROUTES or route_length(h, w) != xs.shape[3]:
        raise ValueError(f"es2d_scan_routes: xs must be (B, 4, D, L') with L' = {route_length(h, w)} for an "
                         f"{h}x{w} map, got shape {tuple(xs.shape)}")


def check_map(x: torch.Tensor, op: str) -> None:
    """ValueError unless x is a (B, D, h, w) map."""
    if x.dim() != 4:
        raise ValueError(f"{op}: x must be (B, D, h, w), got shape {tuple(x.shape)}")


def _check_projections(x: torch.Tensor, proj: torch.Tensor, dt_projs_weight: torch.Tensor,
                       A_logs: torch.Tensor, delta: torch.Tensor | None = None) -> None:
    if x.dim() != 4:
        raise ValueError(f"x must be (B, D, h, w), got shape {tuple(x.shape)}")
    b, _, h, w = x.shape
    rows = dt_projs_weight.shape[-1] + 2 * A_logs.shape[-1]
    want = (b, ROUTES, rows, route_length(h, w))
    if tuple(proj.shape) != want:
        raise ValueError(f"proj must be (B, 4, R+2N, L') = {want} for x of shape {tuple(x.shape)}, "
                         f"got {tuple(proj.shape)}")
    want = (b, ROUTES, x.shape[1], want[3])
    if delta is not None and tuple(delta.shape) != want:
        raise ValueError(f"delta must be (B, 4, D, L') = {want} for x of shape {tuple(x.shape)}, "
                         f"got {tuple(delta.shape)}")


def _scan_routes(xs, proj, dt_projs_weight, dt_projs_bias, A_logs, Ds, size, merge, delta=None) -> torch.Tensor:
    """Steps 3-6 on gathered routes xs (B, 4, D, L') and their projections (and deltas, if given, else formed
    in float32): ``merge`` (:func:`scan_routes_merged`'s signature) scans them and scatters them to ``size``."""
    dt_rank, d_state = dt_projs_weight.shape[2], A_logs.shape[1]
    dts, Bs, Cs = torch.split(proj, [dt_rank, d_state, d_state], dim=2)
    if delta is None:
        delta = torch.einsum("bkrl,kdr->bkdl", dts, dt_projs_weight.float())
    return merge(xs, delta, -torch.exp(A_logs.float()), Bs.contiguous(), Cs.contiguous(), Ds.float(),
                 dt_projs_bias.reshape(-1).float(), *size)


_FUSED = None


def register_fused(fn) -> None:
    """Install a fused implementation (one launch, no gather/scatter copies) used on CUDA inputs."""
    global _FUSED
    _FUSED = fn


def es2d_scan(
    x: torch.Tensor,
    x_proj_weight: torch.Tensor,
    dt_projs_weight: torch.Tensor,
    dt_projs_bias: torch.Tensor,
    A_logs: torch.Tensor,
    Ds: torch.Tensor,
    *,
    impl: str | None = None,
) -> torch.Tensor:
    """The ES2D core of MODEL.md section 3.2 (steps 1-6, before ``out_norm``); returns (B, D, h, w) fp32,
    stored channels-last when x is and the fused op serves the call (it keeps its map's layout)."""
    if _FUSED is not None and x.is_cuda and impl in (None, "auto", "cuda"):
        return _FUSED(x, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds)
    return es2d_scan_unfused(x, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds, impl=impl)


def conv_silu_map(a: torch.Tensor, conv_weight: torch.Tensor, conv_bias: torch.Tensor | None) -> torch.Tensor:
    """SiLU(depthwise conv) of a BHWC input (B, h, w, D), e.g. a half of an in_proj output, as the map the
    scan reads: a (B, D, h, w) view of a dense channels-last buffer, so neither the conv nor the LayerNorm
    after the scan (the scan keeps the layout) has to transpose."""
    return F.silu(depthwise_conv2d(a.permute(0, 3, 1, 2), conv_weight, conv_bias, channels_last=True))


def conv_map(a: torch.Tensor, conv_weight: torch.Tensor, conv_bias: torch.Tensor | None,
             a2: torch.Tensor | None = None) -> torch.Tensor:
    """The map an SS2D layer scans: :func:`conv_silu_map` of a; with a2 (the CMFM's second modality, same
    conv) the hybrid c1 * c2 + c1 + c2 of the two."""
    c1 = conv_silu_map(a, conv_weight, conv_bias)
    if a2 is None:
        return c1
    c2 = conv_silu_map(a2, conv_weight, conv_bias)
    return c1 * c2 + c1 + c2


_CONV_ROUTES = None


def register_conv_routes(fn) -> None:
    """Install the GPU path of :func:`es2d_conv_scan`: ``fn(a, conv_weight, conv_bias, a2, params, gate)`` returns
    the scanned map (gate None) or :func:`norm_gate` of it, or None where it does not serve the call."""
    global _CONV_ROUTES
    _CONV_ROUTES = fn


def es2d_conv_scan(
    a: torch.Tensor,
    conv_weight: torch.Tensor,
    conv_bias: torch.Tensor | None,
    x_proj_weight: torch.Tensor,
    dt_projs_weight: torch.Tensor,
    dt_projs_bias: torch.Tensor,
    A_logs: torch.Tensor,
    Ds: torch.Tensor,
    *,
    a2: torch.Tensor | None = None,
    scan: Callable[..., torch.Tensor] | None = None,
    gate: NormGate | None = None,
) -> torch.Tensor:
    """:func:`es2d_scan` of :func:`conv_map` (a BHWC input, or two for the CMFM): the SS2D layer from its
    in_proj output to the scanned (B, D, h, w) map, or with ``gate`` to :func:`norm_gate` of it, (B, h, w, D).
    On the routes form the gather reads the input itself (``fusion_edge::es2d_conv_gather``, see
    :func:`set_conv_gather`), so the map is never stored, and the LayerNorm and gate are applied in the merge
    (see :func:`set_merge_norm`). ``scan`` replaces :func:`es2d_scan` on the map, and the routes form with it
    (export's portable core)."""
    params = (x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds)
    if scan is None and _CONV_ROUTES is not None:
        y = _CONV_ROUTES(a, conv_weight, conv_bias, a2, params, gate)
        if y is not None:
            return y
    y = (es2d_scan if scan is None else scan)(conv_map(a, conv_weight, conv_bias, a2), *params)
    return y if gate is None else norm_gate(y, gate)
