"""Our CUDA kernels behind the ops' dispatch: selective scan (impl "cuda"), fused ES2D, LDC.

Forward runs the kernels of ``fusion_edge.kernels`` on torch's current stream, reading the
tensors in place (zero copy). Backward of the scan runs our backward kernel (two launches);
where it cannot (more than 64 states, or ``BACKWARD_KERNEL`` off) it recomputes the forward
with the chunked op (the reference when the chunked op is absent) under autograd and
differentiates that. The fused ES2D op and the LDC kernel are inference paths: with
gradients required they hand over to the unfused, differentiable paths.

``register()`` installs all three; it imports no CuPy (that happens at the first CUDA call),
so ``import fusion_edge`` works where CuPy is absent.
"""

from __future__ import annotations

import functools

import torch

from fusion_edge.ops import es2d, ldc
from fusion_edge.ops.selective_scan import get_default_impl, register_impl
from fusion_edge.ops.selective_scan_ref import selective_scan_ref

SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
MAX_STATES = 64
# Backward on our kernel; False: recompute under autograd (benchmarks compare the two).
BACKWARD_KERNEL = True


@functools.cache
def kernels_available() -> bool:
    """True when CuPy, a GPU and NVRTC are present (checked once, on first use).

    False also when ``fusion_edge.kernels`` is not importable (a source tree used without
    installing the package, where kernels/ is not mapped into fusion_edge).
    """
    try:
        from fusion_edge import kernels
    except ImportError:
        return False
    return kernels.is_available()


def cuda_available(u: torch.Tensor) -> bool:
    return u.is_cuda and u.dtype in SUPPORTED_DTYPES and kernels_available()


def cuda_unavailable_reason(u: torch.Tensor) -> str:
    """Why ``cuda_available(u)`` is False, in words a user can act on."""
    if not u.is_cuda:
        return f"our CUDA kernels run on CUDA tensors, got a {u.device} tensor"
    if u.dtype not in SUPPORTED_DTYPES:
        return f"our CUDA kernels take float32, float16 or bfloat16, got {u.dtype}"
    from fusion_edge import kernels

    try:
        kernels.ensure_available()
    except kernels.KernelError as exc:
        return str(exc)
    return ""


def _backward_impl():
    try:
        from fusion_edge.ops.selective_scan_chunked import selective_scan_chunked
    except ImportError:
        return selective_scan_ref
    return selective_scan_chunked


@functools.cache
def _sm_count_of(index: int) -> int:
    return torch.cuda.get_device_properties(index).multi_processor_count


def _sm_count(device: torch.device) -> int:
    return _sm_count_of(device.index if device.index is not None else torch.cuda.current_device())


def _stream(t: torch.Tensor) -> int:
    return torch.cuda.current_stream(t.device).cuda_stream


def _kernel_inputs(u, delta, A, B, C, D, z, delta_bias) -> tuple:
    """The operands as both kernels take them: contiguous; delta and z in u's dtype; B and C in
    u's dtype when both already are, else float32; A, D and delta_bias float32."""
    u = u.contiguous()
    bc_dtype = u.dtype if B.dtype == u.dtype and C.dtype == u.dtype else torch.float32
    return (
        u,
        delta.to(u.dtype).contiguous(),
        A.float().contiguous(),
        B.to(bc_dtype).contiguous(),
        C.to(bc_dtype).contiguous(),
        None if D is None else D.float().contiguous(),
        None if z is None else z.to(u.dtype).contiguous(),
        None if delta_bias is None else delta_bias.float().contiguous(),
    )


