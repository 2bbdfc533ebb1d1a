"""Our CUDA kernels against float64 truths, on fresh random inputs (run on a machine with a GPU).

Outputs are poisoned with NaN before each launch, so a position the kernel forgets to
write fails. Error measure: max |out - truth| / max |truth|. Bounds: 1e-5 for float32
inputs, 5e-3 for float16/bfloat16 inputs (the truth is computed from the same rounded
inputs, so the bound covers the kernel's arithmetic and the rounding of its output).
"""

from __future__ import annotations

import importlib
import zlib

import pytest
import torch
import torch.nn.functional as F

from fusion_edge.ops.es2d import ROUTES, es2d_gather, es2d_scan_unfused, es2d_scatter
from fusion_edge.ops.ldc import ldc_conv2d, ldc_effective_weight
from fusion_edge.ops.selective_scan_ref import selective_scan_ref

pytestmark = pytest.mark.gpu

TOL = {torch.float32: 1e-5, torch.float16: 5e-3, torch.bfloat16: 5e-3}


@pytest.fixture(scope="module")
def kernels():
    from fusion_edge import kernels as k

    k.ensure_available()
    return k


def seed(*key) -> int:
    return zlib.crc32(repr(key).encode())


def rel_err(out: torch.Tensor, truth: torch.Tensor) -> float:
    out, truth = out.double(), truth.double()
    assert not torch.isnan(out).any(), "NaN in the output (a position was not written?)"
    return ((out - truth).abs().max() / truth.abs().max().clamp_min(1e-30)).item()


def scan_inputs(batch, dim, length, n, groups, dtype, bc_dtype, softplus, gen):
    dev = "cuda"

    def rnd(*shape, scale=1.0, dt=torch.float32):
        return (torch.randn(*shape, generator=gen, device=dev) * scale).to(dt)

    u = rnd(batch, dim, length, dt=dtype)
    if softplus:
        delta = rnd(batch, dim, length, scale=0.7, dt=dtype)
    else:  # already a step size: positive
        delta = (torch.rand(batch, dim, length, generator=gen, device=dev) * 0.4 + 0.01).to(dtype)
    A = -torch.exp(rnd(dim, n, scale=0.5))
    B = rnd(batch, groups, n, length, dt=bc_dtype)
    C = rnd(batch, groups, n, length, dt=bc_dtype)
    D = rnd(dim)
    z = rnd(batch, dim, length, dt=dtype)
    # without softplus, delta + bias is the step itself and must stay positive
    bias = rnd(dim, scale=0.5) if softplus else torch.rand(dim, generator=gen, device=dev) * 0.1
    return u, delta, A, B, C, D, z, bias


SCAN_CASES = [
    # batch, dim, L, N, groups, D/z/bias on, softplus
    (1, 8, 1, 16, 1, True, True),
    (2, 12, 37, 16, 4, True, True),
    (2, 5, 64, 16, 1, False, False),
    (1, 16, 1000, 1, 1, True, True),
    (3, 8, 257, 64, 2, True, True),
    (2, 10, 130, 33, 1, True, False),
    (1, 4, 4099, 16, 4, True, True),     # few channels, long: scanned in chunks
    (8, 24, 160, 16, 4, True, True),
    (1, 6, 3000, 64, 2, True, True),     # chunks with 16 lanes x 4 states
    (2, 10, 1500, 33, 1, True, False),   # chunks, partial last state group, no softplus
]


def scan_error(kernels, batch, dim, length, n, groups, dtype, bc_dtype, *, extras, softplus, key) -> float:
    """Relative error of one selective-scan launch (output NaN-poisoned first) against the float64 truth;
    ``extras``: with D, z and delta_bias."""
    gen = torch.Generator(device="cuda").manual_seed(key)
    u, delta, A, B, C, D, z, bias = scan_inputs(batch, dim, length, n, groups, dtype, bc_dtype, softplus, gen)
    if not extras:
        D = z = bias = None
    out = torch.full_like(u, float("nan"))
    kernels.launch_selective_scan(u, delta, A, B, C, D, z, bias, out, delta_softplus=softplus,
                                  stream=torch.cuda.current_stream().cuda_stream)
    torch.cuda.synchronize()
    truth = selective_scan_ref(*(t.double() for t in (u, delta, A, B, C)),
                               D=None if D is None else D.double(), z=None if z is None else z.double(),
                               delta_bias=None if bias is None else bias.double(), delta_softplus=softplus)
    return rel_err(out, truth)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("case", SCAN_CASES)
def test_selective_scan_matches_float64_reference(kernels, case, dtype):
    batch, dim, length, n, groups, extras, softplus = case
    assert scan_error(kernels, batch, dim, length, n, groups, dtype, dtype, extras=extras, softplus=softplus,
                      key=seed(case, dtype)) <= TOL[dtype]


