"""The selective-scan backward kernel against float64 gradients, on fresh random inputs.

GPU tests (marked ``gpu``): every gradient of ``launch_selective_scan_bwd`` against float64
autograd of the sequential reference (the chunked op in float64 for L = 65536, where the
sequential loop would take minutes), with every output poisoned with NaN before the launch so
a position the kernel forgets to write fails. Error measure: max |grad - truth| / max |truth|;
bounds 1e-4 for float32 inputs, 1e-2 for float16/bfloat16 (the truth is computed from the same
rounded inputs; the kernel's gradients are rounded to the input type). Then the autograd op
(``selective_scan(..., impl="cuda")``) against the chunked op's gradients and a float64 finite
difference, and a training step of the edge model against the chunked scan.
The argument checks and the segment plan are tested without a GPU.
"""

from __future__ import annotations

import zlib

import pytest
import torch
from fusion_edge.kernels import launch_params

from fusion_edge import kernels
from fusion_edge.ops.selective_scan_chunked import selective_scan_chunked
from fusion_edge.ops.selective_scan_ref import selective_scan_ref

NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")
TOL = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 1e-2}


@pytest.fixture(scope="module")
def gpu_kernels():
    kernels.ensure_available()
    return kernels


def seed(*key) -> int:
    return zlib.crc32(repr(key).encode())


def rel_err(out: torch.Tensor, truth: torch.Tensor) -> float:
    out, truth = out.double(), truth.double()
    assert not torch.isnan(out).any(), "NaN in a gradient (a position was not written?)"
    return ((out - truth).abs().max() / truth.abs().max().clamp_min(1e-30)).item()


def make_inputs(batch, dim, length, n, groups, dtype, *, bc_dtype=None, softplus=True, extras=True, gen):
    """Realistic ranges: softplus(delta + bias) with delta ~ N(-1, 0.5^2), A = -exp(U(0, 1))."""
    dev = "cuda"

    def rnd(*shape, scale=1.0, dt=torch.float32):
        return (torch.randn(*shape, generator=gen, device=dev) * scale).to(dt)

    bc_dtype = bc_dtype or dtype
    u = rnd(batch, dim, length, dt=dtype)
    if softplus:
        delta = (torch.randn(batch, dim, length, generator=gen, device=dev) * 0.5 - 1).to(dtype)
        bias = rnd(dim, scale=0.5)
    else:  # delta + bias is the step itself: positive
        delta = (torch.rand(batch, dim, length, generator=gen, device=dev) * 0.4 + 0.01).to(dtype)
        bias = torch.rand(dim, generator=gen, device=dev) * 0.1
    A = -torch.exp(torch.rand(dim, n, generator=gen, device=dev))
    B = rnd(batch, groups, n, length, dt=bc_dtype)
    C = rnd(batch, groups, n, length, dt=bc_dtype)
    D = rnd(dim)
    z = rnd(batch, dim, length, dt=dtype)
    dout = rnd(batch, dim, length, dt=dtype)
    inputs = dict(u=u, delta=delta, A=A, B=B, C=C, D=D, z=z, delta_bias=bias)
    if not extras:
        inputs.update(D=None, z=None, delta_bias=None)
    return inputs, dout


def kernel_grads(inputs, dout, softplus, want=NAMES, *, stream=None):
    """Launch the backward with NaN-poisoned outputs for the gradients in ``want``."""
    u = inputs["u"]
    nan = float("nan")
    grads = {}
    for name in want:
        t = inputs[name]
        if t is None:
            continue
        if name in ("u", "delta", "z"):
            grads[name] = torch.full_like(u, nan)
        else:
            grads[name] = torch.full(t.shape, nan, device=u.device, dtype=torch.float32)
    keys = dict(u="du", delta="ddelta", A="dA", B="dB", C="dC", D="dD", z="dz", delta_bias="ddelta_bias")
    stream = torch.cuda.current_stream().cuda_stream if stream is None else stream
    kernels.launch_selective_scan_bwd(*(inputs[n] for n in NAMES), dout=dout, delta_softplus=softplus,
                                      stream=stream, **{keys[n]: g for n, g in grads.items()})
    torch.cuda.synchronize()
    return grads


def truth_grads(inputs, dout, softplus, fn=selective_scan_ref):
    leaves = {n: None if t is None else t.detach().double().requires_grad_(True) for n, t in inputs.items()}
    y = fn(*(leaves[n] for n in NAMES[:5]), D=leaves["D"], z=leaves["z"], delta_bias=leaves["delta_bias"],
           delta_softplus=softplus)
    y.backward(dout.double())
    return {n: t.grad for n, t in leaves.items() if t is not None}


