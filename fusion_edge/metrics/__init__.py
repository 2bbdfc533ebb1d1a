"""Image-fusion quality metrics of a fused image against its infrared and visible sources.

Every metric takes grey images on the 0..255 scale (uint8, uint16 scaled, float 0..255, or BGR
converted to grey) and is called ``metric(fused, ir, vis)``. Conventions follow the FusionMamba
paper's tables: MS-SSIM and FMI as in the widely used MATLAB fusion-metric code, SCD, VIF and
Qabf (and EN, SD, SF, AG, MI, SSIM) as in CDDFuse's Python evaluator. Each function's docstring
states its formula and convention; docs/metrics.md has the summary. numpy + OpenCV only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fusion_edge.metrics.correlation import scd
from fusion_edge.metrics.fidelity import psnr
from fusion_edge.metrics.fmi import fmi
from fusion_edge.metrics.gradient import qabf
from fusion_edge.metrics.information import mutual_information, mutual_information_pair
from fusion_edge.metrics.statistics import average_gradient, entropy, spatial_frequency, standard_deviation
from fusion_edge.metrics.structural import ms_ssim, ssim, ssim_index
from fusion_edge.metrics.vif import vif, vif_pair


@dataclass(frozen=True)
class Metric:
    name: str
    fn: Callable[[np.ndarray, np.ndarray, np.ndarray], float]
    description: str
    higher_is_better: bool = True


def en(fused: np.ndarray, ir: np.ndarray | None = None, vis: np.ndarray | None = None) -> float:
    """EN of the fused image (bits); the sources are ignored. See ``entropy``."""
    return entropy(fused)


def sd(fused: np.ndarray, ir: np.ndarray | None = None, vis: np.ndarray | None = None) -> float:
    """SD of the fused image; the sources are ignored. See ``standard_deviation``."""
    return standard_deviation(fused)


def sf(fused: np.ndarray, ir: np.ndarray | None = None, vis: np.ndarray | None = None) -> float:
    """SF of the fused image; the sources are ignored. See ``spatial_frequency``."""
    return spatial_frequency(fused)


def ag(fused: np.ndarray, ir: np.ndarray | None = None, vis: np.ndarray | None = None) -> float:
    """AG of the fused image; the sources are ignored. See ``average_gradient``."""
    return average_gradient(fused)


mi = mutual_information

# The table order of the README and of ``fusion-edge eval``.
METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("EN", en, "entropy of the fused image, bits"),
        Metric("SD", sd, "standard deviation of the fused image (0-255)"),
        Metric("SF", sf, "spatial frequency of the fused image"),
        Metric("AG", ag, "average gradient of the fused image"),
        Metric("MI", mutual_information, "MI(F;IR) + MI(F;VIS), nats"),
        Metric("SCD", scd, "sum of the correlations of differences"),
        Metric("VIF", vif, "VIF(IR->F) + VIF(VIS->F)"),
        Metric("Qabf", qabf, "gradient (edge) preservation"),
        Metric("SSIM", ssim, "SSIM(F,IR) + SSIM(F,VIS)"),
        Metric("MS-SSIM", ms_ssim, "multi-scale MEF-SSIM against both sources"),
        Metric("FMI", fmi, "feature (pixel) mutual information, 3x3 windows"),
        Metric("PSNR", psnr, "PSNR against both sources, dB"),
    )
}


def resolve_names(names: list[str] | tuple[str, ...] | None) -> list[str]:
    """Canonical metric names from user spellings (case and '-'/'_' insensitive); all when None."""
    if not names:
        return list(METRICS)
    lookup = {_key(name): name for name in METRICS}
    resolved, unknown = [], []
    for name in names:
        canonical = lookup.get(_key(name))
        if canonical is None:
            unknown.append(name)
        elif canonical not in resolved:
            resolved.append(canonical)
    if unknown:
        raise ValueError(f"unknown metric(s): {', '.join(unknown)}; choose from: {', '.join(METRICS)}")
    return resolved


def compute_metrics(
    fused: np.ndarray, ir: np.ndarray, vis: np.ndarray, names: list[str] | tuple[str, ...] | None = None
) -> dict[str, float]:
    """The named metrics (all by default) of one fused image, in table order."""
    return {name: float(METRICS[name].fn(fused, ir, vis)) for name in resolve_names(names)}


def _key(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


__all__ = [
    "METRICS",
    "Metric",
    "ag",
    "average_gradient",
    "compute_metrics",
    "en",
    "entropy",
    "fmi",
    "mi",
    "ms_ssim",
    "mutual_information",
    "mutual_information_pair",
    "psnr",
    "qabf",
    "resolve_names",
    "scd",
    "sd",
    "sf",
    "spatial_frequency",
    "ssim",
    "ssim_index",
    "standard_deviation",
    "vif",
    "vif_pair",
]