LANE_CASES = [
    # batch, dim, L, N, groups, lanes a channel, chunks (forced plan of the lane-major core)
    (1, 64, 1000, 16, 2, 1, 3),    # 32 channels a group: one group a warp
    (2, 40, 301, 16, 1, 1, 2),     # warps across two groups, odd L
    (1, 16, 777, 16, 1, 2, 4),
    (3, 24, 130, 8, 3, 4, 2),      # N < 16
    (2, 12, 65, 16, 4, 8, 3),      # 3 channels a group
    (1, 8, 1, 16, 1, 4, 1),        # L = 1
    (1, 32, 5003, 16, 4, 4, 24),   # many chunks
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("case", LANE_CASES)
def test_lane_major_core_matches_float64_reference(kernels, monkeypatch, case, dtype):
    from fusion_edge.kernels import launch_params

    batch, dim, length, n, groups, lanes, chunks = case
    monkeypatch.setattr(launch_params, "SCAN_OVERRIDE", (lanes, chunks))
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    assert launch_params.scan_plan(batch * dim, length, n, sms, dim // groups).lanes == lanes
    gen = torch.Generator(device="cuda").manual_seed(seed(case, dtype))
    u, delta, A, B, C, D, z, bias = scan_inputs(batch, dim, length, n, groups, dtype, dtype, True, gen)
    if lanes == 2:
        z = None  # the ungated path too
    out = torch.full_like(u, float("nan"))
    kernels.launch_selective_scan(u, delta, A, B, C, D, z, bias, out, delta_softplus=True,
                                  stream=torch.cuda.current_stream().cuda_stream)
    torch.cuda.synchronize()
    truth = selective_scan_ref(*(t.double() for t in (u, delta, A, B, C, D)), z=None if z is None else z.double(),
                               delta_bias=bias.double(), delta_softplus=True)
    assert rel_err(out, truth) <= TOL[dtype]


@pytest.mark.parametrize("lanes", [1, 4])
def test_lane_major_core_half_inputs_with_float32_B_C_and_no_softplus(kernels, monkeypatch, lanes):
    from fusion_edge.kernels import launch_params

    monkeypatch.setattr(launch_params, "SCAN_OVERRIDE", (lanes, 3))
    gen = torch.Generator(device="cuda").manual_seed(17 + lanes)
    u, delta, A, B, C, D, z, bias = scan_inputs(2, 32, 517, 16, 1, torch.float16, torch.float32, False, gen)
    out = torch.full_like(u, float("nan"))
    kernels.launch_selective_scan(u, delta, A, B, C, D, z, bias, out, delta_softplus=False)
    torch.cuda.synchronize()
    truth = selective_scan_ref(*(t.double() for t in (u, delta, A, B, C, D, z, bias)), delta_softplus=False)
    assert rel_err(out, truth) <= TOL[torch.float16]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_with_float32_B_C(kernels, dtype):
    gen = torch.Generator(device="cuda").manual_seed(7)
    u, delta, A, B, C, D, z, bias = scan_inputs(2, 16, 301, 16, 4, dtype, torch.float32, True, gen)
    out = torch.full_like(u, float("nan"))
    kernels.launch_selective_scan(u, delta, A, B, C, D, z, bias, out, delta_softplus=True)
    torch.cuda.synchronize()
    truth = selective_scan_ref(*(t.double() for t in (u, delta, A, B, C, D, z, bias)), delta_softplus=True)
    assert rel_err(out, truth) <= TOL[dtype]


def test_very_long_sequence(kernels):
    gen = torch.Generator(device="cuda").manual_seed(3)
    u, delta, A, B, C, D, z, bias = scan_inputs(1, 2, 65537, 16, 1, torch.float32, torch.float32, True, gen)
    out = torch.full_like(u, float("nan"))
    kernels.launch_selective_scan(u, delta, A, B, C, D, None, bias, out, delta_softplus=True)
    torch.cuda.synchronize()
    truth = selective_scan_ref(*(t.double() for t in (u, delta, A, B, C, D)), delta_bias=bias.double(),
                               delta_softplus=True)
    assert rel_err(out, truth) <= 1e-5


def test_cupy_arrays_and_raw_pointers(kernels):
    import cupy

    gen = torch.Generator(device="cuda").manual_seed(11)
    u, delta, A, B, C, D, z, bias = scan_inputs(1, 8, 77, 16, 2, torch.float32, torch.float32, True, gen)
    truth = selective_scan_ref(*(t.double() for t in (u, delta, A, B, C, D, z, bias)), delta_softplus=True)
    as_cp = [cupy.from_dlpack(t) for t in (u, delta, A, B, C, D, z, bias)]
    out = kernels.launch_selective_scan(*as_cp, delta_softplus=True)  # out allocated by CuPy
    cupy.cuda.get_current_stream().synchronize()
    assert rel_err(torch.from_dlpack(out), truth) <= 1e-5
    stream = torch.cuda.Stream()
    raw = [kernels.DeviceArray(t.data_ptr(), tuple(t.shape), "float32", 0) for t in (u, delta, A, B, C, D, z, bias)]
    out2 = torch.full_like(u, float("nan"))
    stream.wait_stream(torch.cuda.current_stream())
    kernels.launch_selective_scan(*raw, out=kernels.DeviceArray(out2.data_ptr(), tuple(u.shape), "float32", 0),
                                  delta_softplus=True, stream=stream.cuda_stream)
    stream.synchronize()
    assert rel_err(out2, truth) <= 1e-5


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_torch_op_forward_and_autograd(kernels, dtype):
    from fusion_edge.ops import selective_scan

    gen = torch.Generator(device="cuda").manual_seed(5)
    u, delta, A, B, C, D, z, bias = scan_inputs(2, 8, 45, 16, 2, dtype, dtype, True, gen)
    leaves = [t.detach().clone().requires_grad_(True) for t in (u, delta, A, B, C, D, z, bias)]
    y = selective_scan(*leaves[:5], D=leaves[5], z=leaves[6], delta_bias=leaves[7], delta_softplus=True,
                       impl="cuda")
    assert y.dtype == dtype
    ref_leaves = [t.detach().double().requires_grad_(True) for t in (u, delta, A, B, C, D, z, bias)]
    y_ref = selective_scan_ref(*ref_leaves[:5], D=ref_leaves[5], z=ref_leaves[6], delta_bias=ref_leaves[7],
                               delta_softplus=True)
    assert rel_err(y, y_ref) <= TOL[dtype]
    g = torch.randn(y.shape, generator=gen, device="cuda").to(dtype)
    y.backward(g)
    y_ref.backward(g.double())
    bound = 1e-4 if dtype == torch.float32 else 5e-3  # backward runs in float32, grads cast back
    for name, a, b in zip(("u", "delta", "A", "B", "C", "D", "z", "delta_bias"), leaves, ref_leaves):
        assert a.grad is not None, name
        assert rel_err(a.grad, b.grad) <= bound, name


def es2d_truth(x, xw, dtw, dtb, A_logs, Ds):
    """es2d_scan_unfused's maths in float64."""
    b, d, h, w = x.shape
    rank, n = dtw.shape[2], A_logs.shape[1]
    xs = es2d_gather(x.double())
    length = xs.shape[-1]
    proj = torch.einsum("bkdl,kcd->bkcl", xs, xw.double())
    dts, Bs, Cs = torch.split(proj, [rank, n, n], dim=2)
    dts = torch.einsum("bkrl,kdr->bkdl", dts, dtw.double())
    ys = selective_scan_ref(xs.reshape(b, ROUTES * d, length), dts.reshape(b, ROUTES * d, length),
                            -torch.exp(A_logs.double()), Bs, Cs, D=Ds.double(),
                            delta_bias=dtb.reshape(-1).double(), delta_softplus=True)
    return es2d_scatter(ys.reshape(b, ROUTES, d, length), h, w)


def es2d_params(d, rank, n, gen):
    dev = "cuda"
    xw = torch.randn(ROUTES, rank + 2 * n, d, generator=gen, device=dev) / d**0.5
    dtw = torch.randn(ROUTES, d, rank, generator=gen, device=dev) / rank**0.5
    dtb = torch.randn(ROUTES, d, generator=gen, device=dev) * 0.5 - 2
    A_logs = torch.randn(ROUTES * d, n, generator=gen, device=dev) * 0.5
    Ds = torch.randn(ROUTES * d, generator=gen, device=dev)
    return xw, dtw, dtb, A_logs, Ds


def fused_es2d_error(kernels, batch, d, h, w, rank, n, dtype, key, channels_last=False) -> float:
    """Relative error of the fused ES2D launch (output NaN-poisoned first) against the float64 truth;
    ``channels_last``: the map and the output as (B, h, w, D) buffers."""
    gen = torch.Generator(device="cuda").manual_seed(key)
    x = torch.randn(batch, d, h, w, generator=gen, device="cuda").to(dtype)
    params = es2d_params(d, rank, n, gen)
    stream = torch.cuda.current_stream().cuda_stream
    if channels_last:
        out = torch.full((batch, h, w, d), float("nan"), device="cuda")
        kernels.launch_es2d_scan(x.permute(0, 2, 3, 1).contiguous(), *params, out, channels_last=True, stream=stream)
        out = out.permute(0, 3, 1, 2)
    else:
        out = torch.full((batch, d, h, w), float("nan"), device="cuda")
        kernels.launch_es2d_scan(x, *params, out, stream=stream)
    torch.cuda.synchronize()
    return rel_err(out, es2d_truth(x, *params))


ES2D_CASES = [
    # batch, D, h, w, R, N
    (1, 8, 1, 1, 1, 16),
    (2, 16, 5, 7, 1, 16),
    (1, 24, 8, 12, 2, 16),
    (2, 8, 9, 4, 1, 64),
    (1, 8, 64, 64, 1, 16),     # long routes: scanned in chunks
    (1, 8, 45, 61, 1, 16),     # odd sizes, chunks
    (1, 192, 16, 20, 6, 16),   # the paper preset's stage-1 widths on a small map
    (1, 1536, 2, 3, 48, 16),   # stage 4 widths, odd sub-grid (split channel sums)
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("case", ES2D_CASES)
def test_fused_es2d_matches_unfused(kernels, case, dtype):
    batch, d, h, w, rank, n = case
    gen = torch.Generator(device="cuda").manual_seed(seed(case, dtype))
    x = torch.randn(batch, d, h, w, generator=gen, device="cuda").to(dtype)
    params = es2d_params(d, rank, n, gen)
    out = torch.full((batch, d, h, w), float("nan"), device="cuda")
    kernels.launch_es2d_scan(x, *params, out, stream=torch.cuda.current_stream().cuda_stream)
    torch.cuda.synchronize()
    truth = es2d_truth(x, *params)
    assert rel_err(out, truth) <= 1e-5
    if dtype == torch.float32 and d <= 24:
        unfused = es2d_scan_unfused(x, *params, impl="reference")
        assert rel_err(out, unfused) <= 1e-5


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("case", [ES2D_CASES[1], ES2D_CASES[5], ES2D_CASES[6]])
def test_fused_es2d_with_given_projections(kernels, case, dtype):
    """proj= (the projections from es2d_project's library GEMM): the projection kernel is skipped and the
    scan reads the given rows; float32 inputs give float32 products, so the result is as exact."""
    from fusion_edge.ops.es2d import es2d_project

    batch, d, h, w, rank, n = case
    gen = torch.Generator(device="cuda").manual_seed(seed(case, dtype) + 1)
    x = torch.randn(batch, d, h, w, generator=gen, device="cuda").to(dtype)
    xw, *params = es2d_params(d, rank, n, gen)
    proj = es2d_project(x, xw).contiguous()
    out = torch.full((batch, d, h, w), float("nan"), device="cuda")
    kernels.launch_es2d_scan(x, None, *params, out, proj=proj, stream=torch.cuda.current_stream().cuda_stream)
    torch.cuda.synchronize()
    # fp16: the GEMM rounds its inputs' products to float16 weights, so B, C and delta move by ~1e-3
    assert rel_err(out, es2d_truth(x, xw, *params)) <= (1e-5 if dtype == torch.float32 else 5e-3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("plan", [(4, 3), (8, 1), (1, 2), (0, 2), (0, 1), (32, 1)])
def test_fused_es2d_with_given_delta(kernels, monkeypatch, plan, dtype):
    """delta= (es2d_delta's library product) on both cores, chunked or not: the scan reads delta's rows
    instead of forming delta from the dt rows, which are poisoned with NaN to prove they are not read."""
    from fusion_edge.kernels import launch_params

    from fusion_edge.ops.es2d import es2d_delta, es2d_project

    monkeypatch.setattr(launch_params, "SCAN_OVERRIDE", plan)
    monkeypatch.setattr(launch_params, "SCAN_MIN_CHUNK", 64)  # the split core chunks this short route too
    batch, d, h, w, rank, n = 2, 24, 33, 40, 12, 16
    gen = torch.Generator(device="cuda").manual_seed(91 + plan[0] * 7 + plan[1])
    x = torch.randn(batch, d, h, w, generator=gen, device="cuda").to(dtype)
    xw, *params = es2d_params(d, rank, n, gen)
    proj = es2d_project(x, xw).contiguous()
    delta = es2d_delta(proj, params[0]).contiguous()
    proj[:, :, :rank] = float("nan")
    out = torch.full((batch, d, h, w), float("nan"), device="cuda")
    kernels.launch_es2d_scan(x, None, *params, out, proj=proj, delta=delta,
                             stream=torch.cuda.current_stream().cuda_stream)
    torch.cuda.synchronize()
    assert rel_err(out, es2d_truth(x, xw, *params)) <= (1e-5 if dtype == torch.float32 else 5e-3)


TIME_CASES = [
    # batch, dim, L, N, groups, chunks, extras (D, z, delta_bias, softplus): the time-parallel core, forced
    (1, 8, 1, 16, 1, 1, True),       # L = 1: one lane of the tile has a step
    (2, 12, 37, 16, 4, 1, True),     # odd L shorter than a tile: element-wise loads
    (1, 16, 777, 16, 1, 1, False),   # several tiles, partial last tile; no D, z, bias or softplus
    (3, 24, 300, 8, 3, 1, True),     # N < 16
    (1, 16, 1024, 16, 2, 2, True),   # 16-byte rows, two chunks
    (1, 32, 5003, 16, 4, 5, True),   # chunks of an odd L
    (2, 6, 4099, 1, 2, 3, False),    # N = 1, chunks, batch 2
    (1, 800, 600, 16, 4, 1, True),   # more channels than fit twice: one warp a channel (on a GPU of <= 200 SMs)
    (2, 500, 1100, 8, 2, 2, True),   # one warp a channel, chunks, N < 16
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("case", TIME_CASES)
def test_time_parallel_core_matches_float64_reference(kernels, monkeypatch, case, dtype):
    from fusion_edge.kernels import launch_params

    batch, dim, length, n, groups, chunks, extras = case
    monkeypatch.setattr(launch_params, "SCAN_OVERRIDE", (launch_params.SCAN_TIME_LANES, chunks))
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    plan = launch_params.scan_plan(batch * dim, length, n, sms, dim // groups)
    assert (plan.lanes, plan.n_chunks) == (launch_params.SCAN_TIME_LANES, chunks)
    assert plan.split == launch_params.scan_time_split(batch * dim * chunks, sms)
    assert scan_error(kernels, batch, dim, length, n, groups, dtype, dtype, extras=extras, softplus=extras,
                      key=seed(case, dtype)) <= TOL[dtype]


def test_default_plan_of_a_long_scan_is_the_time_parallel_core(kernels):
    """The planner's own choice for the paper preset's stage-1 shape at 256x256 (no forcing)."""
    from fusion_edge.kernels import launch_params

    batch, dim, length, n, groups = 1, 768, 1024, 16, 4
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    plan = launch_params.scan_plan(batch * dim, length, n, sms, dim // groups)
    assert plan.lanes == launch_params.SCAN_TIME_LANES  # two tiles a channel: taken on any SM count
    assert scan_error(kernels, batch, dim, length, n, groups, torch.float16, torch.float16, extras=True,
                      softplus=True, key=77) <= TOL[torch.float16]


def test_time_parallel_core_with_float32_bc_and_half_inputs(kernels, monkeypatch):
    from fusion_edge.kernels import launch_params

    monkeypatch.setattr(launch_params, "SCAN_OVERRIDE", (launch_params.SCAN_TIME_LANES, 2))
    assert scan_error(kernels, 1, 8, 1500, 16, 2, torch.float16, torch.float32, extras=True, softplus=True,
                      key=1234) <= TOL[torch.float16]


ES2D_LANE_CASES = [
    # batch, D, h, w, R, N, lanes a channel, chunks (the scan forms delta from the R dt rows of the projections)
    (1, 32, 45, 61, 2, 16, 1, 4),
    (2, 16, 9, 20, 1, 16, 2, 2),
    (1, 8, 64, 64, 1, 16, 4, 8),
    (1, 12, 7, 5, 3, 8, 8, 1),
    (1, 16, 37, 50, 6, 16, 2, 3),    # R = 6 (paper stage 1), L = 475: rows read element by element
    (1, 24, 33, 40, 48, 16, 4, 5),   # R = 48 (paper stage 4), L = 340: 16-byte rows
    (2, 8, 20, 32, 48, 16, 8, 3),    # R = 48, 8-byte runs, batch 2
    (1, 32, 17, 23, 6, 16, 1, 2),    # R = 6, one lane a channel
]


def route_length(h: int, w: int) -> int:
    return ((h + 1) // 2) * ((w + 1) // 2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("case", ES2D_LANE_CASES)
def test_fused_es2d_on_the_lane_major_core(kernels, monkeypatch, case, dtype):
    from fusion_edge.kernels import launch_params

    batch, d, h, w, rank, n, lanes, chunks = case
    monkeypatch.setattr(launch_params, "SCAN_OVERRIDE", (lanes, chunks))
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    plan = launch_params.scan_plan(batch * ROUTES * d, route_length(h, w), n, sms, d, routes=True)
    assert (plan.lanes, plan.n_chunks) == (lanes, chunks)
    assert fused_es2d_error(kernels, batch, d, h, w, rank, n, dtype, seed(case, dtype)) <= 1e-5


ES2D_TIME_CASES = [
    # batch, D, h, w, R, N, chunks (the time-parallel core forced; the scan forms delta from the R dt rows)
    (1, 32, 45, 61, 2, 16, 1),      # odd map: padding positions on two routes, 713-step routes
    (2, 16, 9, 20, 1, 16, 1),       # routes shorter than a tile
    (1, 8, 64, 64, 1, 16, 2),       # chunks
    (1, 12, 7, 5, 3, 8, 1),         # N < 16
    (1, 24, 33, 40, 48, 16, 1),     # R = 48 (paper stage 4)
    (1, 200, 20, 24, 7, 16, 1),     # 800 channels: one warp a channel
]


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("case", ES2D_TIME_CASES)
def test_fused_es2d_on_the_time_parallel_core(kernels, monkeypatch, case, dtype, channels_last):
    from fusion_edge.kernels import launch_params

    batch, d, h, w, rank, n, chunks = case
    monkeypatch.setattr(launch_params, "SCAN_OVERRIDE", (launch_params.SCAN_TIME_LANES, chunks))
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    plan = launch_params.scan_plan(batch * ROUTES * d, route_length(h, w), n, sms, d, routes=True)
    assert (plan.lanes, plan.n_chunks) == (launch_params.SCAN_TIME_LANES, chunks)
    key = seed(case, dtype, channels_last)
    assert fused_es2d_error(kernels, batch, d, h, w, rank, n, dtype, key, channels_last=channels_last) <= 1e-5


ES2D_SPLIT_CASES = [
    # batch, D, h, w, R, N, chunked (the split core, forced; chunks of 64+ steps allowed)
    (1, 16, 37, 50, 1, 16, True),
    (1, 16, 33, 40, 6, 16, True),
    (1, 8, 30, 34, 48, 32, True),    # 16 lanes x 2 states
    (2, 8, 21, 21, 48, 16, False),
    (1, 12, 26, 40, 12, 64, True),   # 16 lanes x 4 states
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("case", ES2D_SPLIT_CASES)
def test_fused_es2d_on_the_split_core(kernels, monkeypatch, case, dtype):
    from fusion_edge.kernels import launch_params

    batch, d, h, w, rank, n, chunked = case
    monkeypatch.setattr(launch_params, "SCAN_OVERRIDE", (0, 2))
    monkeypatch.setattr(launch_params, "SCAN_MIN_CHUNK", 64)
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    plan = launch_params.scan_plan(batch * ROUTES * d, route_length(h, w), n, sms, d, routes=True)
    assert plan.lanes == 0 and (plan.n_chunks > 1) == chunked, plan
    assert fused_es2d_error(kernels, batch, d, h, w, rank, n, dtype, seed(case, dtype)) <= 1e-5


ES2D_PROJECTION_CASES = [
    # batch, D, h, w, R, N: rows R + 2N within one wide block or not, split channel sums or not
    (1, 16, 37, 50, 1, 16),
    (2, 192, 24, 40, 6, 16),
    (1, 1536, 4, 6, 48, 16),   # 80 rows: two wide blocks; channel sums split
    (1, 24, 10, 12, 2, 64),    # 130 rows
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("rows", [16, 48])
@pytest.mark.parametrize("case", ES2D_PROJECTION_CASES)
def test_fused_es2d_with_either_projection_width(kernels, monkeypatch, case, rows, dtype):
    """fe_es2d_project_* (16 rows a block) and fe_es2d_project_wide_* (48), forced on the same shapes."""
    from fusion_edge.kernels import launch_params

    monkeypatch.setattr(launch_params, "es2d_project_rows", lambda *args: rows)
    assert fused_es2d_error(kernels, *case, dtype, seed(case, dtype) + rows) <= 1e-5


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("rows", [16, 48])
@pytest.mark.parametrize("case", ES2D_CASES[1:])  # [3]: N = 64, the split core
def test_fused_es2d_reads_and_writes_channels_last_maps(kernels, monkeypatch, case, rows, dtype):
    """channels_last=True: x and out are (B, h, w, D) buffers; the result equals the planes' result, on both
    projection widths, chunked or not; the torch op keeps a channels-last map's layout."""
    from fusion_edge.kernels import launch_params

    from fusion_edge.ops.selective_scan_cuda import es2d_scan_fused

    monkeypatch.setattr(launch_params, "es2d_project_rows", lambda *args: rows)
    batch, d, h, w, rank, n = case
    gen = torch.Generator(device="cuda").manual_seed(seed(case, dtype) + 7)
    x = torch.randn(batch, d, h, w, generator=gen, device="cuda").to(dtype)
    params = es2d_params(d, rank, n, gen)
    out = torch.full((batch, h, w, d), float("nan"), device="cuda")
    kernels.launch_es2d_scan(x.permute(0, 2, 3, 1).contiguous(), *params, out, channels_last=True,
                             stream=torch.cuda.current_stream().cuda_stream)
    torch.cuda.synchronize()
    truth = es2d_truth(x, *params)
    assert rel_err(out.permute(0, 3, 1, 2), truth) <= 1e-5
    through_op = es2d_scan_fused(x.contiguous(memory_format=torch.channels_last), *params)
    assert through_op.is_contiguous(memory_format=torch.channels_last)
    assert rel_err(through_op, truth) <= 1e-5


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 8, 7, 5), (1, 33, 9, 5), (1, 96, 9, 12), (2, 130, 33, 20),
                                   (1, 64, 64, 80)])
def test_es2d_merge_is_the_scatter_and_split_the_gather(kernels, shape, channels_last, dtype):
    """launch_es2d_merge writes every pixel of the map from its route's row, launch_es2d_split every row
    position from its pixel (copies: exact), on odd sizes (padding dropped / read as 0), channel counts
    off the block's 64 and routes off its 32 positions."""
    batch, d, h, w = shape
    gen = torch.Generator(device="cuda").manual_seed(seed(shape, dtype))
    ys = torch.randn(batch, ROUTES * d, ((h + 1) // 2) * ((w + 1) // 2), generator=gen, device="cuda").to(dtype)
    truth = es2d_scatter(ys.reshape(batch, ROUTES, d, -1), h, w)
    layout = (batch, h, w, d) if channels_last else (batch, d, h, w)
    out = torch.full(layout, float("nan"), device="cuda", dtype=dtype)
    kernels.launch_es2d_merge(ys, out, h=h, w=w, channels_last=channels_last,
                              stream=torch.cuda.current_stream().cuda_stream)
    torch.cuda.synchronize()
    torch.testing.assert_close(out.permute(0, 3, 1, 2) if channels_last else out, truth, rtol=0, atol=0)
    with pytest.raises(ValueError, match=rf"positions a route; an {h + 2}x{w}"):
        kernels.launch_es2d_merge(ys, h=h + 2, w=w)
    x = torch.randn(batch, d, h, w, generator=gen, device="cuda").to(dtype)
    rows = torch.full_like(ys, float("nan"))
    kernels.launch_es2d_split(x.permute(0, 2, 3, 1).contiguous() if channels_last else x, rows,
                              channels_last=channels_last, stream=torch.cuda.current_stream().cuda_stream)
    torch.cuda.synchronize()
    torch.testing.assert_close(rows.view(batch, ROUTES, d, -1), es2d_gather(x), rtol=0, atol=0)
    from fusion_edge.ops.selective_scan_cuda import es2d_gather_cuda

    for layout in (torch.channels_last, torch.contiguous_format):  # the op's wrapper reads either layout
        torch.testing.assert_close(es2d_gather_cuda(x.contiguous(memory_format=layout)), es2d_gather(x),
                                   rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_es2d_merge_and_split_on_unaligned_buffers(kernels, dtype):
    """Buffers starting one element into their allocation (no wider alignment than an element) merge and
    split as aligned ones do."""
    batch, d, h, w = 1, 64, 12, 16
    length = ((h + 1) // 2) * ((w + 1) // 2)
    gen = torch.Generator(device="cuda").manual_seed(seed("unaligned", dtype))
    store = torch.randn(batch * ROUTES * d * length + 1, generator=gen, device="cuda").to(dtype)
    ys = store[1:].view(batch, ROUTES * d, length)
    out_store = torch.full((batch * h * w * d + 1,), float("nan"), device="cuda", dtype=dtype)
    out = out_store[1:].view(batch, h, w, d)
    kernels.launch_es2d_merge(ys, out, h=h, w=w, channels_last=True, stream=torch.cuda.current_stream().cuda_stream)
    rows_store = torch.full_like(store, float("nan"))
    rows = rows_store[1:].view(ys.shape)
    kernels.launch_es2d_split(out, rows, channels_last=True, stream=torch.cuda.current_stream().cuda_stream)
    torch.cuda.synchronize()
    torch.testing.assert_close(out.permute(0, 3, 1, 2), es2d_scatter(ys.view(batch, ROUTES, d, -1), h, w), rtol=0,
                               atol=0)
    torch.testing.assert_close(rows, ys, rtol=0, atol=0)


def norm_gate_truth(ys: torch.Tensor, z: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, h: int, w: int,
                    cross: bool, eps: float = 1e-5) -> torch.Tensor:
    """float64 LayerNorm over the channels of the map whose routes are the rows ys, times the SS2D gate of z
    (BHWC), as (B, h, w, D)."""
    batch, d = ys.shape[0], ys.shape[1] // ROUTES
    merged = es2d_scatter(ys.double().reshape(batch, ROUTES, d, -1), h, w).permute(0, 2, 3, 1)
    normed = F.layer_norm(merged, (d,), weight.double(), bias.double(), eps)
    g1 = F.silu(z.double())
    return normed * g1 + normed * F.silu(g1) if cross else normed * g1


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("cross", [False, True])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 8, 7, 5), (1, 33, 9, 5), (1, 96, 9, 12), (2, 130, 33, 20),
                                   (1, 192, 64, 80), (2, 768, 31, 41), (1, 1536, 16, 20), (1, 3072, 3, 5)])
def test_es2d_merge_norm_is_the_layernorm_of_the_merged_map_times_the_gate(kernels, shape, cross, dtype):
    """launch_es2d_merge_norm writes every pixel: LayerNorm of its channels (merged from the routes' rows) times
    SiLU(z) (the CMFM's SiLU(z) + SiLU(SiLU(z)) with cross), z the first D channels of wider pixel rows, against
    float64; odd sizes (padding dropped), odd channel counts, and widths that leave a block 32 down to 1 route
    positions (launch_params.es2d_merge_norm_positions); the 16-bit layers of whole 16-byte chunks (D = 192,
    768, 1536 here) in the 16-byte form, and again from a z that rules it out."""
    batch, d, h, w = shape
    gen = torch.Generator(device="cuda").manual_seed(seed("merge_norm", shape, cross, dtype))
    length = ((h + 1) // 2) * ((w + 1) // 2)
    ys = (torch.randn(batch, ROUTES * d, length, generator=gen, device="cuda") * 3 + 1).to(dtype)
    zbuf = (torch.randn(batch, h, w, 2 * d, generator=gen, device="cuda") * 2).to(dtype)
    weight = (1 + torch.randn(d, generator=gen, device="cuda") / 4).to(dtype)
    bias = (torch.randn(d, generator=gen, device="cuda") / 4).to(dtype)
    out = torch.full((batch, h, w, d), float("nan"), device="cuda", dtype=dtype)
    kernels.launch_es2d_merge_norm(ys, zbuf, weight, bias, out, h=h, w=w, eps=1e-5, cross=cross,
                                   stream=torch.cuda.current_stream().cuda_stream)
    torch.cuda.synchronize()
    truth = norm_gate_truth(ys, zbuf[..., :d], weight, bias, h, w, cross)
    assert rel_err(out, truth) <= TOL[dtype]
    # the most positions that fit a block (the launcher may take fewer for more blocks)
    from fusion_edge.kernels import launch_params as lp

    itemsize = zbuf.element_size()
    vec = lp.es2d_merge_norm_vectorized(d, itemsize, length, 2 * d) and lp.es2d_merge_norm_positions(
        d, itemsize, vectorized=True) > 0
    out.fill_(float("nan"))
    kernels.launch_es2d_merge_norm(ys, zbuf, weight, bias, out, h=h, w=w, eps=1e-5, cross=cross,
                                   positions=lp.es2d_merge_norm_positions(d, itemsize, vectorized=vec),
                                   stream=torch.cuda.current_stream().cuda_stream)
    torch.cuda.synchronize()
    assert rel_err(out, truth) <= TOL[dtype]
    # z one element into its rows (not 16-byte aligned): the element-by-element form on the same shapes
    shifted = kernels.DeviceArray(zbuf.data_ptr() + zbuf.element_size(), (batch, h, w, 2 * d),
                                  str(dtype).replace("torch.", ""), zbuf.device.index)
    out.fill_(float("nan"))
    kernels.launch_es2d_merge_norm(ys, shifted, weight, bias, out, h=h, w=w, eps=1e-5, cross=cross,
                                   stream=torch.cuda.current_stream().cuda_stream)
    torch.cuda.synchronize()
    assert rel_err(out, norm_gate_truth(ys, zbuf[..., 1:d + 1], weight, bias, h, w, cross)) <= TOL[dtype]
    with pytest.raises(ValueError, match=r"z must be \(batch, h, w, P\)"):
        kernels.launch_es2d_merge_norm(ys, zbuf[..., :d - 1].contiguous(), weight, bias, h=h, w=w, eps=1e-5)


def test_es2d_merge_norm_names_a_layer_too_wide(kernels):
    ys = torch.zeros(1, ROUTES * 6000, 1, device="cuda", dtype=torch.float16)
    z, params = torch.zeros(1, 1, 1, 6000, device="cuda", dtype=torch.float16), torch.ones(6000, device="cuda").half()
    with pytest.raises(ValueError, match="6000 channels of float16 do not fit"):
        kernels.launch_es2d_merge_norm(ys, z, params, params, h=1, w=1, eps=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("cross", [False, True])
@pytest.mark.parametrize("shape, pitch", [((1, 1, 1, 1), 1), ((2, 8, 7, 5), 16), ((1, 33, 9, 5), 33),
                                          ((1, 33, 9, 5), 66), ((1, 96, 9, 12), 192), ((2, 130, 33, 20), 260),
                                          ((1, 64, 1, 9), 64), ((1, 24, 40, 70), 48), ((2, 12, 35, 33), 24),
                                          ((1, 16, 32, 48), 32), ((2, 16, 48, 80), 16), ((1, 8, 40, 20), 24)])
def test_es2d_conv_split_is_the_gather_of_the_conv_map(kernels, shape, pitch, cross, dtype):
    """launch_es2d_conv_split (through es2d_conv_gather_cuda) writes every row position with the route's pixel
    of SiLU(depthwise 3x3 conv + bias) of the first D channels of a (batch, h, w, pitch) buffer (a half of an
    in_proj output when pitch = 2D, read in place; odd channel counts and pitches take the one-channel loads),
    or the CMFM's c1 * c2 + c1 + c2 of two inputs, against the float64 conv; padding rows 0."""
    from fusion_edge.ops.selective_scan_cuda import es2d_conv_gather_cuda

    batch, d, h, w = shape
    gen = torch.Generator(device="cuda").manual_seed(seed(shape, pitch, cross, dtype))
    a, a2 = (torch.randn(batch, h, w, pitch, generator=gen, device="cuda").to(dtype)[..., :d] for _ in range(2))
    weight = (torch.randn(d, 1, 3, 3, generator=gen, device="cuda") / 3).to(dtype)
    bias = torch.randn(d, generator=gen, device="cuda").to(dtype)

    def conv(x):
        return F.silu(F.conv2d(x.double().permute(0, 3, 1, 2), weight.double(), bias.double(), padding=1, groups=d))

    truth = conv(a)
    if cross:
        c2 = conv(a2)
        truth = truth * c2 + truth + c2
    with torch.no_grad():
        out = es2d_conv_gather_cuda(a, weight, bias, a2 if cross else None)
    expected = es2d_gather(truth)
    assert out.shape == expected.shape and out.dtype == dtype
    assert not out.isnan().any()
    assert rel_err(out, expected) <= TOL[dtype]
    for tile in (16, 8):  # both tile sizes, whichever the launcher would pick for this shape
        rows = torch.full((batch, ROUTES * d, ((h + 1) // 2) * ((w + 1) // 2)), float("nan"), device="cuda",
                          dtype=dtype)
        kernels.launch_es2d_conv_split(a.contiguous(), weight, bias, rows, a2=a2.contiguous() if cross else None,
                                       tile=tile, stream=torch.cuda.current_stream().cuda_stream)
        torch.cuda.synchronize()
        assert not rows.isnan().any(), f"tile {tile}"
        assert rel_err(rows.view(expected.shape), expected) <= TOL[dtype], f"tile {tile}"
    if d > 1:
        with pytest.raises(ValueError, match=r"weight must be \(D, 1, 3, 3\) or \(D, 9\) with 0 < D <= a's"):
            kernels.launch_es2d_conv_split(a[..., :1].contiguous(), weight, bias)
    with pytest.raises(ValueError, match="tile must be 16 or 8, got 4"):
        kernels.launch_es2d_conv_split(a.contiguous(), weight, bias, tile=4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("case", ES2D_CASES)
def test_es2d_routes_op_matches_the_truth(kernels, case, dtype):
    """fusion_edge::es2d_scan_routes on the GPU (the plain scan of gathered routes, then the merge kernel)
    against the float64 truth, from routes gathered, projected and given their deltas in ``dtype``."""
    import fusion_edge.ops  # noqa: F401  registers the ops
    from fusion_edge.ops import es2d

    batch, d, h, w, rank, n = case
    if n > 64:
        pytest.skip("more states than the scan kernels take")
    gen = torch.Generator(device="cuda").manual_seed(seed(case, dtype) + 11)
    x = torch.randn(batch, d, h, w, generator=gen, device="cuda").to(dtype)
    xw, dtw, dtb, al, ds = es2d_params(d, rank, n, gen)
    xs = es2d_gather(x)
    dts, Bs, Cs = torch.split(torch.matmul(xw.to(dtype), xs), [rank, n, n], dim=2)
    delta = torch.matmul(dtw.to(dtype), dts)
    args = (xs, delta, -torch.exp(al), Bs.contiguous(), Cs.contiguous(), ds, dtb.reshape(-1))
    with torch.no_grad():
        out = torch.ops.fusion_edge.es2d_scan_routes(*args, h, w)
    assert out.dtype == dtype and out.is_contiguous(memory_format=torch.channels_last)
    f64 = [t.double() for t in args]
    rows = selective_scan_ref(f64[0].flatten(1, 2), f64[1].flatten(1, 2), *f64[2:5], D=f64[5], delta_bias=f64[6],
                              delta_softplus=True)
    truth = es2d.es2d_scatter(rows.reshape(xs.shape), h, w)
    assert rel_err(out, truth) <= TOL[dtype]
    # with the LayerNorm and gate in the merge: z the second half of an in_proj output (read in place)
    zbuf = torch.randn(batch, h, w, 2 * d, generator=gen, device="cuda").to(dtype)
    weight, bias = (1 + torch.randn(2, d, generator=gen, device="cuda") / 4).to(dtype)
    for cross in (False, True):
        with torch.no_grad():
            gated = torch.ops.fusion_edge.es2d_scan_routes_norm(*args, h, w, zbuf[..., d:], weight, bias, 1e-5, cross)
        assert gated.dtype == dtype and gated.shape == (batch, h, w, d)
        assert rel_err(gated, norm_gate_truth(rows, zbuf[..., d:], weight, bias, h, w, cross)) <= 2 * TOL[dtype]


def test_es2d_dispatch_uses_the_fused_op_and_falls_back_for_training(kernels):
    from fusion_edge.ops import es2d_scan

    gen = torch.Generator(device="cuda").manual_seed(2)
    x = torch.randn(1, 16, 6, 10, generator=gen, device="cuda")
    params = es2d_params(16, 1, 16, gen)
    with torch.no_grad():
        fused = es2d_scan(x, *params)
    truth = es2d_truth(x, *params)
    assert rel_err(fused, truth) <= 1e-5
    leaves = [p.clone().requires_grad_(True) for p in params]
    y = es2d_scan(x, *leaves)  # gradients wanted: the unfused, differentiable path
    y.sum().backward()
    assert all(p.grad is not None for p in leaves)
    assert rel_err(y.detach(), truth) <= 1e-5


LDC_CASES = [(1, 3, 5, 1, 1), (2, 8, 8, 16, 20), (1, 13, 9, 33, 17), (1, 96, 96, 40, 48)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("case", LDC_CASES)
def test_ldc_kernel_matches_reference(kernels, case, dtype):
    batch, cin, cout, hgt, wid = case
    gen = torch.Generator(device="cuda").manual_seed(seed(case, dtype))
    x = torch.randn(batch, cin, hgt, wid, generator=gen, device="cuda").to(dtype)
    weight = torch.randn(cout, cin, 3, 3, generator=gen, device="cuda") / (3 * cin**0.5)
    base_mask = torch.ones(cout, cin, 3, 3, device="cuda") + 0.1 * torch.randn(cout, cin, 3, 3, generator=gen,
                                                                                device="cuda")
    lmask = torch.randn(cout, cin, generator=gen, device="cuda")
    theta = torch.rand(1, generator=gen, device="cuda")
    out = torch.full((batch, cout, hgt, wid), float("nan"), device="cuda").to(dtype)
    kernels.launch_ldc_conv2d(x, weight, base_mask, lmask, theta, out)
    torch.cuda.synchronize()
    w_eff = ldc_effective_weight(weight.double(), base_mask.double(), lmask.double(), theta.double())
    truth = F.conv2d(x.double(), w_eff, padding=1)
    assert rel_err(out, truth) <= TOL[dtype]
    with torch.no_grad():
        via_op = ldc_conv2d(x, weight, base_mask, lmask, theta, impl="cuda")
    assert rel_err(via_op, truth) <= TOL[dtype]


def test_model_forward_with_kernels_matches_reference():
    from fusion_edge.models import create_model
    from fusion_edge.ops import use_impl

    torch.manual_seed(0)
    model = create_model("edge").cuda().eval()
    vis = torch.rand(1, 1, 64, 96, device="cuda")
    ir = torch.rand(1, 1, 64, 96, device="cuda")
    with torch.no_grad():
        fast = model(vis, ir)
        with use_impl("reference"):
            slow = model(vis, ir)
        ldc_ops = importlib.import_module("fusion_edge.ops.ldc")
        ldc_ops._CUDA_LDC_AUTO = True  # the model's LDC layers on our kernel too
        try:
            fast_ldc = model(vis, ir)
        finally:
            ldc_ops._CUDA_LDC_AUTO = False
    assert rel_err(fast, slow) <= 1e-4
    assert rel_err(fast_ldc, slow) <= 1e-4


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", [(1, 1, 1, 8), (2, 5, 7, 16), (1, 128, 160, 96), (2, 64, 80, 192),
                                   (2, 32, 40, 384), (1, 16, 20, 768), (2, 3, 3, 1024), (1, 7, 3, 136),
                                   (3, 1000, 24), (2, 16, 20, 128)])
def test_ln_pool_is_the_mean_of_the_layer_norm(kernels, shape, dtype):
    """launch_ln_pool: the pixel mean of LayerNorm(x) (with and without its weight and bias) and of x, against
    float64 on the same rounded inputs (offset and scaled, so the normalization matters); out and the shares'
    workspace are poisoned first; rows of one to four 16-byte words a lane and of sub-warp widths, maps of one
    to hundreds of blocks; a second launch gives the same bits."""
    itemsize = torch.empty(0, dtype=dtype).element_size()
    shape = (*shape[:-1], min(shape[-1], kernels.launch_params.ln_pool_max_channels(itemsize)))
    gen = torch.Generator(device="cuda").manual_seed(seed(shape, dtype))
    x = (torch.randn(*shape, generator=gen, device="cuda") * 3 + 1).to(dtype)
    weight = (torch.randn(shape[-1], generator=gen, device="cuda") + 1).to(dtype)
    bias = torch.randn(shape[-1], generator=gen, device="cuda").to(dtype)
    pixels = tuple(range(1, x.dim() - 1))
    normed = F.layer_norm(x.double(), x.shape[-1:], eps=1e-5).mean(dim=pixels)
    truth_x = x.double().mean(dim=pixels)
    stream = torch.cuda.current_stream().cuda_stream
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    for with_raw, affine in ((True, True), (False, False), (True, False)):
        params = {"weight": weight, "bias": bias} if affine else {}
        floats = kernels.ln_pool_workspace_floats(shape, itemsize, sms, with_raw)
        shares = torch.full((floats + 5,), float("nan"), device="cuda")
        out = torch.full((shape[0], 1 + with_raw, shape[-1]), float("nan"), device="cuda", dtype=dtype)
        kernels.launch_ln_pool(x, out, eps=1e-5, with_raw=with_raw, workspace=shares, stream=stream, **params)
        again = torch.empty_like(out)
        kernels.launch_ln_pool(x, again, eps=1e-5, with_raw=with_raw, stream=stream, **params)
        torch.cuda.synchronize()
        assert not out.isnan().any()
        assert torch.equal(out, again)
        want = normed * weight.double() + bias.double() if affine else normed
        # means of O(1) terms: bound the absolute error (a mean near 0 has no useful relative error), plus the
        # rounding of the output to x's type
        tol = 2e-5 + (0 if dtype == torch.float32 else TOL[dtype] * want.abs().max().item())
        assert (out[:, 0].double() - want).abs().max().item() <= tol
        if with_raw:
            scale = max(1.0, truth_x.abs().max().item())
            tol = (2e-5 if dtype == torch.float32 else 2e-5 + TOL[dtype]) * scale
            assert (out[:, 1].double() - truth_x).abs().max().item() <= tol


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_ln_pool_refuses_rows_it_cannot_read(kernels, dtype):
    """Rows that are not whole 16-byte words, rows wider than the widest entry point, a misaligned start, a
    short workspace and parameters of another shape or type are named errors, not wrong sums."""
    itemsize = torch.empty(0, dtype=dtype).element_size()
    widest = kernels.launch_params.ln_pool_max_channels(itemsize)
    odd = 16 // itemsize + 1
    with pytest.raises(ValueError, match="16-byte runs"):
        kernels.launch_ln_pool(torch.zeros(1, 2, odd, device="cuda", dtype=dtype), eps=1e-5)
    with pytest.raises(ValueError, match=f"1 to {widest} channels"):
        kernels.launch_ln_pool(torch.zeros(1, 2, widest + 16 // itemsize, device="cuda", dtype=dtype), eps=1e-5)
    with pytest.raises(ValueError, match="16-byte boundary"):
        kernels.launch_ln_pool(torch.zeros(1, 3, 32, device="cuda", dtype=dtype).flatten()[1:65].view(1, 2, 32),
                               eps=1e-5)
    x = torch.zeros(2, 40, 32, device="cuda", dtype=dtype)
    with pytest.raises(ValueError, match="workspace must be float32 with at least"):
        kernels.launch_ln_pool(x, eps=1e-5, workspace=torch.zeros(3, device="cuda"))
    with pytest.raises(ValueError, match="weight must have shape"):
        kernels.launch_ln_pool(x, eps=1e-5, weight=torch.ones(16, device="cuda", dtype=dtype))
    other = torch.float16 if dtype == torch.float32 else torch.float32
    with pytest.raises(ValueError, match="bias must be"):
        kernels.launch_ln_pool(x, eps=1e-5, bias=torch.ones(32, device="cuda", dtype=other))


def test_ln_pool_op_is_the_model_expression(kernels, monkeypatch):
    """fusion_edge.ops.ln_pool on CUDA (the op) against F.layer_norm(...).mean and x.mean in float16,
    a BHWC map taken as a permuted view (the op makes it dense), weight and bias applied by the kernel."""
    from fusion_edge.ops import ln_pool as ln_pool_module
    from fusion_edge.ops.ln_pool import ln_pool

    monkeypatch.setattr(ln_pool_module, "ENABLED", True)

    gen = torch.Generator(device="cuda").manual_seed(seed("ln_pool_op"))
    x = (torch.randn(2, 96, 20, 24, generator=gen, device="cuda") * 2).half().permute(0, 2, 3, 1)
    weight = torch.randn(96, generator=gen, device="cuda").half()
    bias = torch.randn(96, generator=gen, device="cuda").half()
    with torch.no_grad():
        pooled, raw = ln_pool(x, weight, bias, 1e-5, with_raw=True)
        plain = F.layer_norm(x.float(), (96,), weight.float(), bias.float(), 1e-5).mean(dim=(1, 2))
    assert pooled.dtype == raw.dtype == torch.float16 and pooled.shape == raw.shape == (2, 96)
    assert (pooled.float() - plain).abs().max().item() <= 4e-3
    assert (raw.float() - x.float().mean(dim=(1, 2))).abs().max().item() <= 2e-3
    with torch.no_grad():  # the shares add up in a fixed order: calls repeat bitwise
        assert torch.equal(ln_pool(x, weight, bias, 1e-5, with_raw=True)[0], pooled)