def _scan_forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus: bool) -> torch.Tensor:
    from fusion_edge import kernels

    if A.shape[-1] > MAX_STATES:
        raise ValueError(f"the CUDA selective scan supports up to {MAX_STATES} states, got N={A.shape[-1]}")
    u, delta, A, B, C, D, z, delta_bias = _kernel_inputs(u, delta, A, B, C, D, z, delta_bias)
    out = torch.empty_like(u)
    batch, dim, length = u.shape
    need = kernels.selective_scan_workspace_bytes(batch, dim, length, A.shape[1], _sm_count(u.device))
    workspace = torch.empty(need, device=u.device, dtype=torch.uint8) if need else None
    with torch.cuda.device(u.device):
        kernels.launch_selective_scan(u, delta, A, B, C, D, z, delta_bias, out, delta_softplus=delta_softplus,
                                      workspace=workspace, stream=_stream(u))
    return out


class _SelectiveScanCuda(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias)
        ctx.delta_softplus = delta_softplus
        return _scan_forward(u, delta, A, B, C, D, z, delta_bias, delta_softplus)

    @staticmethod
    def backward(ctx, grad_out):
        saved = ctx.saved_tensors
        wanted = tuple(need and t is not None for t, need in zip(saved, ctx.needs_input_grad[:8]))
        if not any(wanted):
            return (None,) * 9
        if BACKWARD_KERNEL and saved[2].shape[-1] <= MAX_STATES:
            grads = _scan_backward(saved, wanted, ctx.delta_softplus, grad_out)
        else:
            grads = _backward_by_recompute(saved, wanted, ctx.delta_softplus, grad_out)
        return (*grads, None)


def _scan_backward(saved, wanted, delta_softplus: bool, grad_out: torch.Tensor) -> list[torch.Tensor | None]:
    """The gradients ``wanted`` (u, delta, A, B, C, D, z, delta_bias) on our backward kernel,
    float32 sums, each cast to its input's dtype."""
    from fusion_edge import kernels

    u, delta, A, B, C, D, z, bias = _kernel_inputs(*saved)
    dout = grad_out.to(u.dtype).contiguous()
    w_u, w_delta, w_A, w_B, w_C, w_D, w_z, w_bias = (need and t is not None for t, need in zip(saved, wanted))

    def f32(t: torch.Tensor, need: bool) -> torch.Tensor | None:
        return torch.empty(t.shape, device=u.device, dtype=torch.float32) if need else None

    grads = [
        torch.empty_like(u) if w_u else None,
        torch.empty_like(u) if w_delta else None,
        f32(A, w_A), f32(B, w_B), f32(C, w_C), f32(D, w_D),
        torch.empty_like(u) if w_z else None,
        f32(bias, w_bias),
    ]
    du, ddelta, dA, dB, dC, dD, dz, dbias = grads
    batch, dim, length = u.shape
    need = kernels.selective_scan_bwd_workspace_bytes(batch, dim, length, A.shape[1], _sm_count(u.device),
                                                      groups=B.shape[1])
    workspace = torch.empty(need, device=u.device, dtype=torch.uint8) if need else None
    with torch.cuda.device(u.device):
        kernels.launch_selective_scan_bwd(u, delta, A, B, C, D, z, bias, dout=dout, du=du, ddelta=ddelta, dA=dA,
                                          dB=dB, dC=dC, dD=dD, dz=dz, ddelta_bias=dbias,
                                          delta_softplus=delta_softplus, workspace=workspace, stream=_stream(u))
    return [None if g is None else g.to(t.dtype) for g, t in zip(grads, saved)]


def _backward_by_recompute(saved, wanted, delta_softplus: bool, grad_out: torch.Tensor) -> list[torch.Tensor | None]:
    """The gradients ``wanted`` by recomputing the forward in float32 (half-precision inputs too)
    with the chunked op under autograd, cast back to each input's dtype."""
    wanted = [need and t is not None for t, need in zip(saved, wanted)]
    with torch.enable_grad():
        leaves = [
            None if t is None else (t.detach().float().requires_grad_(True) if need else t.detach().float())
            for t, need in zip(saved, wanted)
        ]
        y = _backward_impl()(*leaves, delta_softplus=delta_softplus)
        targets = [t for t, need in zip(leaves, wanted) if need]
        grads = torch.autograd.grad(y, targets, grad_out.float(), allow_unused=True) if targets else ()
    grads = iter(grads)
    out = []
    for t, need in zip(saved, wanted):
        g = next(grads) if need else None
        out.append(None if g is None else g.to(t.dtype))
    return out


