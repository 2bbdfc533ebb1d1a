"""Model behaviour beyond conformance: presets, any input size, input errors, LDC fold, checkpoints."""

from __future__ import annotations

import pytest
import torch

from fusion_edge import create_model, load_checkpoint
from fusion_edge.models import PRESETS, FusionMamba
from fusion_edge.models.fusion_mamba import RESIDUAL_KEY, RESIDUAL_MAX_KEY
from fusion_edge.models.ldc import LDC

SMALL = dict(dims=[8, 16, 32, 64], depths=[1, 1, 1, 1], depths_decoder=[1, 1, 1, 1])


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    return FusionMamba(**SMALL).eval()


def test_presets_build_and_edge_is_small():
    assert set(PRESETS) >= {"paper", "tiny", "edge"}
    with torch.device("meta"):
        edge = create_model("edge")
        tiny = create_model("tiny")
    trainable = sum(p.numel() for p in edge.parameters() if p.requires_grad)
    assert trainable <= 3_000_000
    assert [len(s.blocks) for s in tiny.layers] == [2, 2, 1, 2]
    assert [len(s.blocks) for s in tiny.layers_up] == [2, 1, 2, 2]
    with pytest.raises(ValueError, match="unknown preset"):
        create_model("huge")


@pytest.mark.parametrize("size", [(480, 640), (512, 640), (250, 333), (20, 45)])
def test_any_input_size(small_model, size):
    x1, x2 = torch.rand(1, 1, *size), torch.rand(1, 1, *size)
    with torch.no_grad():
        out = small_model(x1, x2)
    assert out.shape == (1, 1, *size)
    assert torch.isfinite(out).all()


def test_padding_is_reflect_and_cropped(small_model):
    """A 250x333 input gives the crop of the model run on its own reflect-padded 256x352 version."""
    x1, x2 = torch.rand(1, 1, 250, 333), torch.rand(1, 1, 250, 333)
    pad = (0, 352 - 333, 0, 256 - 250)
    p1 = torch.nn.functional.pad(x1, pad, mode="reflect")
    p2 = torch.nn.functional.pad(x2, pad, mode="reflect")
    with torch.no_grad():
        direct = small_model(x1, x2)
        padded = small_model(p1, p2)[..., :250, :333]
    assert torch.allclose(direct, padded, atol=1e-6)


@pytest.mark.parametrize(
    "x1, x2, message",
    [
        (torch.rand(1, 1, 64, 64), torch.rand(1, 1, 64, 96), "shapes differ"),
        (torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64), "3 channels"),
        (torch.rand(64, 64), torch.rand(64, 64), r"\(B, C, H, W\)"),
        (torch.full((1, 1, 64, 64), float("nan")), torch.rand(1, 1, 64, 64), "NaN"),
        (torch.rand(1, 1, 64, 64), torch.full((1, 1, 64, 64), float("inf")), "infrared"),
        (torch.zeros(1, 1, 64, 64, dtype=torch.uint8), torch.zeros(1, 1, 64, 64, dtype=torch.uint8), "floating"),
    ],
)
def test_bad_inputs_raise_value_error(small_model, x1, x2, message):
    with pytest.raises(ValueError, match=message):
        small_model(x1, x2)


def test_depthwise_convs_before_the_scan_get_dense_channels_last_maps(small_model, monkeypatch):
    """The scan reads a channels-last map as it is: the conv in front of it must see (and so write) a dense
    channels-last map, not a strided view of the in_proj output (cuDNN would copy it first), and the
    scan's output keeps that layout, so the LayerNorm after it reads rows."""
    import torch.nn.functional as F

    from fusion_edge.ops import es2d

    seen, scanned = [], []
    library_conv = F.conv2d
    library_scan = es2d.es2d_scan_unfused

    def recording_conv(x, weight, *args, **kwargs):
        if weight.shape[1] == 1 and weight.shape[0] > 1:  # the depthwise convs
            seen.append(x.is_contiguous(memory_format=torch.channels_last))
        return library_conv(x, weight, *args, **kwargs)

    def recording_scan(x, *args, **kwargs):
        scanned.append(x.is_contiguous(memory_format=torch.channels_last))
        return library_scan(x, *args, **kwargs)

    monkeypatch.setattr(F, "conv2d", recording_conv)
    monkeypatch.setattr(es2d, "es2d_scan_unfused", recording_scan)
    with torch.no_grad():
        small_model(torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32))
    blocks = sum(len(stage.blocks) for stage in [*small_model.layers, *small_model.layers_up])
    assert len(seen) == blocks + 2 * (len(small_model.Cross_block)) and all(seen)
    assert len(scanned) >= blocks and all(scanned)


