"""The README's main command: ``fusion-edge demo`` with the packaged weights and sample pair."""

from __future__ import annotations

import cv2
import numpy as np

from fusion_edge.cli import main
from fusion_edge.inference import default_weights_path


def test_packaged_weights_exist_and_demo_runs(tmp_path):
    assert default_weights_path() is not None
    assert main(["demo", "-o", str(tmp_path)]) == 0
    fused = cv2.imread(str(tmp_path / "fused.png"), cv2.IMREAD_UNCHANGED)
    sample = cv2.imread(str(tmp_path / "comparison.png"), cv2.IMREAD_UNCHANGED)
    assert fused.shape == (480, 640, 3) and fused.dtype == np.uint8
    assert sample.shape == (480, 3 * 640, 3)
    assert 0 < fused.std()  # not a blank image
