"""``fusion-edge eval`` end to end: pairing by name, reports, baselines, errors, and --model."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest

from fusion_edge import metrics as M
from fusion_edge.baselines import fuse_max
from fusion_edge.cli import main

STEMS = ["img2", "img10", "img1"]


def _texture(seed: int, h: int = 60, w: int = 76) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, size=(h // 5 + 1, w // 5 + 1))
    img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC) + rng.normal(0, 5, size=(h, w))
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


@pytest.fixture()
def folders(tmp_path):
    """ir/, vis/ and fused/ with three registered grey pairs; fused = per-pixel max."""
    paths = {name: tmp_path / name for name in ("ir", "vis", "fused")}
    for path in paths.values():
        path.mkdir()
    for i, stem in enumerate(STEMS):
        ir, vis = _texture(2 * i), _texture(2 * i + 1)
        cv2.imwrite(str(paths["ir"] / f"{stem}.png"), ir)
        cv2.imwrite(str(paths["vis"] / f"{stem}.png"), vis)
        cv2.imwrite(str(paths["fused"] / f"{stem}.png"), fuse_max(ir, vis, keep_dtype=True))
    return paths


def _eval(folders, out, *extra: str) -> int:
    return main(["eval", "--ir", str(folders["ir"]), "--vis", str(folders["vis"]), "-o", str(out), *extra])


def test_reports_match_direct_computation(folders, tmp_path, capsys):
    out = tmp_path / "report"
    assert _eval(folders, out, "--fused", str(folders["fused"])) == 0
    printed = capsys.readouterr().out
    assert "| method | EN |" in printed and "| fused |" in printed

    doc = json.loads((out / "metrics.json").read_text())
    assert doc["metrics"] == list(M.METRICS)
    assert doc["pairs"] == ["img1", "img2", "img10"]  # natural order
    scores = doc["methods"]["fused"]
    ir = cv2.imread(str(folders["ir"] / "img10.png"), cv2.IMREAD_GRAYSCALE)
    vis = cv2.imread(str(folders["vis"] / "img10.png"), cv2.IMREAD_GRAYSCALE)
    fused = cv2.imread(str(folders["fused"] / "img10.png"), cv2.IMREAD_GRAYSCALE)
    direct = M.compute_metrics(fused, ir, vis)
    for name, value in direct.items():
        assert scores["per_image"]["img10"][name] == pytest.approx(value, rel=1e-12), name
    for name in M.METRICS:
        per = [scores["per_image"][s][name] for s in doc["pairs"]]
        assert scores["mean"][name] == pytest.approx(np.mean(per), rel=1e-12)

    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [r["image"] for r in rows] == ["img1", "img2", "img10", "mean"]
    assert float(rows[-1]["Qabf"]) == pytest.approx(scores["mean"]["Qabf"], rel=1e-12)

    md = (out / "metrics.md").read_text()
    assert "## Mean over 3 pairs" in md and "## fused: per image" in md and "| img10 |" in md
    chart = cv2.imread(str(out / "metrics.png"))
    assert chart is not None and chart.shape[0] > 200 and chart.shape[1] > 600


def test_baselines_and_metric_selection(folders, tmp_path):
    out = tmp_path / "report"
    assert _eval(folders, out, "--baselines", "--metrics", "qabf,scd", "vif") == 0
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["metrics"] == ["Qabf", "SCD", "VIF"]
    assert list(doc["methods"]) == ["average", "max", "Laplacian pyramid (4)", "visible only", "infrared only"]
    # The stored fused images are the per-pixel max, so the "max" baseline scores the same.
    assert _eval(folders, tmp_path / "fused_report", "--fused", str(folders["fused"]), "--metrics", "Qabf") == 0
    fused = json.loads((tmp_path / "fused_report" / "metrics.json").read_text())
    assert fused["methods"]["fused"]["mean"]["Qabf"] == pytest.approx(doc["methods"]["max"]["mean"]["Qabf"])


def test_psnr_of_an_exact_copy_is_null_in_json_and_inf_in_tables(folders, tmp_path):
    out = tmp_path / "report"
    for stem in STEMS:  # sources identical to each other and to the fused image
        (folders["vis"] / f"{stem}.png").write_bytes((folders["ir"] / f"{stem}.png").read_bytes())
    assert _eval(folders, out, "--fused", str(folders["ir"]), "--metrics", "PSNR") == 0
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["methods"]["ir"]["mean"]["PSNR"] is None
    assert "| ir | inf |" in (out / "metrics.md").read_text()


def test_unmatched_names_are_listed(folders, tmp_path, capsys):
    (folders["vis"] / "img2.png").rename(folders["vis"] / "other.png")
    assert _eval(folders, tmp_path / "out", "--fused", str(folders["fused"])) == 2
    err = capsys.readouterr().err
    assert "do not pair up" in err and "lacks: img2" in err and "lacks: other" in err


@pytest.mark.parametrize(
    "extra, message",
    [
        ((), "nothing to score"),
        (("--baselines", "--metrics", "NIQE"), "unknown metric"),
        (("--fused", "/nonexistent/folder"), "folder not found"),
    ],
)
def test_usage_errors(folders, tmp_path, capsys, extra, message):
    assert _eval(folders, tmp_path / "out", *extra) == 2
    assert message in capsys.readouterr().err


def test_pair_of_different_sizes_is_an_error(folders, tmp_path, capsys):
    cv2.imwrite(str(folders["vis"] / "img1.png"), _texture(99, 50, 76))
    assert _eval(folders, tmp_path / "out", "--baselines") == 2
    assert "pair 'img1'" in capsys.readouterr().err


def test_colour_and_16_bit_fused_images_are_scored_as_grey(folders, tmp_path):
    colour, deep = tmp_path / "colour", tmp_path / "deep"
    colour.mkdir()
    deep.mkdir()
    for stem in STEMS:
        grey = cv2.imread(str(folders["fused"] / f"{stem}.png"), cv2.IMREAD_GRAYSCALE)
        cv2.imwrite(str(colour / f"{stem}.png"), cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR))
        cv2.imwrite(str(deep / f"{stem}.png"), grey.astype(np.uint16) * 257)
    args = ("--fused", str(folders["fused"]), "--fused", str(colour), "--fused", str(deep), "--metrics", "Qabf", "SCD")
    assert _eval(folders, tmp_path / "out", *args) == 0
    means = {k: v["mean"] for k, v in json.loads((tmp_path / "out" / "metrics.json").read_text())["methods"].items()}
    for name in ("colour", "deep"):
        assert means[name]["Qabf"] == pytest.approx(means["fused"]["Qabf"], abs=1e-9)
        assert means[name]["SCD"] == pytest.approx(means["fused"]["SCD"], abs=1e-9)


def test_model_fuses_first_and_saves_the_images(folders, tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("fusion_edge.inference")
    from fusion_edge.models import FusionMamba

    torch.manual_seed(0)
    ckpt = tmp_path / "small.pth"
    torch.save(FusionMamba(dims=[8, 16, 32, 64], depths=[1, 1, 1, 1], depths_decoder=[1, 1, 1, 1]).state_dict(), ckpt)
    out = tmp_path / "out"
    assert _eval(folders, out, "--model", str(ckpt), "--model-label", "small", "--metrics", "Qabf", "SCD") == 0
    saved = sorted(p.name for p in (out / "fused").iterdir())
    assert saved == ["img1.png", "img10.png", "img2.png"]
    doc = json.loads((out / "metrics.json").read_text())
    fused = cv2.imread(str(out / "fused" / "img1.png"), cv2.IMREAD_UNCHANGED)
    ir = cv2.imread(str(folders["ir"] / "img1.png"), cv2.IMREAD_GRAYSCALE)
    vis = cv2.imread(str(folders["vis"] / "img1.png"), cv2.IMREAD_GRAYSCALE)
    assert doc["methods"]["small"]["per_image"]["img1"]["Qabf"] == pytest.approx(M.qabf(fused, ir, vis), rel=1e-12)


def test_model_without_inference_support_is_a_clear_error(folders, tmp_path, capsys, monkeypatch):
    inference = pytest.importorskip("fusion_edge.inference")
    monkeypatch.delattr(inference, "fuse_arrays")
    assert _eval(folders, tmp_path / "out", "--model", "weights.pt") == 2
    assert "not available" in capsys.readouterr().err
