"""Selective-scan implementations against a float64 sequential truth, and the dispatch.

Relative error, as used throughout: max|y - y64| / max|y64|, where y64 is the sequential
reference scan run on the same inputs converted to float64.
"""

from __future__ import annotations

import importlib.util
import sys
import types
import warnings

import pytest
import torch
import torch.nn.functional as F

from fusion_edge.ops import selective_scan_mamba as mamba_adapter
from fusion_edge.ops.selective_scan import (
    available_impls,
    get_default_impl,
    resolve_impl,
    selective_scan,
    set_default_impl,
    use_impl,
)
from fusion_edge.ops.selective_scan_chunked import (
    MAX_CHUNK_LEN,
    eager_chunk_len,
    selective_scan_chunked,
    stable_softplus,
)
from fusion_edge.ops.selective_scan_ref import selective_scan_ref

FP32_TOLERANCE = 1e-5
ARG_NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def relative_error(y: torch.Tensor, y64: torch.Tensor) -> float:
    return ((y.double() - y64).abs().max() / y64.abs().max()).item()


def make_inputs(
    length: int,
    *,
    groups: int = 4,
    batch: int = 1,
    dim: int = 8,
    n_state: int = 16,
    options: bool = True,
    max_delta: float = 5.0,
    seed: int = 0,
) -> dict[str, torch.Tensor | bool | None]:
    """Fresh random fp32 inputs in the model's regime.

    A = -exp(A_log), A_log up to ln 16; effective deltas log-uniform in [1e-3, max_delta], so
    some channels remember the whole sequence and others forget within one step.
    ``options`` adds D, z, delta_bias and the softplus; without it delta is used as given.
    """
    g = torch.Generator().manual_seed(seed)
    shape = (batch, dim, length)
    step = torch.exp(torch.empty(shape).uniform_(-6.9, float(torch.log(torch.tensor(max_delta))), generator=g))
    args = {
        "u": torch.randn(shape, generator=g),
        "A": -torch.exp(torch.rand(dim, n_state, generator=g) * torch.log(torch.tensor(16.0))),
        "B": torch.randn(batch, groups, n_state, length, generator=g),
        "C": torch.randn(batch, groups, n_state, length, generator=g),
        "D": None,
        "z": None,
        "delta_bias": None,
        "delta_softplus": options,
    }
    if options:
        bias = torch.rand(dim, generator=g) - 0.5
        args["delta"] = torch.log(torch.expm1(step)) - bias[:, None]  # softplus(delta + bias) == step
        args.update(D=torch.randn(dim, generator=g), z=torch.randn(shape, generator=g), delta_bias=bias)
    else:
        args["delta"] = step
    return args


def float64_truth(args: dict) -> torch.Tensor:
    as64 = {k: v.double() if isinstance(v, torch.Tensor) else v for k, v in args.items()}
    return selective_scan_ref(**as64)


# --- accuracy against the float64 truth ------------------------------------------------------


@pytest.mark.parametrize("options", [False, True], ids=["plain", "D-z-bias-softplus"])
@pytest.mark.parametrize("groups", [1, 4])
@pytest.mark.parametrize("length", [1, 7, 64, 1000, 5120])
def test_fp32_scans_match_float64_truth(length, groups, options):
    dim = 8 if length <= 1000 else 4
    args = make_inputs(length, groups=groups, dim=dim, options=options, seed=length + groups)
    y64 = float64_truth(args)
    for impl in ("reference", "chunked"):
        y = selective_scan(**args, impl=impl)
        assert y.dtype == torch.float32 and y.shape == (1, dim, length)
        error = relative_error(y, y64)
        assert error <= FP32_TOLERANCE, f"{impl}: relative error {error:.2e}"


@pytest.mark.parametrize("chunk_len", [1, 5, 16, 100, 128])
def test_chunked_is_right_for_any_chunk_length(chunk_len):
    args = make_inputs(100, seed=chunk_len)
    error = relative_error(selective_scan_chunked(**args, chunk_len=chunk_len), float64_truth(args))
    assert error <= FP32_TOLERANCE


