"""fc1 + GELU as one GEMM with the GELU in its epilogue (fusion_edge.ops.linear_gelu)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fusion_edge.models.mlp import Mlp
from fusion_edge.ops import linear_gelu as lg

pytestmark = pytest.mark.skipif(not lg._OP_REGISTERED, reason="torch has no torch.library.custom_op")


@pytest.fixture
def gelu_mode():
    """Set the mode for one test; the default comes back after it."""
    previous = lg.gelu_epilogue_mode()
    yield lg.set_gelu_epilogue
    lg.set_gelu_epilogue(previous)


def layer(k: int = 24, n: int = 96, dtype: torch.dtype = torch.float32, device: str = "cpu"):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 7, k, generator=gen, dtype=torch.float64) * 2
    w = torch.randn(n, k, generator=gen, dtype=torch.float64) / k ** 0.5
    b = torch.randn(n, generator=gen, dtype=torch.float64)
    return [t.to(device, dtype) for t in (x, w, b)]


def test_the_op_is_the_tanh_gelu_of_the_product_and_within_5e4_of_the_exact_gelu():
    x, w, b = layer(dtype=torch.float64)
    out = torch.ops.fusion_edge.linear_gelu(x, w, b)
    product = x @ w.T + b
    assert out.shape == (2, 5, 7, 96) and out.is_contiguous()
    torch.testing.assert_close(out, F.gelu(product, approximate="tanh"), rtol=0, atol=1e-12)
    gap = (out - F.gelu(product)).abs().max().item()
    assert 1e-6 < gap <= 4.8e-4, gap  # the two forms differ, by no more than the documented bound


def test_the_op_passes_opcheck():
    result = torch.library.opcheck(torch.ops.fusion_edge.linear_gelu.default, layer())
    assert set(result.values()) == {"SUCCESS"}, result


def test_auto_keeps_the_exact_gelu_off_cuda_and_off_half_precision(gelu_mode):
    gelu_mode("auto")
    x, w, b = layer()
    with torch.no_grad():
        assert torch.equal(lg.linear_gelu(x, w, b), F.gelu(F.linear(x, w, b)))


def test_on_fuses_inference_calls_only(gelu_mode):
    gelu_mode("on")
    x, w, b = layer()
    with torch.no_grad():
        fused = lg.linear_gelu(x, w, b)
    torch.testing.assert_close(fused, F.gelu(F.linear(x, w, b), approximate="tanh"))
    # gradients wanted: the exact, differentiable layers (the op has no backward)
    w.requires_grad_(True)
    exact = lg.linear_gelu(x, w, b)
    assert torch.equal(exact.detach(), F.gelu(F.linear(x, w, b)).detach())
    exact.sum().backward()
    assert w.grad is not None and torch.isfinite(w.grad).all()
    # and the same without a bias: nothing to put in the epilogue
    with torch.no_grad():
        assert torch.equal(lg.linear_gelu(x, w, None), F.gelu(F.linear(x, w)))


def test_traced_graphs_keep_the_exact_gelu(gelu_mode):
    gelu_mode("on")
    mlp = Mlp(8, 32).eval()
    with torch.no_grad():  # where the op would otherwise apply
        graph = str(torch.jit.trace(mlp, torch.randn(1, 3, 4, 8), check_trace=False).inlined_graph)
    assert "fusion_edge::linear_gelu" not in graph and "aten::gelu" in graph


def test_off_and_bad_modes(gelu_mode):
    gelu_mode("off")
    x, w, b = layer()
    with torch.no_grad():
        assert torch.equal(lg.linear_gelu(x, w, b), F.gelu(F.linear(x, w, b)))
    with pytest.raises(ValueError, match="GELU epilogue mode must be one of"):
        lg.set_gelu_epilogue("fast")


def test_bad_shapes_and_dtypes_are_named():
    x, w, b = layer()
    with pytest.raises(ValueError, match=r"got x \(2, 5, 7, 24\), weight \(96, 23\)"):
        torch.ops.fusion_edge.linear_gelu(x, w[:, :23], b)
    with pytest.raises(ValueError, match="share a dtype"):
        torch.ops.fusion_edge.linear_gelu(x, w.double(), b)


def test_compiled_mlp_keeps_the_op_whole(gelu_mode):
    gelu_mode("on")
    torch.manual_seed(0)
    mlp = Mlp(16, 64).eval()
    x = torch.randn(1, 6, 5, 16)
    graphs = []

    def recorder(gm, example_inputs):
        graphs.append(gm.code)
        return gm.forward

    with torch.no_grad():
        eager = mlp(x)
        torch._dynamo.reset()
        compiled = torch.compile(mlp, fullgraph=True, backend=recorder)(x)
    assert any("fusion_edge.linear_gelu" in code for code in graphs), graphs
    torch.testing.assert_close(compiled, eager)
    with torch.no_grad():
        inductor = torch.compile(mlp, fullgraph=True)(x)
    torch.testing.assert_close(inductor, eager, rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
def test_gpu_half_mlp_runs_one_gemm_with_the_gelu_inside():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    torch.manual_seed(0)
    for dtype in (torch.float16, torch.bfloat16):
        x, w, b = layer(k=96, n=384, dtype=dtype, device="cuda")
        x = torch.randn(2, 64, 80, 96, device="cuda", dtype=dtype)
        with torch.no_grad():
            fused = lg.linear_gelu(x, w, b)
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
                lg.linear_gelu(x, w, b)
                torch.cuda.synchronize()
        truth = F.gelu(x.double() @ w.double().T + b.double())
        scale = truth.abs().max().item()
        assert fused.dtype == dtype and fused.shape == (2, 64, 80, 384)
        err = (fused.double() - truth).abs().max().item() / scale
        assert err < (5e-3 if dtype == torch.float16 else 2e-2), (dtype, err)
        kernels = [e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        # cuBLASLt applied the GELU: the GEMM is the one kernel (without the epilogue an elementwise GELU follows)
        assert len(kernels) == 1 and "elementwise" not in kernels[0], kernels