def test_ldc_fold_is_exact():
    torch.manual_seed(1)
    ldc = LDC(6, 5)
    with torch.no_grad():
        for p in (ldc.conv.weight, ldc.learnable_mask, ldc.learnable_theta, ldc.base_mask):
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(2, 6, 17, 23)
    with torch.no_grad():
        assert (ldc(x) - ldc.fold()(x)).abs().max() < 1e-6


def test_ldc_only_changes_centre_tap_with_unit_mask():
    ldc = LDC(3, 3)
    weight = ldc.effective_weight().detach()
    base = ldc.conv.weight.detach()
    off_centre = torch.ones(3, 3, dtype=torch.bool)
    off_centre[1, 1] = False
    assert torch.equal(weight[:, :, off_centre], base[:, :, off_centre])
    expected = base[:, :, 1, 1] * (1 - 0.5 * base.sum(dim=(2, 3)))
    assert torch.allclose(weight[:, :, 1, 1], expected, atol=1e-7)


def test_for_inference_keeps_output_and_training_model_intact(small_model):
    x1, x2 = torch.rand(1, 1, 64, 64), torch.rand(1, 1, 64, 64)
    fast = small_model.for_inference()
    with torch.no_grad():
        assert (fast(x1, x2) - small_model(x1, x2)).abs().max() < 1e-4
    assert isinstance(small_model.Cross_block[0], torch.nn.Module)
    assert "Cross_block.0.ln_1.weight" in small_model.state_dict()
    assert sum(p.numel() for p in fast.parameters()) < sum(p.numel() for p in small_model.parameters())


def test_gradients_reach_parameters():
    torch.manual_seed(0)
    model = FusionMamba(**SMALL)
    out = model(torch.rand(2, 1, 64, 64), torch.rand(2, 1, 64, 64))
    out.mean().backward()
    grad = model.layers[0].blocks[0].op.A_logs.grad
    assert grad is not None and grad.abs().sum() > 0
    # the reference's dead weights get no gradient
    assert model.Cross_block[0].ln_1.weight.grad is None


def test_checkpoint_round_trip_infers_config(tmp_path, small_model):
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in small_model.state_dict().items()}}, path)
    loaded = load_checkpoint(path).eval()
    assert loaded.config["dims"] == SMALL["dims"]
    x1, x2 = torch.rand(1, 1, 64, 64), torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x1, x2), small_model(x1, x2))


def test_checkpoint_preset_mismatch_is_clear(tmp_path, small_model):
    path = tmp_path / "ckpt.pth"
    torch.save(small_model.state_dict(), path)
    with pytest.raises(ValueError, match="does not match preset 'edge'"):
        load_checkpoint(path, preset="edge")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path / "junk.pth")


def test_legacy_checkpoint_keys_are_upgraded(small_model):
    state = {}
    for key, value in small_model.state_dict().items():
        key = key.replace(".Cross_layer.", ".DFEM.")
        key = key.replace(".self_attention_cross_spatial.", ".self_attention_cross_eca.")
        state[key] = value
    state["Cross_block.1.norm2.weight"] = torch.ones(16)
    with pytest.warns(UserWarning, match="FFN"):
        legacy = load_checkpoint(state).eval()
    assert legacy.residual_scale == 1.0
    x1, x2 = torch.rand(1, 1, 64, 64), torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        diff = legacy(x1, x2) - small_model(x1, x2)
    assert torch.allclose(diff, -(x1 + x2), atol=1e-5)