def test_autograd_path_computes_the_same_output():
    """Inputs that need gradients take the recorded (out-of-place) passes, others the in-place ones."""
    args = make_inputs(300, seed=12)
    y64 = float64_truth(args)
    plain = selective_scan_chunked(**args, chunk_len=16)
    tracked = {k: v.clone().requires_grad_(True) if isinstance(v, torch.Tensor) else v for k, v in args.items()}
    recorded = selective_scan_chunked(**tracked, chunk_len=16)
    assert recorded.grad_fn is not None and plain.grad_fn is None
    assert relative_error(recorded.detach(), plain.double()) < 1e-6
    assert relative_error(recorded.detach(), y64) <= FP32_TOLERANCE


def test_eager_chunk_length_follows_the_state_size():
    assert eager_chunk_len(1 * 8 * 16 * 7, 7) == 7  # short: one chunk, no padding
    assert eager_chunk_len(1 * 128 * 16 * 5120, 5120) == 32
    assert eager_chunk_len(1 * 768 * 16 * 5120, 5120) == 128
    assert eager_chunk_len(64 * 768 * 16 * 20480, 20480) == MAX_CHUNK_LEN


def test_chunked_in_float64_matches_reference_to_rounding():
    args = {k: v.double() if isinstance(v, torch.Tensor) else v for k, v in make_inputs(300, seed=3).items()}
    y = selective_scan_chunked(**args, chunk_len=16)
    assert y.dtype == torch.float64
    assert relative_error(y, selective_scan_ref(**args)) < 1e-12


def test_large_steps_underflow_instead_of_overflowing():
    """|delta * A| up to 16 * 60 and zero deltas: finite output, still accurate."""
    args = make_inputs(1000, max_delta=60.0, seed=11)
    args["delta"][..., 100:300] = -30.0  # softplus ~ 1e-13: steps that barely move the state
    y64 = float64_truth(args)
    y = selective_scan_chunked(**args)
    assert torch.isfinite(y).all()
    assert relative_error(y, y64) <= FP32_TOLERANCE


def test_three_dim_B_C_are_one_group():
    args = make_inputs(50, groups=1, seed=5)
    y4 = selective_scan_chunked(**args)
    args.update(B=args["B"][:, 0], C=args["C"][:, 0])
    torch.testing.assert_close(selective_scan_chunked(**args), y4, rtol=0, atol=0)


def test_low_precision_input_returns_its_dtype():
    """bf16 in, bf16 out, computed in fp32: equal to the fp32 scan of the rounded inputs."""
    half = {k: v.bfloat16() if isinstance(v, torch.Tensor) else v for k, v in make_inputs(64, seed=6).items()}
    y = selective_scan_chunked(**half)
    assert y.dtype == torch.bfloat16
    rounded = {k: v.float() if isinstance(v, torch.Tensor) else v for k, v in half.items()}
    assert relative_error(y.float(), selective_scan_chunked(**rounded).double()) < 1e-2


def test_batch_entries_are_independent():
    args = make_inputs(40, batch=3, seed=8)
    y = selective_scan_chunked(**args, chunk_len=8)
    one = {k: v[1:2] if isinstance(v, torch.Tensor) and v.dim() >= 3 else v for k, v in args.items()}
    torch.testing.assert_close(y[1:2], selective_scan_chunked(**one, chunk_len=8), rtol=1e-6, atol=1e-6)


def test_stable_softplus_equals_torch_softplus():
    """Same values and gradients as F.softplus (threshold 20 included), finite far out."""
    x = torch.cat([torch.linspace(-100, 100, 2001, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)])
    x.requires_grad_(True)
    ours, theirs = stable_softplus(x), F.softplus(x)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)
    (g_ours,) = torch.autograd.grad(ours.sum(), x)
    (g_theirs,) = torch.autograd.grad(theirs.sum(), x)
    torch.testing.assert_close(g_ours, g_theirs, rtol=1e-12, atol=1e-12)
    assert torch.isfinite(stable_softplus(torch.tensor([-1e4, 1e4]))).all()


