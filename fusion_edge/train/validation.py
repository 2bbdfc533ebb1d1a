"""Validation each epoch: the training loss on whole held-out pairs plus image-quality metrics.

The loss terms and MS-SSIM against each source are always reported. When ``fusion_edge.metrics``
is installed alongside, its fusion metrics (Qabf, VIF, SCD, ...) are added, computed on the
fused image as the evaluation command scores it (uint8 grey).
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader

from fusion_edge.train.losses import FusionLoss, clamp_unit, msssim_reference

# Metrics of fusion_edge.metrics reported during training (cheap enough to run every epoch).
QUALITY_METRICS = ("qabf", "vif", "scd")


def _metric_functions() -> dict[str, Callable]:
    try:
        metrics = importlib.import_module("fusion_edge.metrics")
    except ImportError:
        return {}
    found = {}
    for name in QUALITY_METRICS:
        fn = getattr(metrics, name, None)
        if callable(fn):
            found[name] = fn
    return found


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(1, 1, H, W) in [0, 1] -> (H, W) uint8, rounded."""
    return (x[0, 0].float().clamp(0, 1) * 255.0).round().to(torch.uint8).cpu().numpy()


@torch.no_grad()
def validate(
    model: torch.nn.Module,
    loader: DataLoader,
    loss_fn: FusionLoss,
    device: torch.device,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> dict[str, float]:
    """Mean of each quantity over the validation pairs (batch size 1: sizes differ)."""
    was_training = model.training
    model.eval()
    quality = _metric_functions()
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    try:
        for vis, ir in loader:
            vis, ir = vis.to(device, non_blocking=True), ir.to(device, non_blocking=True)
            with autocast():
                out = model(vis, ir)
            fused = clamp_unit(out.float())
            total, terms = loss_fn(fused, vis, ir)
            values = {
                "loss": float(total),
                **{f"loss_{k}": float(v) for k, v in terms.items()},
                "msssim_vis": float(msssim_reference(fused, vis)),
                "msssim_ir": float(msssim_reference(fused, ir)),
            }
            if quality:
                f8, v8, i8 = to_uint8(fused), to_uint8(vis), to_uint8(ir)
                for name, fn in quality.items():
                    try:
                        values[name] = float(fn(f8, i8, v8))
                    except ValueError:  # image too small for this metric (VIF needs 41 px): leave it out
                        pass
            for key, value in values.items():
                sums[key] = sums.get(key, 0.0) + value
                counts[key] = counts.get(key, 0) + 1
    finally:
        model.train(was_training)
    return {key: value / counts[key] for key, value in sums.items()}
