"""Training: loss terms on analytic cases, the MS-SSIM quirk, the pair dataset and its errors,
a few-step run with checkpoint, resume and export, the CLI, and DDP on CPU (gloo)."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fusion_edge.train import (
    FusionLoss,
    RandomCropPairs,
    TrainConfig,
    clamp_unit,
    export_weights,
    find_pairs,
    msssim_reference,
    split_pairs,
    train,
)
from fusion_edge.train.data import FullImagePairs, pad_to
from fusion_edge.train.losses import MSSSIM_WEIGHTS, SobelGradient
from fusion_edge.train.schedule import learning_rate

REPO = Path(__file__).resolve().parents[1]
TINY = {"dims": 8, "depths": [1, 1, 1, 1], "depths_decoder": [1, 1, 1, 1]}


# ----------------------------------------------------------------------------- helpers
def smooth_image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    img = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 2.0)
    return (img - img.min()) / (img.max() - img.min())


def make_pairs(root: Path, count: int = 4, size: tuple[int, int] = (40, 52), seed: int = 0) -> Path:
    """``count`` pairs: grey PNG infrared, colour PNG visible, of ``size`` (h, w)."""
    rng = np.random.default_rng(seed)
    (root / "ir").mkdir(parents=True)
    (root / "vis").mkdir(parents=True)
    for i in range(count):
        base = smooth_image(rng, *size)
        cv2.imwrite(str(root / "ir" / f"pair{i}.png"), (base * 255).astype(np.uint8))
        vis = np.stack([1 - base, base, 0.5 * base], axis=-1)
        cv2.imwrite(str(root / "vis" / f"pair{i}.png"), (vis * 255).astype(np.uint8))
    return root


def numpy_ssim_cs(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """SSIM and cs of one level, written out directly: valid windows, Gaussian of size
    min(11, h, w) centred at size // 2 with sigma 1.5, range 1 (images in [0, 1])."""
    size = min(11, *a.shape)
    g = np.exp(-((np.arange(size) - size // 2) ** 2) / (2 * 1.5**2))
    g /= g.sum()
    win = np.outer(g, g)
    view = np.lib.stride_tricks.sliding_window_view

    def blur(x: np.ndarray) -> np.ndarray:
        return np.einsum("ijkl,kl->ij", view(x, (size, size)), win)

    c1, c2 = 0.01**2, 0.03**2
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    cs_map = (2 * cov + c2) / (var_a + var_b + c2)
    ssim_map = (2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1) * cs_map
    return float(ssim_map.mean()), float(cs_map.mean())


def numpy_msssim_levels(a: np.ndarray, b: np.ndarray) -> list[tuple[float, float]]:
    levels = []
    for _ in MSSSIM_WEIGHTS:
        levels.append(numpy_ssim_cs(a, b))
        h, w = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
        a = a[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
        b = b[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    return levels


# ----------------------------------------------------------------------------- loss
def test_loss_is_zero_when_all_three_images_are_identical():
    img = torch.from_numpy(smooth_image(np.random.default_rng(1), 48, 64))[None, None].double()
    total, terms = FusionLoss()(img, img, img)
    assert float(terms["ssim"]) == pytest.approx(0.0, abs=1e-6)
    assert float(terms["int"]) == 0.0
    assert float(terms["grad"]) == 0.0
    assert float(total) == pytest.approx(0.0, abs=1e-5)


# Backward nodes that read values back to the host (prod's zero check, masked/nonzero indexing):
# one of them in the loss's graph makes the training step impossible to capture as a CUDA graph.
HOST_SYNCING_BACKWARD = {"ProdBackward0", "ProdBackward1", "MaskedSelectBackward0", "NonzeroBackward0"}


@pytest.mark.parametrize("loss", ["reference", "quality"])
def test_loss_backward_has_no_host_syncing_node(loss):
    fused = torch.rand(2, 1, 48, 64, requires_grad=True)
    total, _ = FusionLoss(loss)(clamp_unit(fused * 1.2), torch.rand(2, 1, 48, 64), torch.rand(2, 1, 48, 64))
    names, stack, seen = set(), [total.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(type(node).__name__)
        stack.extend(fn for fn, _ in node.next_functions)
    assert "MseLossBackward0" in names  # the walk reached the loss terms
    assert not names & HOST_SYNCING_BACKWARD, names & HOST_SYNCING_BACKWARD


def test_intensity_term_targets_the_elementwise_maximum():
    vis = torch.full((1, 1, 32, 32), 0.2)
    ir = torch.full((1, 1, 32, 32), 0.7)
    ir[..., :16] = 0.1  # left half: visible is brighter
    fused = torch.zeros(1, 1, 32, 32)
    _, terms = FusionLoss()(fused, vis, ir)
    assert float(terms["int"]) == pytest.approx(0.5 * 0.2**2 + 0.5 * 0.7**2, rel=1e-6)


def test_sobel_gradient_of_a_ramp():
    ramp = torch.arange(16.0).repeat(16, 1)[None, None]  # x[i, j] = j
    g = SobelGradient()(ramp)
    assert torch.allclose(g[..., 1:-1, 1:-1], torch.full((14, 14), 8.0))  # |Sobel_x| = 8, Sobel_y = 0 inside
    assert float(g[0, 0, 5, 0]) == pytest.approx(4 * 1 + 0)  # zero padding at the left border: only +x taps


def test_gradient_term_against_a_direct_formula():
    rng = np.random.default_rng(2)
    vis, ir, fused = (torch.from_numpy(smooth_image(rng, 32, 40))[None, None] for _ in range(3))
    _, terms = FusionLoss()(fused, vis, ir)
    kx = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], float)
    ky = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], float)

    def grad(x):
        p = np.pad(x[0, 0].double().numpy(), 1)
        win = np.lib.stride_tricks.sliding_window_view(p, (3, 3))
        return np.abs(np.einsum("ijkl,kl->ij", win, kx)) + np.abs(np.einsum("ijkl,kl->ij", win, ky))

    expected = np.abs(np.maximum(grad(vis), grad(ir)) - grad(fused)).mean()
    assert float(terms["grad"]) == pytest.approx(expected, rel=1e-5)


def test_msssim_matches_the_direct_formula_with_the_repository_quirk():
    rng = np.random.default_rng(3)
    a, b = smooth_image(rng, 64, 80).astype(np.float64), smooth_image(rng, 64, 80).astype(np.float64)
    a = 0.6 * a + 0.4 * b  # correlated, so every factor is well inside (0, 1)
    got = float(msssim_reference(torch.from_numpy(a)[None, None].double(), torch.from_numpy(b)[None, None].double()))
    levels = numpy_msssim_levels(a, b)
    ssim = [(s + 1) / 2 for s, _ in levels]
    cs = [(c + 1) / 2 for _, c in levels]
    w = MSSSIM_WEIGHTS
    quirk = math.prod(cs[i] ** w[i] for i in range(4)) * ssim[4] ** (4 * w[4])
    standard = math.prod(cs[i] ** w[i] for i in range(4)) * ssim[4] ** w[4]
    assert got == pytest.approx(quirk, rel=1e-9)
    assert abs(quirk - standard) > 1e-3  # the quirk is not a no-op on this pair


def test_msssim_range_comes_from_the_first_argument():
    rng = np.random.default_rng(4)
    a = torch.from_numpy(smooth_image(rng, 32, 32))[None, None].double()
    b = torch.from_numpy(smooth_image(rng, 32, 32))[None, None].double()
    # scaling both by 255 keeps SSIM (C1, C2 scale with L = 255)
    assert float(msssim_reference(255 * a, 255 * b)) == pytest.approx(float(msssim_reference(a, b)), rel=1e-6)


def test_msssim_rejects_small_or_mismatched_images():
    with pytest.raises(ValueError, match="at least 16x16"):
        msssim_reference(torch.rand(1, 1, 8, 40), torch.rand(1, 1, 8, 40))
    with pytest.raises(ValueError, match="one shape"):
        msssim_reference(torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 16))


def test_paper_weighting():
    rng = np.random.default_rng(5)
    vis, ir, fused = (torch.from_numpy(smooth_image(rng, 32, 32))[None, None] for _ in range(3))
    ref_total, t = FusionLoss("reference")(fused, vis, ir)
    paper_total, _ = FusionLoss("paper")(fused, vis, ir)
    assert float(ref_total) == pytest.approx(float(10 * t["ssim"] + 10 * t["int"] + t["grad"]), rel=1e-6)
    assert float(paper_total) == pytest.approx(float(t["ssim"] + 100 * t["int"] + 10 * t["grad"]), rel=1e-6)
    with pytest.raises(ValueError, match="unknown loss"):
        FusionLoss("l2")


def test_signed_gradient_loss_sees_edge_direction_that_the_magnitude_term_misses():
    """The negated edge-carrying source has the same gradient magnitudes (reference term 0) but every edge
    reversed: the signed term is large; the source itself scores 0 on both."""
    rng = np.random.default_rng(6)
    vis = torch.from_numpy(smooth_image(rng, 32, 32))[None, None]
    ir = torch.zeros_like(vis)  # no edges (zero padding too): the visible responses are the target everywhere
    inverted = -vis  # Sobel is linear: every response negated, the border included
    reference, signed = FusionLoss("reference"), FusionLoss("signed-grad")
    assert float(reference(vis, vis, ir)[1]["grad"]) == pytest.approx(0, abs=1e-7)
    assert float(signed(vis, vis, ir)[1]["grad"]) == pytest.approx(0, abs=1e-7)
    assert float(reference(inverted, vis, ir)[1]["grad"]) == pytest.approx(0, abs=1e-6)
    sobel_mean = float(reference.gradient(vis).mean())
    assert float(signed(inverted, vis, ir)[1]["grad"]) == pytest.approx(2 * sobel_mean, rel=1e-4)
    total, t = signed(inverted, vis, ir)
    assert float(total) == pytest.approx(float(10 * t["ssim"] + 10 * t["int"] + 5 * t["grad"]), rel=1e-6)


def test_loss_weights_replace_the_named_loss_weights_and_are_checked(tmp_path):
    from fusion_edge.cli import build_parser
    from fusion_edge.train import TrainConfig
    from fusion_edge.train.trainer import Trainer

    cfg = TrainConfig(data=str(make_pairs(tmp_path / "d", count=3)), out=str(tmp_path / "run"), crop=32, batch=1,
                      loss="signed-grad", loss_weights=[20, 10, 15], model_overrides=TINY, val_fraction=0,
                      device="cpu")
    trainer = Trainer(cfg)
    trainer._build()  # model, data, optimizer and loss, without training
    loss_fn = trainer.loss_fn
    assert (loss_fn.weighting, loss_fn.w_ssim, loss_fn.w_int, loss_fn.w_grad) == ("signed-grad", 20, 10, 15)

    rng = np.random.default_rng(7)
    vis, ir, fused = (torch.from_numpy(smooth_image(rng, 32, 32))[None, None] for _ in range(3))
    total, t = FusionLoss("signed-grad", [20, 10, 15])(fused, vis, ir)
    assert float(total) == pytest.approx(float(20 * t["ssim"] + 10 * t["int"] + 15 * t["grad"]), rel=1e-6)
    for bad in ([], [1, 2], [1, -1, 1], [0, 0, 0], [1, float("nan"), 1]):
        with pytest.raises(ValueError, match="loss weights"):
            FusionLoss("reference", bad)
        with pytest.raises(ValueError, match="loss weights"):
            TrainConfig(data="d", loss_weights=bad).check()
    args = build_parser().parse_args(["train", "--data", "d", "--loss-weights", "20,10,10"])
    assert args.loss_weights == [20.0, 10.0, 10.0]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--data", "d", "--loss-weights", "20,10"])


def test_clamp_passes_no_gradient_outside_the_unit_range():
    x = torch.tensor([-0.5, 0.25, 0.75, 1.5], requires_grad=True)
    y = clamp_unit(x)
    y.sum().backward()
    assert y.tolist() == [0.0, 0.25, 0.75, 1.0]
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 0.0]


