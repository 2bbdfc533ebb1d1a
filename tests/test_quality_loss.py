"""The differentiable Qabf / VIF / SCD of the ``quality`` loss against fusion_edge.metrics, and its wiring."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from fusion_edge import metrics
from fusion_edge.train import FusionLoss, TrainConfig
from fusion_edge.train import quality_loss as q
from fusion_edge.train.losses import check_loss_weights

TNO = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tno21"


def textured_pair(seed: int, h: int = 96, w: int = 112) -> tuple[np.ndarray, np.ndarray]:
    """Two grey 0..255 images with edges at several scales and a shared structure (like a registered pair)."""
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.normal(0, 1, (h, w)), (0, 0), 6)
    ir = cv2.GaussianBlur(rng.normal(0, 1, (h, w)), (0, 0), 2) + 2 * base
    vis = cv2.GaussianBlur(rng.normal(0, 1, (h, w)), (0, 0), 1) - base
    ir[h // 3 : h // 2, w // 4 : w // 2] += 2.5  # a warm target
    scale = lambda x: np.round(255 * (x - x.min()) / (x.max() - x.min()))  # noqa: E731
    return scale(ir), scale(vis)


def fusions(ir: np.ndarray, vis: np.ndarray) -> dict[str, np.ndarray]:
    # no exact ties between a source's and the fused Sobel magnitude (Qabf's measure-zero quirk)
    return {
        "average": (ir + vis) / 2,
        "blend": np.clip(0.7 * vis + 0.45 * cv2.GaussianBlur(ir, (0, 0), 1.5), 0, 255),
        "noisy": np.clip(0.5 * ir + 0.6 * vis + np.random.default_rng(3).normal(0, 4, ir.shape), 0, 255),
    }


def as_tensor(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x)).float()[None, None]


@pytest.mark.parametrize("seed", [0, 1])
def test_torch_metrics_equal_the_evaluation_metrics(seed):
    ir, vis = textured_pair(seed)
    for name, fused in fusions(ir, vis).items():
        f, i, v = as_tensor(fused), as_tensor(ir), as_tensor(vis)
        assert float(q.qabf(f, i, v)) == pytest.approx(metrics.qabf(fused, ir, vis), abs=2e-4), name
        assert float(q.vif(f, i, v)) == pytest.approx(metrics.vif(fused, ir, vis), abs=2e-4), name
        assert float(q.scd(f, i, v)) == pytest.approx(metrics.scd(fused, ir, vis), abs=1e-5), name


@pytest.mark.skipif(not (TNO / "ir").is_dir(), reason="the tno21 data folder is not next to the checkout")
def test_torch_metrics_on_a_real_pair_in_a_batch():
    ir = cv2.imread(str(TNO / "ir" / "01.png"), cv2.IMREAD_GRAYSCALE).astype(np.float64)
    vis = cv2.imread(str(TNO / "vis" / "01.png"), cv2.IMREAD_GRAYSCALE).astype(np.float64)
    made = fusions(ir, vis)
    batch = torch.cat([as_tensor(f) for f in made.values()])
    i, v = as_tensor(ir).expand_as(batch), as_tensor(vis).expand_as(batch)
    for k, (name, fused) in enumerate(made.items()):
        assert float(q.qabf(batch, i, v)[k]) == pytest.approx(metrics.qabf(fused, ir, vis), abs=2e-4), name
        assert float(q.vif(batch, i, v)[k]) == pytest.approx(metrics.vif(fused, ir, vis), abs=2e-4), name
        assert float(q.scd(batch, i, v)[k]) == pytest.approx(metrics.scd(fused, ir, vis), abs=1e-5), name


def test_quality_loss_ranks_fusions_as_the_metrics_do_and_has_a_gradient():
    ir, vis = textured_pair(2)
    made = fusions(ir, vis)
    i, v = as_tensor(ir) / 255, as_tensor(vis) / 255
    losses = {name: float(q.quality_loss(as_tensor(f) / 255, v, i)) for name, f in made.items()}
    scores = {name: metrics.qabf(f, ir, vis) + metrics.vif(f, ir, vis) / 2 + metrics.scd(f, ir, vis) / 2
              for name, f in made.items()}
    for name in made:
        assert losses[name] == pytest.approx(1 - scores[name] / 3, abs=2e-4)
    fused = (as_tensor(made["average"]) / 255).requires_grad_(True)
    q.quality_loss(fused, v, i).backward()
    assert torch.isfinite(fused.grad).all() and fused.grad.abs().sum() > 0
    # one step against the gradient raises the score
    with torch.no_grad():
        stepped = fused - 2e-3 * fused.grad / fused.grad.abs().max()
    assert float(q.quality_loss(stepped, v, i)) < float(q.quality_loss(fused.detach(), v, i))


def test_quality_term_in_the_fusion_loss_and_its_weights():
    ir, vis = textured_pair(4, 64, 64)
    f, i, v = as_tensor((ir + vis) / 2) / 255, as_tensor(ir) / 255, as_tensor(vis) / 255
    total, terms = FusionLoss("quality")(f, v, i)
    base, base_terms = FusionLoss("signed-grad")(f, v, i)
    assert "quality" not in base_terms
    assert float(total) == pytest.approx(float(base + 10 * terms["quality"]), rel=1e-6)
    assert float(terms["quality"]) == pytest.approx(float(q.quality_loss(f, v, i)), rel=1e-6)
    assert check_loss_weights([1, 2, 3], "quality") == (1, 2, 3, 10)
    assert check_loss_weights([1, 2, 3], "reference") == (1, 2, 3, 0)
    assert FusionLoss("reference", [1, 2, 3, 4]).w_quality == 4
    with pytest.raises(ValueError, match="at least 41"):
        q.quality_loss(f[..., :32, :32], v[..., :32, :32], i[..., :32, :32])
    with pytest.raises(ValueError, match="crop=32"):
        TrainConfig(data="d", loss="quality", crop=32).check()
    with pytest.raises(ValueError, match="val_max_side=40"):
        TrainConfig(data="d", loss_weights=[1, 1, 1, 1], val_max_side=40).check()
    TrainConfig(data="d", loss="signed-grad", crop=32).check()  # no quality term: small crops are fine


def test_quality_cli_options():
    from fusion_edge.cli import build_parser

    args = build_parser().parse_args(["train", "--data", "d", "--loss", "quality", "--loss-weights", "10,10,5,30"])
    assert args.loss == "quality" and args.loss_weights == [10.0, 10.0, 5.0, 30.0]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--data", "d", "--loss-weights", "1,2,3,4,5"])