# --- gradients -------------------------------------------------------------------------------


def _grads(fn, args: dict, weight: torch.Tensor) -> dict[str, torch.Tensor]:
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in args.items() if isinstance(v, torch.Tensor)}
    y = fn(**{**args, **leaves})
    (y * weight).sum().backward()
    return {k: v.grad for k, v in leaves.items()}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("options", [False, True], ids=["plain", "D-z-bias-softplus"])
def test_chunked_gradients_match_reference(options, dtype):
    args = make_inputs(37, groups=2, batch=2, dim=4, n_state=3, options=options, seed=21)
    args = {k: v.to(dtype) if isinstance(v, torch.Tensor) else v for k, v in args.items()}
    weight = torch.randn(2, 4, 37, generator=torch.Generator().manual_seed(1), dtype=dtype)
    ours = _grads(lambda **a: selective_scan_chunked(**a, chunk_len=8), args, weight)
    truth = _grads(selective_scan_ref, args, weight)
    assert set(ours) == {n for n in ARG_NAMES if args.get(n) is not None}
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    for name in ours:
        error = relative_error(ours[name], truth[name].double())
        assert error <= tol, f"grad of {name}: relative error {error:.2e}"


def test_chunked_passes_gradcheck():
    args = make_inputs(10, groups=2, dim=2, n_state=2, seed=4)
    tensors = {k: v.double().requires_grad_(True) for k, v in args.items() if isinstance(v, torch.Tensor)}
    names = list(tensors)

    def fn(*xs):
        return selective_scan_chunked(**{**args, **dict(zip(names, xs))}, chunk_len=3)

    assert torch.autograd.gradcheck(fn, tuple(tensors.values()))


# --- ONNX export -----------------------------------------------------------------------------


def test_chunked_exports_to_standard_onnx_for_any_length(tmp_path):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    args = make_inputs(100, seed=9)
    names = ["u", "delta", "B", "C", "z"]

    class Scan(torch.nn.Module):
        def forward(self, u, delta, B, C, z):
            return selective_scan_chunked(
                u, delta, args["A"], B, C, D=args["D"], z=z, delta_bias=args["delta_bias"], delta_softplus=True
            )

    path = tmp_path / "scan.onnx"
    axes = {n: {0: "batch", (3 if n in ("B", "C") else 2): "length"} for n in names}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Scan(),
            tuple(args[n] for n in names),
            str(path),
            input_names=names,
            output_names=["y"],
            dynamic_axes={**axes, "y": {0: "batch", 2: "length"}},
            opset_version=17,
            dynamo=False,
        )
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    op_types = {node.op_type for node in model.graph.node}
    assert sum(node.op_type != "Constant" for node in model.graph.node) < 800  # a few hundred nodes
    assert not op_types & {"Loop", "Scan", "If"}
    assert {node.domain for node in model.graph.node} <= {"", "ai.onnx"}
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for length, batch in ((100, 1), (7, 2), (1000, 1)):  # shorter than a chunk, and many chunks
        fresh = make_inputs(length, batch=batch, seed=length)
        fresh.update(A=args["A"], D=args["D"], delta_bias=args["delta_bias"])
        (y,) = session.run(None, {n: fresh[n].numpy() for n in names})
        assert relative_error(torch.from_numpy(y), float64_truth(fresh)) <= FP32_TOLERANCE