def check(grads, truth, tol, label=""):
    errs = {n: rel_err(g, truth[n]) for n, g in grads.items()}
    bad = {n: e for n, e in errs.items() if not e <= tol}
    assert not bad, f"{label} gradients off (bound {tol}): {bad}; all: {errs}"


CASES = [
    # batch, dim, L, N, groups, D/z/bias, softplus
    (2, 8, 1, 16, 1, True, True),        # L = 1
    (2, 12, 37, 16, 4, True, True),      # odd L; 4 groups of 3 channels (idle slots in a block)
    (3, 8, 100, 4, 1, False, False),     # no D, z, delta_bias; no softplus
    (2, 6, 257, 1, 1, True, True),       # N = 1
    (4, 40, 130, 16, 4, True, False),    # 10 channels a group: two blocks add into dB, dC
    (2, 8, 33, 33, 2, True, True),       # 2 x 32 lanes, states past N idle
    (2, 8, 75, 32, 1, True, True),       # 32 lanes x 1 state
    (2, 10, 64, 64, 2, True, True),      # 32 lanes x 2 states
    (8, 16, 48, 16, 4, True, True),      # batch 8
    (1, 4, 4097, 16, 4, True, True),     # long, few channels: L split into segments
    (2, 3, 2000, 64, 1, True, False),    # segments with 32 x 2 lanes, no softplus
]
HALF_CASES = [CASES[1], CASES[4], CASES[7], CASES[9]]


@pytest.mark.gpu
@pytest.mark.parametrize("case", CASES)
def test_float32_gradients_match_float64_reference(gpu_kernels, case):
    batch, dim, length, n, groups, extras, softplus = case
    gen = torch.Generator(device="cuda").manual_seed(seed(case))
    inputs, dout = make_inputs(batch, dim, length, n, groups, torch.float32, softplus=softplus, extras=extras,
                               gen=gen)
    check(kernel_grads(inputs, dout, softplus), truth_grads(inputs, dout, softplus), 1e-4, str(case))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("case", HALF_CASES)
def test_half_gradients_match_float64_reference(gpu_kernels, case, dtype):
    batch, dim, length, n, groups, extras, softplus = case
    gen = torch.Generator(device="cuda").manual_seed(seed(case, dtype))
    inputs, dout = make_inputs(batch, dim, length, n, groups, dtype, softplus=softplus, extras=extras, gen=gen)
    grads = kernel_grads(inputs, dout, softplus)
    assert grads["u"].dtype == dtype and grads["B"].dtype == torch.float32
    check(grads, truth_grads(inputs, dout, softplus), TOL[dtype], str(case))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_with_float32_B_C(gpu_kernels, dtype):
    gen = torch.Generator(device="cuda").manual_seed(seed("mixed", dtype))
    inputs, dout = make_inputs(2, 16, 301, 16, 4, dtype, bc_dtype=torch.float32, gen=gen)
    check(kernel_grads(inputs, dout, True), truth_grads(inputs, dout, True), TOL[dtype])


@pytest.mark.gpu
def test_segments_and_one_pass_agree(gpu_kernels, monkeypatch):
    """The same long scan with L split into segments (carried states and adjoints) and without."""
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    assert launch_params.scan_bwd_segments(1, 6, 2, 3000, 16, sms)[1] > 1
    gen = torch.Generator(device="cuda").manual_seed(5)
    inputs, dout = make_inputs(1, 6, 3000, 16, 2, torch.float32, gen=gen)
    split = kernel_grads(inputs, dout, True)
    monkeypatch.setattr(launch_params, "SCAN_BWD_SPLIT", False)
    whole = kernel_grads(inputs, dout, True)
    truth = truth_grads(inputs, dout, True)
    check(split, truth, 1e-4, "split")
    check(whole, truth, 1e-4, "one segment")


@pytest.mark.gpu
def test_sequence_of_65536_steps(gpu_kernels):
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    assert launch_params.scan_bwd_segments(1, 2, 1, 65536, 16, sms)[1] > 1
    gen = torch.Generator(device="cuda").manual_seed(9)
    inputs, dout = make_inputs(1, 2, 65536, 16, 1, torch.float32, gen=gen)
    truth = truth_grads(inputs, dout, True, fn=selective_scan_chunked)  # float64; the loop would take minutes
    check(kernel_grads(inputs, dout, True), truth, 1e-4)


