"""``fusion-edge fuse`` end to end on real pairs, with a small random-weight checkpoint."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from fusion_edge.cli import main
from fusion_edge.models import FusionMamba

SMALL = dict(dims=[8, 16, 32, 64], depths=[1, 1, 1, 1], depths_decoder=[1, 1, 1, 1])


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "small.pth"
    torch.save(FusionMamba(**SMALL).state_dict(), path)
    return path


def _run(*args: str) -> int:
    return main(["fuse", *map(str, args)])


def test_colour_visible_keeps_colour_and_size(tmp_path, data_dir, checkpoint):
    ir, vis = data_dir / "roadscene" / "ir", data_dir / "roadscene" / "vis"
    name = sorted(p.name for p in ir.iterdir())[0]
    out = tmp_path / "fused.png"
    assert _run("--ir", ir / name, "--vis", vis / name, "-o", out, "--checkpoint", checkpoint) == 0
    fused = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    source = cv2.imread(str(vis / name), cv2.IMREAD_COLOR)
    assert fused.shape == source.shape and fused.dtype == np.uint8
    # chroma is kept: Cr/Cb of the output follow the visible image's (up to rounding/clamping)
    cr_out = cv2.cvtColor(fused, cv2.COLOR_BGR2YCrCb)[:, :, 1:].astype(float)
    cr_src = cv2.cvtColor(source, cv2.COLOR_BGR2YCrCb)[:, :, 1:].astype(float)
    assert np.median(np.abs(cr_out - cr_src)) <= 2


def test_grey_pair_and_ir_resized(tmp_path, data_dir, checkpoint, capsys):
    ir = cv2.imread(str(data_dir / "tno21" / "ir" / "01.png"), cv2.IMREAD_GRAYSCALE)
    small_ir = tmp_path / "ir_small.png"
    cv2.imwrite(str(small_ir), cv2.resize(ir, (180, 135)))
    out = tmp_path / "fused.png"
    vis = data_dir / "tno21" / "vis" / "01.png"
    assert _run("--ir", small_ir, "--vis", vis, "-o", out, "--checkpoint", checkpoint) == 0
    assert "resized" in capsys.readouterr().out
    fused = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert fused.shape == (270, 360) and fused.dtype == np.uint8


def test_16_bit_input_gives_16_bit_output(tmp_path, checkpoint):
    rng = np.random.default_rng(0)
    ir = (rng.random((70, 90)) * 65535).astype(np.uint16)
    vis = (rng.random((70, 90)) * 65535).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "ir.png"), ir)
    cv2.imwrite(str(tmp_path / "vis.png"), vis)
    out = tmp_path / "fused.png"
    assert _run("--ir", tmp_path / "ir.png", "--vis", tmp_path / "vis.png", "-o", out, "--checkpoint", checkpoint) == 0
    fused = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert fused.dtype == np.uint16 and fused.shape == (70, 90)
    assert fused.max() > 255  # really uses the 16-bit range


def test_errors_are_reported_not_raised(tmp_path, checkpoint, capsys):
    (tmp_path / "broken.png").write_bytes(b"not an image")
    assert _run("--ir", tmp_path / "missing.png", "--vis", tmp_path / "broken.png", "-o", tmp_path / "o.png",
                "--checkpoint", checkpoint) == 2
    assert "image not found" in capsys.readouterr().err
    cv2.imwrite(str(tmp_path / "ok.png"), np.zeros((32, 32), np.uint8))
    assert _run("--ir", tmp_path / "ok.png", "--vis", tmp_path / "broken.png", "-o", tmp_path / "o.png",
                "--checkpoint", checkpoint) == 2
    assert "cannot decode" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()