# --- argument checks -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, word",
    [
        (dict(B=torch.zeros(1, 4, 15, 20)), "B must be"),
        (dict(C=torch.zeros(1, 3, 16, 20)), "groups"),
        (dict(D=torch.zeros(7)), "D must be"),
        (dict(delta=torch.zeros(1, 8, 19)), "delta must"),
        (dict(A=torch.zeros(8, 16, dtype=torch.int64)), "floating-point"),
    ],
)
def test_chunked_names_the_bad_argument(change, word):
    args = {**make_inputs(20, seed=1), **change}
    with pytest.raises(ValueError, match=word):
        selective_scan_chunked(**args)


# --- dispatch --------------------------------------------------------------------------------


def test_unknown_implementation_is_a_value_error():
    args = make_inputs(5)
    with pytest.raises(ValueError, match="unknown selective-scan implementation 'nope'"):
        selective_scan(**args, impl="nope")
    with pytest.raises(ValueError, match="nope"):
        set_default_impl("nope")
    with pytest.raises(ValueError, match="nope"), use_impl("nope"):
        pass


def test_use_impl_switches_and_restores_even_on_error():
    before = get_default_impl()
    args = make_inputs(5)
    with use_impl("reference"):
        assert get_default_impl() == "reference"
        assert resolve_impl(args["u"]) == "reference"
    assert get_default_impl() == before
    with pytest.raises(KeyError), use_impl("chunked"):
        assert get_default_impl() == "chunked"
        raise KeyError("boom")
    assert get_default_impl() == before


def test_auto_picks_chunked_on_cpu():
    assert {"reference", "chunked", "mamba_ssm"} <= set(available_impls())
    with use_impl("auto"):
        assert resolve_impl(torch.zeros(1, 2, 3)) == "chunked"


def test_mamba_ssm_is_unavailable_here_and_says_why():
    u = make_inputs(5)["u"]
    assert not mamba_adapter.mamba_ssm_available(u)
    with pytest.raises(RuntimeError, match="'mamba_ssm' cannot run") as info:
        selective_scan(**make_inputs(5), impl="mamba_ssm")
    if importlib.util.find_spec("mamba_ssm") is None:
        assert "pip install mamba-ssm" in str(info.value)
    else:
        assert "CUDA" in str(info.value)
    with pytest.raises(RuntimeError, match="mamba_ssm"):
        mamba_adapter.selective_scan_mamba(**make_inputs(5))


def test_mamba_adapter_passes_mamba_ssm_its_dtypes(monkeypatch):
    """With a stand-in mamba_ssm: the import path is right and the kernel gets the dtypes it checks."""
    seen = {}

    def fake_selective_scan_fn(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
        seen.update(u=u.dtype, delta=delta.dtype, A=A.dtype, B=B.dtype, D=D.dtype, bias=delta_bias.dtype)
        return selective_scan_ref(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus)

    interface = types.ModuleType("mamba_ssm.ops.selective_scan_interface")
    interface.selective_scan_fn = fake_selective_scan_fn
    for name, module in (
        ("mamba_ssm", types.ModuleType("mamba_ssm")),
        ("mamba_ssm.ops", types.ModuleType("x")),
        ("mamba_ssm.ops.selective_scan_interface", interface),
    ):
        monkeypatch.setitem(sys.modules, name, module)
    mamba_adapter._load.cache_clear()
    try:
        assert mamba_adapter._load()[0] is fake_selective_scan_fn
        args = make_inputs(12, seed=2)
        assert not mamba_adapter.mamba_ssm_available(args["u"])  # CPU tensor
        assert "CUDA" in mamba_adapter.mamba_ssm_unavailable_reason(args["u"])
        monkeypatch.setattr(mamba_adapter, "mamba_ssm_available", lambda u: True)
        half = {k: v.half() if isinstance(v, torch.Tensor) else v for k, v in args.items()}
        y = mamba_adapter.selective_scan_mamba(**{**half, "u": half["u"].float()})
        assert seen == dict(
            u=torch.float32, delta=torch.float32, A=torch.float32, B=torch.float32, D=torch.float32, bias=torch.float32
        )
        assert y.dtype == torch.float32
    finally:
        mamba_adapter._load.cache_clear()