def selective_scan_cuda(
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
    """mamba_ssm's selective scan on our CUDA kernel (output in u's dtype), differentiable."""
    if not u.is_cuda:
        raise RuntimeError(f"the CUDA selective scan needs CUDA tensors, got u on {u.device}")
    if B.dim() == 3:
        B = B.unsqueeze(1)
    if C.dim() == 3:
        C = C.unsqueeze(1)
    return _SelectiveScanCuda.apply(u, delta, A, B, C, D, z, delta_bias, bool(delta_softplus))


def _inference_only(*tensors: torch.Tensor) -> bool:
    return not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))


def es2d_scan_fused(x, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds) -> torch.Tensor:
    """One pass over the map with no gather/scatter copies; falls back to the unfused path when
    gradients are needed, the kernels are absent, or the scan is pinned to another impl."""
    params = (x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds)
    if not _es2d_kernels_apply(x, A_logs, params):
        return es2d.es2d_scan_unfused(x, *params)
    return _launch_es2d(x, params[1:], x_proj_weight=x_proj_weight)


def es2d_scan_projected_fused(x, proj, dt_projs_weight, dt_projs_bias, A_logs, Ds, delta=None) -> torch.Tensor:
    """:func:`es2d_scan_fused` with the route projections given (B, 4, R+2N, L') float32, as from
    ``es2d.es2d_project``: the op's projection kernel is skipped. ``delta`` (B, 4, D, L') float32, as
    from ``es2d.es2d_delta``: the scan reads it instead of forming it from the dt rows."""
    params = (dt_projs_weight, dt_projs_bias, A_logs, Ds)
    if not _es2d_kernels_apply(x, A_logs, (proj, *params)):
        return es2d.es2d_scan_projected_unfused(x, proj, *params, delta=delta)
    return _launch_es2d(x, params, proj=proj, delta=delta)  # the launcher checks proj's and delta's shapes


def _scan_route_rows(xs, delta, A, Bs, Cs, Ds, delta_bias) -> torch.Tensor:
    """The plain scan (softplus) of gathered routes xs and their deltas (B, 4, D, L') as (B, 4D, L') rows."""
    b, routes, d, length = xs.shape
    return _scan_forward(xs.reshape(b, routes * d, length), delta.reshape(b, routes * d, length), A, Bs, Cs, Ds,
                         None, delta_bias, True)


def es2d_scan_routes_cuda(xs, delta, A, Bs, Cs, Ds, delta_bias, h: int, w: int) -> torch.Tensor:
    """``es2d.scan_routes_merged`` on our kernels: the plain scan of the route rows (its planner's core),
    then one tiled launch that writes them into a channels-last (B, D, h, w) map in xs's dtype."""
    from fusion_edge import kernels

    b, _, d, _ = xs.shape
    ys = _scan_route_rows(xs, delta, A, Bs, Cs, Ds, delta_bias)
    out = torch.empty((b, h, w, d), device=xs.device, dtype=ys.dtype)
    with torch.cuda.device(xs.device):
        kernels.launch_es2d_merge(ys, out, h=h, w=w, channels_last=True, stream=_stream(xs))
    return out.permute(0, 3, 1, 2)