@pytest.mark.gpu
def test_only_the_wanted_gradients_are_written(gpu_kernels):
    gen = torch.Generator(device="cuda").manual_seed(13)
    inputs, dout = make_inputs(2, 8, 70, 16, 2, torch.float32, gen=gen)
    truth = truth_grads(inputs, dout, True)
    for want in (("B",), ("u", "A"), ("delta", "C", "delta_bias"), ("z", "D")):
        grads = kernel_grads(inputs, dout, True, want=want)
        assert set(grads) == set(want)
        check(grads, truth, 1e-4, str(want))


@pytest.mark.gpu
def test_cupy_arrays_and_side_stream(gpu_kernels):
    import cupy

    gen = torch.Generator(device="cuda").manual_seed(17)
    inputs, dout = make_inputs(1, 8, 90, 16, 2, torch.float32, gen=gen)
    truth = truth_grads(inputs, dout, True)
    as_cp = {n: cupy.from_dlpack(t) for n, t in inputs.items()}
    du = cupy.full(inputs["u"].shape, cupy.nan, dtype=cupy.float32)
    dB = cupy.full(inputs["B"].shape, cupy.nan, dtype=cupy.float32)
    kernels.launch_selective_scan_bwd(*(as_cp[n] for n in NAMES), dout=cupy.from_dlpack(dout), du=du, dB=dB,
                                      delta_softplus=True)
    cupy.cuda.get_current_stream().synchronize()
    check({"u": torch.from_dlpack(du), "B": torch.from_dlpack(dB)}, truth, 1e-4, "cupy")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        grads = kernel_grads(inputs, dout, True, stream=stream.cuda_stream)
    check(grads, truth, 1e-4, "side stream")


def _op_grads(impl, inputs, dout, softplus, wanted=NAMES):
    from fusion_edge.ops import selective_scan

    leaves = {n: None if t is None else t.detach().clone().requires_grad_(n in wanted) for n, t in inputs.items()}
    y = selective_scan(*(leaves[n] for n in NAMES[:5]), D=leaves["D"], z=leaves["z"],
                       delta_bias=leaves["delta_bias"], delta_softplus=softplus, impl=impl)
    y.backward(dout)
    return y, {n: t.grad for n, t in leaves.items() if t is not None}


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_autograd_op_matches_chunked_op(gpu_kernels, dtype):
    gen = torch.Generator(device="cuda").manual_seed(seed("op", dtype))
    inputs, dout = make_inputs(2, 16, 300, 16, 4, dtype, gen=gen)
    y, grads = _op_grads("cuda", inputs, dout, True)
    y_ref, ref = _op_grads("chunked", {n: None if t is None else t.double() for n, t in inputs.items()},
                           dout.double(), True)
    assert rel_err(y, y_ref) <= TOL[dtype]
    for name in NAMES:
        assert grads[name] is not None and grads[name].dtype == inputs[name].dtype, name
        assert rel_err(grads[name], ref[name]) <= TOL[dtype], name
    # only some inputs need gradients
    _, some = _op_grads("cuda", inputs, dout, True, wanted=("u", "A"))
    assert some["delta"] is None and some["B"] is None
    assert rel_err(some["u"], ref["u"]) <= TOL[dtype] and rel_err(some["A"], ref["A"]) <= TOL[dtype]


@pytest.mark.gpu
def test_autograd_op_matches_finite_differences(gpu_kernels):
    """<grads, v> against the float64 central difference of <dout, scan(x + eps v)> (gradcheck's test)."""
    gen = torch.Generator(device="cuda").manual_seed(23)
    inputs, dout = make_inputs(1, 4, 50, 16, 2, torch.float32, gen=gen)
    _, grads = _op_grads("cuda", inputs, dout, True)
    direction = {n: torch.randn(t.shape, generator=gen, device="cuda", dtype=torch.float64)
                 for n, t in inputs.items()}

    def f(eps: float) -> float:
        x = {n: t.double() + eps * direction[n] for n, t in inputs.items()}
        y = selective_scan_ref(*(x[n] for n in NAMES[:5]), D=x["D"], z=x["z"], delta_bias=x["delta_bias"],
                               delta_softplus=True)
        return (y * dout.double()).sum().item()

    eps = 1e-6
    numeric = (f(eps) - f(-eps)) / (2 * eps)
    analytic = sum((grads[n].double() * direction[n]).sum().item() for n in NAMES)
    assert abs(numeric - analytic) <= 1e-4 * max(1.0, abs(numeric))


