"""IR -> VIS calibration: homography from points and from chessboards, file round trips,
other resolutions, and the calibrate command."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from fusion_edge.runtime.calibration import (
    Calibration,
    estimate_from_chessboards,
    estimate_from_points,
    read_point_pairs,
)

TRUE_H = np.array([[0.98, 0.03, 14.0], [-0.02, 1.01, -9.0], [2e-5, -1e-5, 1.0]])


def project(h, pts):
    return cv2.perspectiveTransform(np.asarray(pts, np.float64).reshape(-1, 1, 2), h).reshape(-1, 2)


def test_points_round_trip_with_noise_and_outliers():
    rng = np.random.default_rng(0)
    ir = rng.uniform([0, 0], [640, 512], size=(40, 2))
    vis = project(TRUE_H, ir) + rng.normal(0, 0.3, size=(40, 2))
    vis[:3] += 60.0  # three bad matches
    calib = estimate_from_points(ir, vis, (640, 512), (800, 600))
    assert calib.inliers == 37 and calib.rms_px < 0.6
    grid = np.array([[0, 0], [639, 0], [0, 511], [639, 511], [320, 256]], float)
    assert np.abs(calib.ir_to_vis(grid) - project(TRUE_H, grid)).max() < 1.0
    with pytest.raises(ValueError, match="at least 4"):
        estimate_from_points(ir[:3], vis[:3], (640, 512), (800, 600))
    with pytest.raises(ValueError, match="as many"):
        estimate_from_points(ir[:5], vis[:6], (640, 512), (800, 600))


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_save_load_round_trip(tmp_path, suffix):
    calib = Calibration(TRUE_H, (640, 512), (800, 600), method="points", rms_px=0.42, inliers=37)
    path = calib.save(tmp_path / f"rig{suffix}")
    back = Calibration.load(path)
    np.testing.assert_allclose(back.homography, TRUE_H / TRUE_H[2, 2], rtol=1e-12, atol=1e-12)
    assert back.ir_size == (640, 512) and back.vis_size == (800, 600)
    assert back.rms_px == pytest.approx(0.42) and back.inliers == 37 and back.method == "points"
    assert not list(tmp_path.glob(".*tmp*"))


def test_load_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError):
        Calibration.load(tmp_path / "none.json")
    (tmp_path / "a.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        Calibration.load(tmp_path / "a.json")
    bad = {"homography": [[1, 0], [0, 1]], "ir_size": [1, 1], "vis_size": [1, 1]}
    (tmp_path / "b.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="3x3"):
        Calibration.load(tmp_path / "b.json")
    (tmp_path / "c.json").write_text(json.dumps({"homography": np.eye(3).tolist(), "ir_size": [1, 1]}))
    with pytest.raises(ValueError, match="vis_size"):
        Calibration.load(tmp_path / "c.json")
    with pytest.raises(ValueError, match=".json, .yaml"):
        Calibration(np.eye(3), (1, 1), (1, 1)).save(tmp_path / "x.txt")


def test_other_resolutions_scale_the_homography():
    calib = Calibration(TRUE_H, (640, 512), (800, 600))
    half = calib.for_sizes(ir_hw=(256, 320), vis_hw=(300, 400))
    p_ir_half = np.array([[100.0, 80.0]])
    expected = project(TRUE_H, p_ir_half * 2) / 2
    np.testing.assert_allclose(project(half, p_ir_half), expected, atol=1e-9)


def chessboard(squares=(10, 7), square=40, margin=60):
    h, w = squares[1] * square + 2 * margin, squares[0] * square + 2 * margin
    img = np.full((h, w), 255, np.uint8)
    for r in range(squares[1]):
        for c in range(squares[0]):
            if (r + c) % 2 == 0:
                y, x = margin + r * square, margin + c * square
                img[y : y + square, x : x + square] = 0
    return img


def test_chessboard_seen_by_both_cameras():
    board = chessboard()
    rng = np.random.default_rng(3)
    ir_imgs, vis_imgs, truth = [], [], None
    vis_to_ir = np.linalg.inv(TRUE_H)
    for k in range(3):
        # the board at three places: VIS sees it directly, IR (inverted: a heated board) through the rig
        pose = np.array([[1.0, 0.05 * k, 30.0 * k], [0.02 * k, 1.0, 20.0 * k], [0, 0, 1]])
        vis = cv2.warpPerspective(board, pose, (800, 600), borderValue=255)
        ir = 255 - cv2.warpPerspective(vis, vis_to_ir, (640, 512), borderValue=255)
        ir = np.clip(cv2.GaussianBlur(ir, (5, 5), 1.0) + rng.normal(0, 2, ir.shape), 0, 255).astype(np.uint8)
        ir_imgs.append(ir)
        vis_imgs.append(cv2.cvtColor(vis, cv2.COLOR_GRAY2BGR))
        truth = TRUE_H
    calib = estimate_from_chessboards(ir_imgs, vis_imgs, (9, 6))
    assert calib.method == "chessboard" and calib.extra["pairs_used"] == 3 and calib.inliers == 3 * 54
    assert calib.ir_size == (640, 512) and calib.vis_size == (800, 600)
    grid = np.array([[50, 50], [600, 60], [80, 480], [600, 480]], float)
    assert np.abs(calib.ir_to_vis(grid) - project(truth, grid)).max() < 1.0
    with pytest.raises(ValueError, match="not found in any"):
        estimate_from_chessboards([np.zeros((100, 100), np.uint8)], [np.zeros((100, 100), np.uint8)], (9, 6))


def test_point_files(tmp_path):
    (tmp_path / "p.csv").write_text("ir_x,ir_y,vis_x,vis_y\n1,2,3,4\n5,6,7,8\n")
    ir, vis = read_point_pairs(tmp_path / "p.csv")
    assert ir.tolist() == [[1, 2], [5, 6]] and vis.tolist() == [[3, 4], [7, 8]]
    (tmp_path / "p.json").write_text(json.dumps({"ir": [[1, 2]], "vis": [[3, 4]]}))
    assert read_point_pairs(tmp_path / "p.json")[1].tolist() == [[3, 4]]
    (tmp_path / "bad.csv").write_text("1,2,3\n")
    with pytest.raises(ValueError, match="line 1"):
        read_point_pairs(tmp_path / "bad.csv")


def test_calibrate_command(tmp_path, capsys):
    from fusion_edge.cli import main

    rng = np.random.default_rng(1)
    ir = rng.uniform([0, 0], [640, 512], size=(12, 2))
    rows = np.hstack([ir, project(TRUE_H, ir)])
    np.savetxt(tmp_path / "pts.csv", rows, delimiter=",", header="ir_x,ir_y,vis_x,vis_y")
    cv2.imwrite(str(tmp_path / "ir.png"), np.zeros((512, 640), np.uint8))
    cv2.imwrite(str(tmp_path / "vis.png"), np.zeros((600, 800, 3), np.uint8))
    rc = main(["calibrate", "--points", str(tmp_path / "pts.csv"), "--ir", str(tmp_path / "ir.png"), "--vis",
               str(tmp_path / "vis.png"), "-o", str(tmp_path / "rig.yaml"), "--preview", str(tmp_path / "check.png")])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "12 inlier points" in out
    calib = Calibration.load(tmp_path / "rig.yaml")
    np.testing.assert_allclose(calib.homography, TRUE_H, atol=1e-4)
    assert calib.vis_size == (800, 600)
    assert cv2.imread(str(tmp_path / "check.png")).shape == (600, 800, 3)
    assert main(["calibrate", "--points", str(tmp_path / "pts.csv"), "-o", str(tmp_path / "x.json")]) == 2
    assert "--ir-size" in capsys.readouterr().err
    rc = main(["calibrate", "--points", str(tmp_path / "pts.csv"), "--ir-size", "640x512", "--vis-size", "800x600",
               "-o", str(tmp_path / "x.json")])
    assert rc == 0 and Calibration.load(tmp_path / "x.json").ir_size == (640, 512)