def es2d_scan_routes_norm_cuda(xs, delta, A, Bs, Cs, Ds, delta_bias, h: int, w: int, z: torch.Tensor,
                               norm_weight: torch.Tensor, norm_bias: torch.Tensor, eps: float,
                               cross: bool) -> torch.Tensor:
    """``es2d.norm_gate(es2d.scan_routes_merged(...), ...)`` on our kernels: the plain scan of the route rows,
    then one launch that merges them, applies the SS2D layer's LayerNorm and multiplies by its gate, so the
    merged map is never stored. z (B, h, w, D) is read in place (e.g. the second half of the in_proj output).
    Returns (B, h, w, D) in xs's dtype."""
    from fusion_edge import kernels

    b, _, d, _ = xs.shape
    ys = _scan_route_rows(xs, delta, A, Bs, Cs, Ds, delta_bias)
    z = _pixel_rows_or_dense(z.to(ys.dtype))
    out = torch.empty((b, h, w, d), device=xs.device, dtype=ys.dtype)
    with torch.cuda.device(xs.device):
        kernels.launch_es2d_merge_norm(ys, _pixel_array(z), norm_weight.to(ys.dtype).contiguous(),
                                       norm_bias.to(ys.dtype).contiguous(), out, h=h, w=w, eps=eps, cross=cross,
                                       stream=_stream(xs))
    return out


def es2d_merge_norm_fits(channels: int, itemsize: int) -> bool:
    """Whether the merge-norm kernel takes a layer of this width (its channels of one position fit a block)."""
    from fusion_edge.kernels import launch_params

    return launch_params.es2d_merge_norm_positions(channels, itemsize) > 0


def es2d_gather_cuda(x: torch.Tensor) -> torch.Tensor:
    """``es2d.es2d_gather`` as one tiled launch (reading a channels-last map as its buffer): (B, 4, D, L')."""
    from fusion_edge import kernels

    b, d, h, w = x.shape
    channels_last = is_channels_last(x)
    out = torch.empty((b, es2d.ROUTES * d, es2d.route_length(h, w)), device=x.device, dtype=x.dtype)
    with torch.cuda.device(x.device):
        kernels.launch_es2d_split(x.permute(0, 2, 3, 1) if channels_last else x.contiguous(), out,
                                  channels_last=channels_last, stream=_stream(x))
    return out.view(b, es2d.ROUTES, d, -1)


def es2d_conv_gather_cuda(a: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                          a2: torch.Tensor | None = None) -> torch.Tensor:
    """``es2d.es2d_gather(es2d.conv_map(a, weight, bias, a2))`` as one tiled launch that never stores the map:
    a (and a2) (B, h, w, D) BHWC inputs whose channels are contiguous (e.g. a half of a linear layer's
    output, read in place); weight (D, 1, 3, 3) and bias (D) are taken in a's dtype. Returns (B, 4, D, L')."""
    from fusion_edge import kernels

    b, h, w, d = a.shape
    a = _pixel_rows_or_dense(a)
    a2 = None if a2 is None else _pixel_rows_or_dense(a2.to(a.dtype))
    weight, bias = weight.to(a.dtype).contiguous(), bias.to(a.dtype).contiguous()
    out = torch.empty((b, es2d.ROUTES * d, es2d.route_length(h, w)), device=a.device, dtype=a.dtype)
    with torch.cuda.device(a.device):
        kernels.launch_es2d_conv_split(_pixel_array(a), weight, bias, out,
                                       a2=None if a2 is None else _pixel_array(a2), stream=_stream(a))
    return out.view(b, es2d.ROUTES, d, -1)


def _pixel_rows_or_dense(a: torch.Tensor) -> torch.Tensor:
    """a (B, h, w, D) itself when each pixel's D channels are one run at a fixed pixel stride (dense, or a
    leading slice of a wider buffer's channels, as a half of a linear layer's output), else a dense copy."""
    b, h, w, d = a.shape
    pitch = _pixel_pitch(a)
    wanted = (h * w * pitch, w * pitch, pitch, 1)
    if pitch >= d and all(n == 1 or st == want for n, st, want in zip(a.shape, a.stride(), wanted)):
        return a
    return a.contiguous()


def _pixel_array(a: torch.Tensor):
    """The (B, h, w, P) rows of pixel stride P that a (from :func:`_pixel_rows_or_dense`) is the first D
    channels of, for the launcher (which reads only those)."""
    from fusion_edge import kernels

    b, h, w, _ = a.shape
    return kernels.DeviceArray(a.data_ptr(), (b, h, w, _pixel_pitch(a)), str(a.dtype).replace("torch.", ""),
                               a.device.index)