def test_learning_rate_schedules():
    # the reference: 1e-4 * 0.75 ** (epoch - 1) with 0-based epochs
    assert learning_rate("reference", 1e-4, epoch=0, step=0, progress=0) == pytest.approx(1e-4 / 0.75)
    assert learning_rate("reference", 1e-4, epoch=1, step=99, progress=0.5) == pytest.approx(1e-4)
    assert learning_rate("cosine", 1e-3, epoch=0, step=0, progress=0.0) == pytest.approx(1e-3)
    assert learning_rate("cosine", 1e-3, epoch=0, step=0, progress=1.0, min_lr_ratio=0.1) == pytest.approx(1e-4)
    assert learning_rate("constant", 1e-3, epoch=0, step=1, progress=0.0, warmup_steps=4) == pytest.approx(5e-4)
    with pytest.raises(ValueError, match="unknown lr schedule"):
        learning_rate("step", 1e-3, epoch=0, step=0, progress=0)


# ----------------------------------------------------------------------------- data
def test_pairs_are_matched_by_stem_and_visible_is_read_with_bgr2gray(tmp_path):
    root = make_pairs(tmp_path / "d", count=3)
    pairs = find_pairs(root)
    assert [p.name for p in pairs] == ["pair0", "pair1", "pair2"]
    data = FullImagePairs(pairs)
    vis, _ = data[0]
    expected = cv2.cvtColor(cv2.imread(str(pairs[0].vis)), cv2.COLOR_BGR2GRAY)
    assert np.array_equal((vis[0].numpy() * 255).round().astype(np.uint8), expected)