@pytest.mark.gpu
def test_edge_model_training_step_matches_chunked_scan(gpu_kernels):
    from fusion_edge.models import create_model
    from fusion_edge.ops import use_impl

    torch.manual_seed(0)
    model = create_model("edge").cuda().eval()  # eval: no stochastic depth, the two passes see one model
    vis = torch.rand(2, 1, 64, 96, device="cuda")
    ir = torch.rand(2, 1, 64, 96, device="cuda")
    grads = {}
    for impl in ("cuda", "chunked"):
        model.zero_grad(set_to_none=True)
        with use_impl(impl):
            model(vis, ir).square().mean().backward()
        grads[impl] = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    assert grads["cuda"].keys() == grads["chunked"].keys() and grads["cuda"]
    names = sorted(grads["cuda"])
    flat = {impl: torch.cat([grads[impl][n].flatten() for n in names]) for impl in grads}
    assert rel_err(flat["cuda"], flat["chunked"]) <= 1e-4
    scale = flat["chunked"].abs().max()
    for n in names:  # every parameter whose gradient is not negligible, on its own scale
        if grads["chunked"][n].abs().max() > 1e-2 * scale:
            assert rel_err(grads["cuda"][n], grads["chunked"][n]) <= 1e-3, n


# ---- without a GPU -------------------------------------------------------------------------------

def _fake(shape, dtype="float32"):
    return kernels.DeviceArray(1 << 20, shape, dtype)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(dout=None), "dout .* is required"),
        (dict(delta=_fake((1, 4, 9))), r"delta must have shape \(1, 4, 8\)"),
        (dict(A=_fake((4, 65))), "N=65 states"),
        (dict(B=_fake((1, 3, 16, 8)), C=_fake((1, 3, 16, 8))), "3 groups, which must divide dim=4"),
        (dict(C=_fake((1, 1, 16, 8), "float16")), "C must be float32"),
        (dict(dz=_fake((1, 4, 8))), "dz was asked for but the scan has no z"),
        (dict(dB=_fake((1, 1, 16, 7))), r"dB must have shape \(1, 1, 16, 8\)"),
        (dict(dA=_fake((4, 16), "float16")), "dA must be float32"),
        (dict(du=_fake((1, 4, 8), "float16")), "du must be float32"),
    ],
)
def test_launch_checks_arguments_before_touching_the_gpu(change, message):
    args = dict(u=_fake((1, 4, 8)), delta=_fake((1, 4, 8)), A=_fake((4, 16)), B=_fake((1, 1, 16, 8)),
                C=_fake((1, 1, 16, 8)), dout=_fake((1, 4, 8)), du=_fake((1, 4, 8)), dB=_fake((1, 1, 16, 8)))
    args.update(change)
    with pytest.raises(ValueError, match=message):
        kernels.launch_selective_scan_bwd(**args)


def test_segment_plan_and_workspace():
    lp = launch_params
    # few channels, long L: segments of whole tiles that cover L exactly once
    seg_len, n_segs = lp.scan_bwd_segments(1, 2, 1, 65536, 16, sm_count=132)
    assert n_segs > 1 and seg_len % lp.SCAN_BWD_TILE == 0 and (n_segs - 1) * seg_len < 65536 <= n_segs * seg_len
    assert lp.scan_bwd_segments(8, 768, 4, 5120, 16, sm_count=132) == (5120, 1)  # batch 8 fills the GPU
    assert lp.scan_bwd_segments(1, 4, 1, 300, 16, sm_count=132) == (304, 1)      # too short to split
    assert lp.scan_bwd_layout(16) == (16, 1, 4) and lp.scan_bwd_layout(17)[:2] == (32, 1)
    assert lp.scan_bwd_layout(64)[:2] == (32, 2)
    # one float32 checkpoint per channel, state slot and tile (+ the segment carries)
    ckpt = 8 * 768 * (5120 // 16) * 16 * 4
    assert kernels.selective_scan_bwd_workspace_bytes(8, 768, 5120, 16, 132, groups=4) == ckpt
    split = kernels.selective_scan_bwd_workspace_bytes(1, 2, 65536, 16, 132)
    assert split > 2 * (n_segs * seg_len // 16) * 16 * 4
    assert kernels.selective_scan_bwd_workspace_bytes(1, 2, 0, 16, 132) == 0