def _pixel_pitch(a: torch.Tensor) -> int:
    """Elements from one pixel of a (B, h, w, D) tensor to the next (its innermost pixel axis longer than 1)."""
    b, h, w, d = a.shape
    if w > 1:
        return a.stride(2)
    if h > 1:
        return a.stride(1)
    return a.stride(0) if b > 1 else d


def _es2d_kernels_apply(x, A_logs, params) -> bool:
    """Our kernels serve this call: inference, a supported dtype and state count, kernels present."""
    return (
        get_default_impl() in ("auto", "cuda")
        and x.dtype in SUPPORTED_DTYPES
        and A_logs.shape[-1] <= MAX_STATES
        and _inference_only(x, *params)
        and kernels_available()
    )


def _launch_es2d(x, params, x_proj_weight=None, proj=None, delta=None) -> torch.Tensor:
    from fusion_edge import kernels

    b, d, h, w = x.shape
    # a channels-last map (as the depthwise conv before the scan writes it) is read as its (b, h, w, d)
    # buffer and gets a channels-last output; anything else is read as channel planes
    channels_last = is_channels_last(x)
    x = x.permute(0, 2, 3, 1) if channels_last else x.contiguous()
    dtw, dtb, al, ds = (t.detach().float().contiguous() for t in params)
    if x_proj_weight is not None:
        x_proj_weight = x_proj_weight.detach().float().contiguous()
    if proj is not None:
        proj = proj.detach().float().contiguous()
    if delta is not None:
        delta = delta.detach().float().contiguous()
    out = torch.empty(x.shape, device=x.device, dtype=torch.float32)
    need = kernels.es2d_workspace_bytes(b, d, h, w, dtw.shape[2], al.shape[1], sm_count=_sm_count(x.device))
    workspace = torch.empty(need, device=x.device, dtype=torch.uint8)
    with torch.cuda.device(x.device):
        kernels.launch_es2d_scan(x, x_proj_weight, dtw, dtb, al, ds, out, workspace=workspace, proj=proj,
                                 delta=delta, channels_last=channels_last, stream=_stream(x))
    return out.permute(0, 3, 1, 2) if channels_last else out


def is_channels_last(x: torch.Tensor) -> bool:
    """A (B, C, H, W) map stored channels-last, and not also plainly contiguous (a 1x1 map, or C == 1)."""
    return (x.dim() == 4 and not x.is_contiguous()
            and x.is_contiguous(memory_format=torch.channels_last))


def ldc_conv2d_cuda(x, weight, base_mask, learnable_mask, theta) -> torch.Tensor:
    """The LDC kernel (transform applied inside the convolution); reference path when unavailable."""
    if not (x.dtype in SUPPORTED_DTYPES and kernels_available()):
        return ldc.ldc_conv2d_ref(x, weight, base_mask, learnable_mask, theta)
    from fusion_edge import kernels

    x = x.contiguous()
    w, m, lm, th = (t.detach().float().contiguous() for t in (weight, base_mask, learnable_mask, theta))
    out = torch.empty((x.shape[0], w.shape[0], x.shape[2], x.shape[3]), device=x.device, dtype=x.dtype)
    with torch.cuda.device(x.device):
        kernels.launch_ldc_conv2d(x, w, m, lm, th.reshape(1), out, stream=_stream(x))
    return out


def register() -> None:
    """Install the kernels in the ops' dispatch (lazily: nothing is imported until a CUDA call)."""
    try:
        register_impl("cuda", selective_scan_cuda, cuda_available, cuda_unavailable_reason)
    except TypeError:  # a dispatch without reasons
        register_impl("cuda", selective_scan_cuda, cuda_available)
    es2d.register_fused(es2d_scan_fused)
    ldc.register_cuda_ldc(ldc_conv2d_cuda)