def test_dataset_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="data folder not found"):
        find_pairs(tmp_path / "nope")
    (tmp_path / "only_ir" / "ir").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="missing: vis/"):
        find_pairs(tmp_path / "only_ir")
    (tmp_path / "empty" / "ir").mkdir(parents=True)
    (tmp_path / "empty" / "vis").mkdir()
    with pytest.raises(ValueError, match="no images"):
        find_pairs(tmp_path / "empty")
    root = make_pairs(tmp_path / "unmatched", count=2)
    (root / "vis" / "pair1.png").rename(root / "vis" / "other.png")
    with pytest.raises(ValueError, match=r"1 in ir/ without a vis/ partner \(e.g. pair1\).*other"):
        find_pairs(root)
    root = make_pairs(tmp_path / "sizes", count=1)
    cv2.imwrite(str(root / "ir" / "pair0.png"), np.zeros((10, 12), np.uint8))
    with pytest.raises(ValueError, match="visible is 52x40 but infrared is 12x10"):
        RandomCropPairs(find_pairs(root), crop=32)
    root = make_pairs(tmp_path / "broken", count=1)
    (root / "ir" / "pair0.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="cannot read image .*pair0.png"):
        RandomCropPairs(find_pairs(root), crop=32)


def test_random_crops_are_padded_aligned_and_flipped(tmp_path):
    root = tmp_path / "d"
    (root / "ir").mkdir(parents=True)
    (root / "vis").mkdir()
    grey = (smooth_image(np.random.default_rng(6), 20, 24) * 255).astype(np.uint8)
    cv2.imwrite(str(root / "ir" / "a.png"), grey)
    cv2.imwrite(str(root / "vis" / "a.png"), np.repeat(grey[..., None], 3, axis=-1))  # grey in colour form
    data = RandomCropPairs(find_pairs(root), crop=32, repeats=8)
    assert len(data) == 8
    crops = data.batch(torch.zeros(64, dtype=torch.long), torch.Generator().manual_seed(0))
    assert crops.shape == (2, 64, 1, 32, 32) and crops.dtype == torch.uint8
    assert torch.equal(crops[0], crops[1])  # same window and same flips for both modalities
    padded = pad_to(grey, 32, 32)  # smaller than the crop: the crop is the whole reflect-padded image
    assert np.array_equal(padded[:20, :24], grey)
    seen_flips = set()
    for crop in crops[0, :, 0].numpy():
        matches = [f for f in (None, 1, 0, (0, 1)) if np.array_equal(crop, padded if f is None else np.flip(padded, f))]
        assert len(matches) == 1
        seen_flips.add(matches[0])
    assert seen_flips == {None, 0, 1, (0, 1)}  # flips happen, both ways
    with pytest.raises(ValueError, match="crop must be at least 16"):
        RandomCropPairs(find_pairs(root), crop=8)


def test_batched_crops_are_windows_of_their_own_pair(tmp_path):
    """Pairs of different sizes in one buffer: every crop is a window of its pair at some
    position (each position reachable), flipped or not, the same window in vis and ir."""
    rng = np.random.default_rng(7)
    root = tmp_path / "d"
    (root / "ir").mkdir(parents=True)
    (root / "vis").mkdir()
    sources = {}
    for name, (h, w) in {"a": (21, 30), "b": (34, 19)}.items():
        vis = rng.integers(0, 256, (h, w), dtype=np.uint8)
        cv2.imwrite(str(root / "vis" / f"{name}.png"), vis)
        cv2.imwrite(str(root / "ir" / f"{name}.png"), 255 - vis)
        sources[name] = pad_to(vis, 16, 16)
    data = RandomCropPairs(find_pairs(root), crop=16)
    assert data.nbytes == 2 * (21 * 30 + 34 * 19)
    index = torch.tensor([0, 1] * 100)
    crops = data.batch(index, torch.Generator().manual_seed(1)).numpy()
    assert np.array_equal(crops[1], 255 - crops[0])
    positions = {0: set(), 1: set()}
    for k, i in enumerate(index.tolist()):
        image, crop = sources[data.names[i]], crops[0, k, 0]
        view = np.lib.stride_tricks.sliding_window_view(image, (16, 16))
        found = [(y, x, f) for f in ((), (0,), (1,), (0, 1)) for y, x in zip(*np.nonzero(
            (view == (np.flip(crop, f) if f else crop)).all(axis=(2, 3))))]
        assert found, f"crop {k} is not a window of {data.names[i]}"
        positions[i].update((y, x) for y, x, _ in found)
    # a: 6 x 15 positions, b: 19 x 4 positions (b is padded to 16 wide from 19: 4 columns)
    assert len(positions[0]) > 40 and len(positions[1]) > 40


def test_epoch_order_gives_every_pair_repeats_times_split_over_ranks(tmp_path):
    data = RandomCropPairs(find_pairs(make_pairs(tmp_path / "d", count=5)), crop=16, repeats=3)
    whole = data.epoch_order(seed=0, epoch=2)
    assert sorted(whole.tolist()) == sorted(list(range(5)) * 3)
    assert torch.equal(whole, data.epoch_order(seed=0, epoch=2))
    assert not torch.equal(whole, data.epoch_order(seed=0, epoch=3))
    shares = [data.epoch_order(seed=0, epoch=2, rank=r, world_size=2) for r in (0, 1)]
    assert torch.equal(torch.stack([shares[0][:7], shares[1][:7]], 1).reshape(-1), whole[:14])


def test_split_is_deterministic_and_disjoint(tmp_path):
    pairs = find_pairs(make_pairs(tmp_path / "d", count=10))
    train_a, val_a = split_pairs(pairs, 0.2, seed=3)
    train_b, val_b = split_pairs(pairs, 0.2, seed=3)
    assert (train_a, val_a) == (train_b, val_b)
    assert len(val_a) == 2 and len(train_a) == 8
    assert not {p.name for p in train_a} & {p.name for p in val_a}
    assert split_pairs(pairs, 0.0)[1] == []
    with pytest.raises(ValueError, match="val_fraction"):
        split_pairs(pairs, 1.0)


# ----------------------------------------------------------------------------- training
def tiny_config(data: Path, out: Path, **kw) -> TrainConfig:
    base = dict(data=str(data), out=str(out), epochs=1, batch=2, crop=32, lr=1e-3,
                model_overrides=TINY, log_every=1, val_max_side=32)
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 3-step run on 5 generated pairs (4 train, 1 validation)."""
    root = tmp_path_factory.mktemp("train")
    data = make_pairs(root / "data", count=5)
    # cuda_graph on a CPU run: a message, then the eager step
    summary = train(tiny_config(data, root / "run", epochs=3, max_steps=3, val_fraction=0.2, cuda_graph=True))
    return root, data, summary


def test_short_run_writes_a_loadable_checkpoint_and_log(trained):
    root, _, summary = trained
    assert summary["steps"] == 3
    assert math.isfinite(summary["train_loss"])
    assert set(summary["val"]) >= {"loss", "loss_ssim", "loss_int", "loss_grad", "msssim_vis", "msssim_ir"}
    ckpt = torch.load(root / "run" / "last.pt", map_location="cpu", weights_only=True)
    assert ckpt["step"] == 3 and ckpt["epoch"] == 1  # 2 steps per epoch: one full epoch, one partial
    assert "Cross_block.0.ln_1.weight" in ckpt["frozen_parameters"]  # its output is never read
    assert (root / "run" / "best.pt").is_file()
    log = [json.loads(line) for line in (root / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 3] and log[-1]["partial_epoch"]
    from fusion_edge.models.checkpoint import load_checkpoint

    model = load_checkpoint(root / "run" / "last.pt")
    assert model.config["dims"] == [8, 16, 32, 64]
    out = model.eval()(torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32))
    assert out.shape == (1, 1, 32, 32) and torch.isfinite(out).all()


def test_training_changes_only_parameters_that_receive_gradients(trained):
    from fusion_edge.models import create_model

    root, _, _ = trained
    ckpt = torch.load(root / "run" / "last.pt", map_location="cpu", weights_only=True)
    torch.manual_seed(0)
    init = create_model("edge", drop_path_rate=0.1, **TINY).state_dict()
    frozen = set(ckpt["frozen_parameters"])
    assert any(name.startswith("Cross_block.0.") for name in frozen)
    for name in frozen:
        assert torch.equal(ckpt["model"][name], init[name]), name
    assert not torch.equal(ckpt["model"]["final_conv.weight"], init["final_conv.weight"])


def test_resume_continues_the_step_count(trained, tmp_path):
    root, data, _ = trained
    out = tmp_path / "resumed"
    config = tiny_config(data, out, epochs=3, max_steps=5, val_fraction=0.2)
    summary = train(config, resume=str(root / "run" / "last.pt"))
    assert summary["steps"] == 5
    ckpt = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
    # the interrupted second epoch is run again from its start: steps 4 and 5
    assert ckpt["step"] == 5 and ckpt["epoch"] == 2
    assert [r["step"] for r in ckpt["history"]] == [2, 3, 5]
    with pytest.raises(ValueError, match="trained as preset"):
        train(TrainConfig(data=str(data), out=str(tmp_path / "x"), crop=32), resume=str(out / "last.pt"))
    with pytest.raises(ValueError, match="not a training checkpoint"):
        torch.save({"a": torch.zeros(1)}, tmp_path / "plain.pt")
        train(tiny_config(data, tmp_path / "y"), resume=str(tmp_path / "plain.pt"))


def test_val_interval_validates_and_saves_at_most_that_often_and_always_at_the_end(trained, tmp_path):
    _, data, _ = trained
    train(tiny_config(data, tmp_path / "run", epochs=2, val_fraction=0.2, val_interval=1e9))
    log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4]
    assert "val_loss" not in log[0] and "val_loss" in log[1]  # the first epoch end was not due; the last always is
    assert torch.load(tmp_path / "run" / "last.pt", weights_only=True)["step"] == 4


def test_loss_decreases_when_fitting_a_fixed_batch(tmp_path):
    data = make_pairs(tmp_path / "d", count=2, size=(32, 32))
    cfg = tiny_config(data, tmp_path / "run", epochs=8, batch=2, val_fraction=0.0, lr=3e-3, drop_path_rate=0.0,
                      schedule="constant")
    summary = train(cfg)
    history = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["history"]
    losses = [r["train_loss"] for r in history]
    assert summary["steps"] == 8
    assert losses[-1] < losses[0]


def test_export_writes_a_plain_state_dict_and_a_record(trained, tmp_path):
    root, _, summary = trained
    record = export_weights(root / "run" / "last.pt", tmp_path / "w" / "tiny.pt", dtype="fp16")
    state = torch.load(tmp_path / "w" / "tiny.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    assert state["final_conv.weight"].dtype == torch.float16
    assert not any(k.endswith("base_mask") for k in state)  # all ones: the loader restores them
    assert (tmp_path / "w" / "tiny.pt").stat().st_mode & 0o044  # readable by others, unlike a mkstemp file
    meta = json.loads((tmp_path / "w" / "tiny.json").read_text())
    assert meta == record
    assert meta["training"]["steps"] == 3 and meta["training"]["crop"] == 32
    assert meta["final"]["val_loss"] == pytest.approx(summary["val"]["loss"])
    assert "device" in meta["environment"]
    assert meta["rounding"]["max_abs"] < 0.05
    from fusion_edge.models.checkpoint import load_checkpoint

    full, half = load_checkpoint(root / "run" / "last.pt").eval(), load_checkpoint(tmp_path / "w" / "tiny.pt").eval()
    x, y = torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        diff = (full(x, y) - half(x, y)).abs()
    assert float(diff.max()) < 0.05 and float(diff.mean()) < 2e-3  # fp16 rounding of the weights only
    with pytest.raises(ValueError, match="unknown dtype"):
        export_weights(root / "run" / "last.pt", tmp_path / "w" / "x.pt", dtype="int8")


def test_output_bias_starts_at_the_mean_gap_to_the_intensity_target():
    from fusion_edge.train.trainer import output_bias_for

    vis = np.full((4, 4), 153, np.uint8)  # 0.6
    ir = np.full((4, 4), 51, np.uint8)  # 0.2
    # max(v, i) - 2 (v + i) = 0.6 - 1.6
    assert output_bias_for([(vis, ir)], 2.0) == pytest.approx(-1.0)
    assert output_bias_for([(vis, ir), (ir, ir)], 2.0) == pytest.approx((-1.0 + 0.2 - 0.8) / 2)


def test_config_errors(tmp_path):
    data = make_pairs(tmp_path / "d", count=3)
    with pytest.raises(ValueError, match="batch 8 is larger than the 2 crops"):
        train(tiny_config(data, tmp_path / "o", batch=8, val_fraction=0.3))
    with pytest.raises(ValueError, match="needs a CUDA device"):
        train(tiny_config(data, tmp_path / "o", amp="bf16", device="cpu"))
    with pytest.raises(ValueError, match="unknown lr schedule"):
        train(tiny_config(data, tmp_path / "o", schedule="linear"))
    with pytest.raises(ValueError, match="unknown head_bias_init"):
        train(tiny_config(data, tmp_path / "o", head_bias_init="zero"))


# ----------------------------------------------------------------------------- command line
def test_train_command_reports_data_errors(tmp_path, capsys):
    from fusion_edge.cli import main

    (tmp_path / "ir").mkdir()
    (tmp_path / "vis").mkdir()
    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "no images" in capsys.readouterr().err


def test_train_command_time_limit_and_export(tmp_path, capsys, monkeypatch):
    from fusion_edge.cli import main

    data = make_pairs(tmp_path / "d", count=3, size=(32, 32))
    argv = ["train", "--data", str(data), "--out", str(tmp_path / "o"), "--crop", "32", "--batch", "1",
            "--epochs", "100", "--time-limit", "0.001", "--val-fraction", "0", "--export", str(tmp_path / "w.pt")]
    monkeypatch.setattr(sys, "argv", ["fusion-edge", *argv])  # as started from the shell
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 1  # the clock is checked after each step
    assert summary["exported"]["bytes"] == (tmp_path / "w.pt").stat().st_size
    record = json.loads((tmp_path / "w.json").read_text())["training"]
    assert record["time_limit"] == 0.001 and record["init"] is None
    assert record["command"] == ("fusion-edge train --data d --out o --crop 32 --batch 1 --epochs 100 "
                                 "--time-limit 0.001 --val-fraction 0 --export w.pt")  # no folders of this machine
    from fusion_edge.models.checkpoint import load_checkpoint

    assert load_checkpoint(tmp_path / "w.pt", preset="edge").preset == "edge"


# ----------------------------------------------------------------------------- distributed
def test_two_process_ddp_on_cpu(tmp_path):
    """torchrun with 2 processes (gloo): both ranks take the same steps; only rank 0 writes."""
    data = make_pairs(tmp_path / "d", count=5)
    script = tmp_path / "job.py"
    script.write_text(textwrap.dedent(f"""
        import json, os
        from fusion_edge.train import TrainConfig, train
        cfg = TrainConfig(data={str(data)!r}, out={str(tmp_path / "run")!r}, epochs=2, batch=1, crop=32,
                          model_overrides={TINY!r}, val_fraction=0.2, val_max_side=32, device="cpu")
        s = train(cfg)
        import torch.distributed as dist
        assert not dist.is_initialized(), "train() left its process group joined (gloo aborts at exit)"
        with open({str(tmp_path)!r} + "/result_" + os.environ["RANK"] + ".json", "w") as f:
            json.dump(s["steps"], f)
    """))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    with socket.socket() as probe:  # a free port, so parallel runs do not collide
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(port),
           str(script)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "terminate called" not in proc.stderr
    # each rank writes its own file: the ranks share stdout, where their lines can interleave mid-line
    results = {rank: json.loads((tmp_path / f"result_{rank}.json").read_text()) for rank in (0, 1)}
    assert results == {0: 4, 1: 4}  # 4 train pairs / 2 ranks / batch 1 = 2 steps x 2 epochs
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert ckpt["step"] == 4 and ckpt["epoch"] == 2
    assert len((tmp_path / "run" / "train_log.jsonl").read_text().splitlines()) == 2


def test_init_weights_start_fine_tuning_from_a_checkpoint(trained, tmp_path):
    root, data, _ = trained
    from fusion_edge.models import create_model
    from fusion_edge.models.checkpoint import load_checkpoint
    from fusion_edge.train.trainer import Trainer

    source = load_checkpoint(root / "run" / "last.pt").state_dict()
    trainer = Trainer(tiny_config(data, tmp_path / "ft", max_steps=1, val_fraction=0.2,
                                  init_weights=str(root / "run" / "last.pt")))
    trainer._build()
    started = trainer.model.state_dict()
    assert all(torch.equal(started[k].cpu(), v) for k, v in source.items())
    other = tmp_path / "other.pth"
    torch.save(create_model("edge").state_dict(), other)
    with pytest.raises(ValueError, match="do not fit"):
        Trainer(tiny_config(data, tmp_path / "bad", max_steps=1, val_fraction=0.2, init_weights=str(other)))._build()
    # same shapes, another global residual: says which option fine-tunes them
    reference_style = tmp_path / "residual2.pth"
    torch.save(create_model("edge", **TINY, residual_scale=2.0).state_dict(), reference_style)
    with pytest.raises(ValueError, match="global residual 2.*--residual-scale 2"):
        Trainer(tiny_config(data, tmp_path / "bad2", max_steps=1, val_fraction=0.2,
                            init_weights=str(reference_style)))._build()


@pytest.mark.parametrize("residual", ["max", "twoscale"])
def test_sum_residual_weights_start_a_prior_residual_model_exactly_at_its_prior(trained, tmp_path, residual):
    root, data, _ = trained
    from fusion_edge.models.checkpoint import load_checkpoint
    from fusion_edge.train.trainer import Trainer

    init = str(root / "run" / "last.pt")
    source = load_checkpoint(init).state_dict()
    trainer = Trainer(tiny_config(data, tmp_path / residual, max_steps=1, val_fraction=0.2, init_weights=init,
                                  model_overrides={**TINY, "residual": residual}))
    trainer._build()
    model = trainer.model.eval()
    started = model.state_dict()
    assert model.residual == residual
    assert all(torch.equal(started[k].cpu(), v) for k, v in source.items()
               if not k.startswith("final_conv.") and not k.startswith("global_residual"))
    assert not started["final_conv.weight"].any() and not started["final_conv.bias"].any()
    vis, ir = torch.rand(1, 1, 64, 64), torch.rand(1, 1, 64, 64)
    prior = torch.maximum(vis, ir) if residual == "max" else model.prior(vis, ir)
    with torch.no_grad():
        assert torch.allclose(model(vis, ir), prior)
    # and back: prior-residual weights do not start a sum-residual model
    prior_weights = tmp_path / f"{residual}.pth"
    torch.save(started, prior_weights)
    with pytest.raises(ValueError, match=f"--residual {residual}"):
        Trainer(tiny_config(data, tmp_path / "bad", max_steps=1, val_fraction=0.2,
                            init_weights=str(prior_weights)))._build()
    # max weights start a twoscale model at the prior too (and the other way round)
    other = "twoscale" if residual == "max" else "max"
    switched = Trainer(tiny_config(data, tmp_path / other, max_steps=1, val_fraction=0.2,
                                   init_weights=str(prior_weights), model_overrides={**TINY, "residual": other}))
    switched._build()
    assert switched.model.residual == other and not switched.model.state_dict()["final_conv.weight"].any()
    from fusion_edge.cli import build_parser

    assert build_parser().parse_args(["train", "--data", "d", "--residual", residual]).residual == residual


# ----------------------------------------------------------------------------- CUDA graph (GPU machine)


@pytest.mark.gpu
def test_cuda_graph_step_is_used_and_trains(tmp_path):
    data = make_pairs(tmp_path / "d", count=5, size=(64, 80))
    summary = train(tiny_config(data, tmp_path / "run", device="cuda", epochs=20, max_steps=12, cuda_graph=True,
                                val_fraction=0.2))
    assert summary["cuda_graph"] == "on"
    assert summary["steps"] == 12 and math.isfinite(summary["train_loss"])
    ckpt = torch.load(tmp_path / "run" / "last.pt", map_location="cpu", weights_only=True)
    assert all(isinstance(g["lr"], float) for g in ckpt["optimizer"]["param_groups"])
    resumed = train(tiny_config(data, tmp_path / "resumed", device="cuda", epochs=20, max_steps=16, cuda_graph=True,
                                val_fraction=0.2), resume=str(tmp_path / "run" / "last.pt"))
    assert resumed["steps"] == 16 and math.isfinite(resumed["train_loss"])


def test_quality_loss_trains_a_max_residual_model_on_cpu(tmp_path):
    data = make_pairs(tmp_path / "d", count=4, size=(64, 80))
    summary = train(tiny_config(data, tmp_path / "run", epochs=5, max_steps=2, val_fraction=0.25, crop=48,
                                val_max_side=None,
                                loss="quality", quality_weights=[4, 2, 0.5],
                                model_overrides={**TINY, "residual": "max"}))
    assert summary["steps"] == 2 and math.isfinite(summary["train_loss"])
    assert 0 < summary["val"]["loss_quality"] < 1 and {"qabf", "vif", "scd"} <= set(summary["val"])
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["quality_weights"] == [4, 2, 0.5] and saved["loss"] == "quality"


@pytest.mark.gpu
def test_quality_loss_step_is_captured_as_a_cuda_graph(tmp_path):
    # the quality term (Qabf / VIF / SCD in torch) must keep the step capturable and agree with an eager step
    data = make_pairs(tmp_path / "d", count=5, size=(64, 80))
    summary = train(tiny_config(data, tmp_path / "run", device="cuda", epochs=20, max_steps=8, cuda_graph=True,
                                val_fraction=0.2, crop=48, val_max_side=None, loss="quality",
                                model_overrides={**TINY, "residual": "max"}))
    assert summary["cuda_graph"] == "on"
    assert summary["steps"] == 8 and math.isfinite(summary["train_loss"])
    assert 0 < summary["val"]["loss_quality"] < 1


@pytest.mark.gpu
def test_failed_capture_leaves_the_trainer_usable(tmp_path, monkeypatch):
    """A host sync inside the captured step invalidates the capture (the failure seen with an
    earlier model); training must go on eagerly, drop-path's random numbers included."""
    from fusion_edge.train.trainer import Trainer

    real_body = Trainer._step_body

    def body_with_a_sync(self, vis, ir, graphed=False):
        if graphed:
            float(vis.sum())  # not capturable
        return real_body(self, vis, ir, graphed)

    monkeypatch.setattr(Trainer, "_step_body", body_with_a_sync)
    data = make_pairs(tmp_path / "d", count=5, size=(64, 80))
    summary = train(tiny_config(data, tmp_path / "run", device="cuda", epochs=20, max_steps=8, cuda_graph=True,
                                drop_path_rate=0.2, val_fraction=0.2))
    assert summary["cuda_graph"].startswith("off (capture failed")
    assert summary["steps"] == 8 and math.isfinite(summary["train_loss"])
    torch.rand(4, device="cuda").bernoulli_(0.5)  # the generator is out of capture mode


@pytest.mark.gpu
def test_a_graph_that_disagrees_with_the_eager_step_is_dropped(tmp_path, monkeypatch):
    from fusion_edge.train import graph_step

    monkeypatch.setattr(graph_step, "LOSS_RTOL", -1.0)  # nothing agrees
    data = make_pairs(tmp_path / "d", count=5, size=(64, 80))
    summary = train(tiny_config(data, tmp_path / "run", device="cuda", epochs=20, max_steps=8, cuda_graph=True,
                                val_fraction=0.2))
    assert summary["cuda_graph"].startswith("off (replay disagreed")
    assert summary["steps"] == 8 and math.isfinite(summary["train_loss"])


@pytest.mark.gpu
def test_crops_are_cut_on_the_gpu(tmp_path):
    data = make_pairs(tmp_path / "d", count=3, size=(40, 52))
    crops = RandomCropPairs(find_pairs(data), crop=32).to("cuda")
    gen = torch.Generator(device="cuda").manual_seed(0)
    batch = crops.batch(crops.epoch_order(0, 0)[:3], gen)
    assert batch.is_cuda and batch.shape == (2, 3, 1, 32, 32)