def test_residual_scale_travels_with_the_weights(tmp_path):
    # The edge preset adds 1*(x1 + x2); its state_dict says so, and a plain save/load keeps it.
    edge = create_model("edge", drop_path_rate=0.0).eval()
    state = edge.state_dict()
    assert float(state[RESIDUAL_KEY]) == 1.0
    torch.save(state, tmp_path / "edge.pt")
    loaded = load_checkpoint(tmp_path / "edge.pt", preset="edge").eval()
    assert loaded.residual_scale == 1.0 and loaded.preset == "edge"
    x1, x2 = torch.rand(1, 1, 64, 64), torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x1, x2), edge(x1, x2))
        # the head plus exactly one copy of the sources
        out, head = _output_and_head(edge, x1, x2)
        assert torch.allclose(out, head + x1 + x2, atol=1e-6)
    # an explicit residual_scale wins over the stored one
    assert load_checkpoint(state, residual_scale=2.0).residual_scale == 2.0
    # Reference-style weights keep the reference's layout: no extra key, residual 2.
    assert RESIDUAL_KEY not in create_model("tiny").state_dict()
    # Edge-shaped weights saved without the key (residual 2) are not the edge preset.
    old = {k: v for k, v in state.items() if k != RESIDUAL_KEY}
    assert load_checkpoint(old).residual_scale == 2.0
    with pytest.raises(ValueError, match="residual_scale: checkpoint 2.0 vs preset 1.0"):
        load_checkpoint(old, preset="edge")


def test_max_residual_is_head_plus_the_per_pixel_maximum_and_travels_with_the_weights(tmp_path):
    model = create_model("edge", drop_path_rate=0.0, residual="max").eval()
    state = model.state_dict()
    assert RESIDUAL_MAX_KEY in state and RESIDUAL_KEY not in state
    x1, x2 = torch.rand(1, 1, 64, 64), torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        out, head = _output_and_head(model, x1, x2)
        assert torch.allclose(out, head + torch.maximum(x1, x2), atol=1e-6)
        torch.save(state, tmp_path / "max.pt")
        loaded = load_checkpoint(tmp_path / "max.pt", preset="edge").eval()
        assert loaded.residual == "max" and loaded.preset == "edge"
        assert torch.equal(loaded(x1, x2), model(x1, x2))
    # the sum-residual edge model is unchanged: no "residual" entry in its config
    assert "residual" not in create_model("edge").config and create_model("edge").residual == "sum"
    with pytest.raises(ValueError, match="residual must be one of sum, max"):
        create_model("edge", residual="mean")


def _output_and_head(model, x1, x2):
    """The model's output and its head (final_conv's output) from the same forward."""
    captured = {}
    handle = model.final_conv.register_forward_hook(lambda mod, inp, out: captured.setdefault("head", out))
    try:
        out = model(x1, x2)
    finally:
        handle.remove()
    return out, captured["head"]


def test_packaged_weights_load_by_name():
    from fusion_edge.inference import default_weights_path
    from fusion_edge.models.packaged import PACKAGED_WEIGHTS, packaged_weights_path, resolve_checkpoint

    assert packaged_weights_path("edge") == default_weights_path()
    previous = load_checkpoint("edge-sum", preset="edge")  # the previous default: head + (vis + ir)
    assert previous.residual == "sum" and previous.residual_scale == 1.0
    assert resolve_checkpoint("edge-sum") == packaged_weights_path("edge-sum")
    assert resolve_checkpoint("no/such.pt").name == "such.pt" and packaged_weights_path("nope") is None
    with pytest.raises(FileNotFoundError, match="packaged weights by name: " + ", ".join(PACKAGED_WEIGHTS)):
        load_checkpoint("nope")


def test_packaged_weights_are_the_edge_preset():
    from fusion_edge.inference import default_weights_path

    model = load_checkpoint(default_weights_path(), preset="edge")
    assert model.residual == "twoscale"  # head + the two-scale prior: README, "Default weights"
