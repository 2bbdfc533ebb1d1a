"""fusion_edge.ops.ln_pool (BiAttn's pooled LayerNorm and ECA's mean in one pass) without a GPU: the op's CPU
kernel through the CPU route, its registration and the DVSS block that uses it (the kernel itself: GPU tests)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fusion_edge.models.dvss import DVSSBlock
from fusion_edge.ops import ln_pool as ln_pool_module
from fusion_edge.ops import torch_ops
from fusion_edge.ops.ln_pool import ln_pool


@pytest.fixture(autouse=True)
def op_enabled(monkeypatch):
    """The op is on by default; a test that switches it off gets it back."""
    monkeypatch.setattr(ln_pool_module, "ENABLED", True)


def _plain(x, weight, bias, eps):
    pixels = tuple(range(1, x.dim() - 1))
    return F.layer_norm(x, x.shape[-1:], weight, bias, eps).mean(dim=pixels), x.mean(dim=pixels)


@pytest.mark.parametrize("shape", [(1, 1, 1, 96), (2, 5, 7, 136), (3, 11, 192), (2, 300, 16)])
def test_op_route_matches_the_plain_expression(shape):
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(*shape, generator=gen) * 2 + 0.5
    weight, bias = torch.randn(shape[-1], generator=gen), torch.randn(shape[-1], generator=gen)
    with torch.no_grad(), torch_ops.cpu_route():
        pooled, raw = ln_pool(x, weight, bias, 1e-5, with_raw=True)
        only, none = ln_pool(x, weight, bias, 1e-5)
    want_pooled, want_raw = _plain(x, weight, bias, 1e-5)
    torch.testing.assert_close(pooled, want_pooled, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(raw, want_raw, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(only, want_pooled, rtol=1e-5, atol=1e-6)
    assert none is None


def test_op_is_registered_and_passes_opcheck():
    assert ln_pool_module._OP_REGISTERED
    x = torch.randn(2, 4, 5, 96)
    weight, bias = torch.randn(96), torch.randn(96)
    torch.library.opcheck(torch.ops.fusion_edge.ln_pool.default, (x, weight, bias, 1e-5, True))
    torch.library.opcheck(torch.ops.fusion_edge.ln_pool.default, (x.half(), None, None, 1e-5, False))


def test_op_cpu_kernel_is_the_means_in_the_input_type():
    """The op's CPU kernel (the GPU kernels' contract): (B, 1 + with_raw, C) in x's type, the LayerNorm's weight
    and bias applied to the first row only."""
    x = torch.randn(2, 4, 5, 32) * 3 + 1
    weight, bias = torch.randn(32), torch.randn(32)
    both = torch.ops.fusion_edge.ln_pool(x, weight, bias, 1e-5, True)
    assert both.shape == (2, 2, 32) and both.dtype == torch.float32
    normed, raw = _plain(x, weight, bias, 1e-5)
    torch.testing.assert_close(both[:, 0], normed, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(both[:, 1], raw, rtol=1e-5, atol=1e-6)
    half = torch.ops.fusion_edge.ln_pool(x.half(), None, None, 1e-5, False)
    assert half.shape == (2, 1, 32) and half.dtype == torch.float16


def test_plain_path_where_the_op_does_not_apply():
    """Gradients, rows narrower than MIN_CHANNELS, rows that are not whole 16-byte words or wider than the
    kernel reads, parameters of another type and a disabled op keep the plain expression; inference on the rest
    takes the op (here through the CPU route)."""
    weight = torch.ones(96)
    with torch.no_grad(), torch_ops.cpu_route():
        assert ln_pool_module._kernel_applies(torch.randn(1, 2, 3, 96), weight, None)
        assert ln_pool_module._kernel_applies(torch.randn(1, 2, 3, 64).half(), weight[:64].half(), None)
        assert not ln_pool_module._kernel_applies(torch.randn(1, 2, 3, 64).half(), weight[:64], None)  # types
        assert not ln_pool_module._kernel_applies(torch.randn(1, 2, 3, 8), weight[:8], None)
        assert not ln_pool_module._kernel_applies(torch.randn(1, 2, 3, 130), None, None)
        assert not ln_pool_module._kernel_applies(torch.randn(1, 2, 516), None, None)
        assert ln_pool_module._kernel_applies(torch.randn(1, 2, 1024).half(), None, None)
        ln_pool_module.ENABLED = False  # the fixture restores it
        assert not ln_pool_module._kernel_applies(torch.randn(1, 2, 3, 96), weight, None)
    x = torch.randn(1, 3, 4, 96, requires_grad=True)
    with torch_ops.cpu_route():
        assert not ln_pool_module._kernel_applies(x, weight, None)
        pooled, _ = ln_pool(x, weight, torch.zeros(96), 1e-5)
    pooled.sum().backward()
    assert x.grad is not None
    with pytest.raises(ValueError, match=r"ln_pool: x must be \(B, \.\.\., C\)"):
        ln_pool(torch.zeros(4), None, None, 1e-5)


def test_dvss_block_is_the_reference_formulation():
    """The block's forward (BiAttn and ECA reading one ln_pool pass) equals the reference's S = SS2D(LN(F)),
    Q = LDC(S + ECA(S)), Z = F + BiAttn(S) + BiAttn(Q), F' = Z + MLP(LN(Z)) written with the modules' own
    forwards, with the plain expression and through the op."""
    torch.manual_seed(3)
    block = DVSSBlock(96).eval()
    x = torch.randn(2, 5, 7, 96)
    with torch.no_grad():
        s = block.op(block.norm(x))
        s_chw = s.permute(0, 3, 1, 2)
        q = block.conv_branch(s_chw + block.self_attention_cross_channel(s_chw)).permute(0, 2, 3, 1)
        z = x + block.se(s) + block.se(q)
        reference = z + block.mlp(block.norm2(z))
        plain = block(x)
        with torch_ops.cpu_route():
            routed = block(x)
    torch.testing.assert_close(plain, reference, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(routed, reference, rtol=1e-4, atol=1e-5)
