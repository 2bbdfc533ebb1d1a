"""The two-scale fusion prior (fusion_edge.models.two_scale) and the model residual built on it."""

import pytest
import torch

from fusion_edge.models import create_model
from fusion_edge.models.checkpoint import load_checkpoint
from fusion_edge.models.fusion_mamba import RESIDUAL_KEY, RESIDUAL_TWOSCALE_KEY
from fusion_edge.models.two_scale import DETAIL_GAIN, TwoScaleFusion, blur_matrix, gaussian_taps


def test_flat_sources_fuse_to_their_average():
    prior = TwoScaleFusion()
    vis, ir = torch.full((2, 1, 40, 52), 0.7), torch.full((2, 1, 40, 52), 0.2)
    assert torch.allclose(prior(vis, ir), torch.full_like(vis, 0.45), atol=1e-6)


def test_detail_comes_from_the_more_active_source():
    torch.manual_seed(0)
    h, w = 96, 96
    texture = (torch.rand(1, 1, h, w) - 0.5) * 0.2  # fine visible texture
    ramp = torch.linspace(0.2, 0.8, w).expand(1, 1, h, w).contiguous()  # smooth infrared
    prior = TwoScaleFusion()
    vis = 0.5 + texture
    fused = prior(vis, ramp)
    detail = fused - prior.blur(fused, "base")
    vis_detail = vis - prior.blur(vis, "base")
    inner = (..., slice(24, -24), slice(24, -24))
    # the visible texture is the detail, amplified by the gain; the ramp adds none
    assert torch.allclose(detail[inner], DETAIL_GAIN * vis_detail[inner], atol=0.02)
    # swapping which source is textured swaps where the detail comes from
    fused_swapped = prior(ramp, vis)
    detail_swapped = fused_swapped - prior.blur(fused_swapped, "base")
    assert torch.allclose(detail_swapped[inner], detail[inner], atol=0.02)


def test_images_of_a_batch_are_fused_independently():
    torch.manual_seed(1)
    vis, ir = torch.rand(3, 1, 48, 64), torch.rand(3, 1, 48, 64)
    prior = TwoScaleFusion()
    batched = prior(vis, ir)
    for i in range(3):
        assert torch.allclose(batched[i : i + 1], prior(vis[i : i + 1], ir[i : i + 1]), atol=1e-6)


def test_prior_runs_in_float32_whatever_the_dtype_or_autocast():
    torch.manual_seed(2)
    vis, ir = torch.rand(1, 1, 64, 64), torch.rand(1, 1, 64, 64)
    prior = TwoScaleFusion()
    ref = prior(vis, ir)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = prior(vis, ir)
    assert under_autocast.dtype == torch.float32 and torch.allclose(under_autocast, ref, atol=1e-6)
    half = prior(vis.to(torch.bfloat16), ir.to(torch.bfloat16))
    assert half.dtype == torch.bfloat16
    # inputs and result rounded to bfloat16 (a few grey levels on noise), not the blurs' accumulated error
    assert (half.float() - ref).abs().max() < 0.05


@pytest.mark.parametrize("n", [1, 2, 5, 48, 97, 130])
@pytest.mark.parametrize("sigma", [2.0, 16.0])
def test_blur_matrix_is_the_replicate_padded_convolution(n, sigma):
    torch.manual_seed(n)
    taps = gaussian_taps(sigma)
    r = taps.numel() // 2
    x = torch.rand(3, n)
    where = (torch.arange(n)[:, None] + torch.arange(-r, r + 1)[None, :]).clamp(0, n - 1)
    reference = (x[:, where] * taps).sum(-1)
    assert torch.allclose(x @ blur_matrix(n, taps).T, reference, atol=1e-6)


def test_a_half_precision_model_keeps_a_float32_prior():
    """model.half() / .to(bfloat16) casts the prior's constants too; the prior still computes in float32."""
    torch.manual_seed(3)
    prior = TwoScaleFusion()
    vis, ir = torch.rand(1, 1, 40, 56), torch.rand(1, 1, 40, 56)
    ref = prior(vis, ir)
    low = prior.to(torch.bfloat16)(vis.to(torch.bfloat16), ir.to(torch.bfloat16))
    assert low.dtype == torch.bfloat16 and (low.float() - ref).abs().max() < 0.05


def test_half_inputs_blur_with_float16_products_within_their_output_rounding():
    """float16 inputs (a float16 model at inference) take the tensor-core path: float16 operands. The
    result must match the float32 prior of the same inputs to within the float16 output's rounding."""
    gen = torch.Generator().manual_seed(4)
    vis, ir = torch.rand(2, 1, 72, 88, generator=gen), torch.rand(2, 1, 72, 88, generator=gen)
    vis[:, :, 20:40, 30:60] += 0.3 * torch.rand(20, 30, generator=gen)  # texture the blurs must carry over
    vis, ir = vis.clamp(0, 1).half(), ir.half()
    prior = TwoScaleFusion()
    exact = prior(vis.float(), ir.float())
    half = prior(vis, ir)
    assert half.dtype == torch.float16
    assert {key[-1] for key in prior._matrices} == {torch.float32, torch.float16}
    error = (half.float() - exact).abs()
    # a float16 output alone rounds by up to 2^-11 of values near 1 (5e-4); the products add less than that
    # (measured: max 7.7e-4, mean 1.3e-4 here; on the TNO pairs max 8.3e-4, mean at most 1.4x the output's)
    assert error.max() < 2e-3 and error.mean() < 3e-4, (error.max(), error.mean())


def test_gaussian_taps_are_normalised_and_three_sigma_wide():
    taps = gaussian_taps(8.0)
    assert taps.numel() == 49 and abs(float(taps.sum()) - 1.0) < 1e-6 and int(taps.argmax()) == 24


def test_twoscale_model_is_head_plus_the_prior_of_the_unpadded_pair_and_travels_with_the_weights(tmp_path):
    model = create_model("edge", drop_path_rate=0.0, residual="twoscale").eval()
    state = model.state_dict()
    assert RESIDUAL_TWOSCALE_KEY in state and RESIDUAL_KEY not in state
    assert not any("taps" in k or "sobel" in k for k in state)  # the prior's constants are not weights
    with torch.no_grad():
        model.final_conv.weight.zero_()
        model.final_conv.bias.zero_()
        for shape in ((64, 64), (50, 70)):  # 50x70 is padded to 64x96 inside; the prior must not see it
            x1, x2 = torch.rand(1, 1, *shape), torch.rand(1, 1, *shape)
            assert torch.equal(model(x1, x2), model.prior(x1, x2))
        torch.save(model.state_dict(), tmp_path / "twoscale.pt")
        loaded = load_checkpoint(tmp_path / "twoscale.pt", preset="edge").eval()
        assert loaded.residual == "twoscale" and loaded.config["residual"] == "twoscale"
        assert torch.equal(loaded(x1, x2), model(x1, x2))
    with pytest.raises(ValueError, match="residual must be one of sum, max, twoscale"):
        create_model("edge", residual="mean")


def test_export_wrapper_adds_the_prior_of_the_unpadded_pair():
    from export.model_prep import ExportWrapper

    model = create_model("edge", drop_path_rate=0.0, residual="twoscale").eval()
    wrapper = ExportWrapper(model)
    x1, x2 = torch.rand(1, 1, 50, 70), torch.rand(1, 1, 50, 70)
    with torch.no_grad():
        assert torch.allclose(wrapper(x1, x2), model(x1, x2).clamp(0, 1), atol=1e-6)
