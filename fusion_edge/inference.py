"""Fuse image arrays with a PyTorch model: the path behind ``fusion-edge fuse``, ``demo`` and ``eval``."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import torch

from fusion_edge.imaging import from_unit_float, merge_luma, split_luma, to_grey, to_unit_float
from fusion_edge.models.checkpoint import load_checkpoint
from fusion_edge.models.fusion_mamba import FusionMamba
from fusion_edge.models.packaged import DEFAULT_NAME, PACKAGED_WEIGHTS, packaged_weights_path
from fusion_edge.models.presets import create_model

log = logging.getLogger(__name__)

DEFAULT_WEIGHTS = PACKAGED_WEIGHTS[DEFAULT_NAME]


def default_weights_path() -> Path | None:
    """The trained weights that ship inside the package, if this build has them."""
    return packaged_weights_path(DEFAULT_NAME)


def load_model(
    checkpoint: str | Path | None = None,
    preset: str | None = None,
    device: str | torch.device = "cpu",
    *,
    random_init: bool = False,
) -> FusionMamba:
    """An inference-ready model: LDCs folded, dead weights dropped, eval mode.

    Without a checkpoint the packaged default weights are used; ``random_init`` builds
    ``preset`` with random weights instead (for tests and benchmarks).
    """
    if random_init:
        model = create_model(preset or "edge")
    else:
        if checkpoint is None:
            checkpoint = default_weights_path()
            if checkpoint is None:
                raise FileNotFoundError("this build ships no default weights; pass --checkpoint PATH")
        model = load_checkpoint(checkpoint, preset=preset)
    return model.for_inference().to(device)


def fuse_arrays(model: FusionMamba, ir: np.ndarray, vis: np.ndarray) -> np.ndarray:
    """Fuse one IR/visible pair given as arrays; returns an image like ``vis`` (dtype, grey or BGR).

    IR may be grey or BGR (converted to grey); a colour visible image is fused on its luma
    (YCrCb) and keeps its chroma. IR of another size is resized onto the visible grid.
    """
    for name, image in (("ir", ir), ("vis", vis)):
        if not isinstance(image, np.ndarray):
            raise ValueError(f"{name} must be a numpy array, got {type(image).__name__}")
        if image.ndim not in (2, 3) or image.size == 0:
            raise ValueError(f"{name} must be a non-empty (H, W) or (H, W, 3) image, got shape {image.shape}")
    ir_unit = to_unit_float(to_grey(ir))
    vis_unit = to_unit_float(vis)
    height, width = vis.shape[:2]
    if ir_unit.shape != (height, width):
        log.warning("infrared %sx%s resized onto the visible grid %sx%s", *ir_unit.shape[::-1], width, height)
        ir_unit = cv2.resize(ir_unit, (width, height), interpolation=cv2.INTER_CUBIC)
    colour = vis_unit.ndim == 3
    if colour:
        vis_y, crcb = split_luma(vis_unit)
    else:
        vis_y = vis_unit
    device = next(model.parameters()).device
    with torch.inference_mode():
        x1 = torch.from_numpy(np.ascontiguousarray(vis_y))[None, None].to(device)
        x2 = torch.from_numpy(np.ascontiguousarray(ir_unit))[None, None].to(device)
        fused = model(x1, x2).clamp_(0.0, 1.0)[0, 0].float().cpu().numpy()
    if colour:
        fused = merge_luma(fused, crcb)
    return from_unit_float(fused, vis.dtype)
