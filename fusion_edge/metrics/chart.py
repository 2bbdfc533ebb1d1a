"""A bar chart of each metric's mean per method, drawn with OpenCV (no plotting library needed).

One small panel per metric, because the metrics have unrelated scales; bars share colours across
panels, with a legend on top.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

# Colour-blind-safe palette (Okabe-Ito), BGR.
PALETTE = [
    (178, 114, 0),
    (0, 159, 230),
    (115, 158, 0),
    (66, 228, 240),
    (167, 121, 204),
    (0, 94, 213),
    (233, 180, 86),
    (0, 0, 0),
]
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_PANEL_W, _PANEL_H, _COLUMNS = 300, 230, 4


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float = 0.42, colour=(40, 40, 40), bold=1) -> None:
    cv2.putText(img, text, org, _FONT, scale, colour, bold, cv2.LINE_AA)


def _short(value: float) -> str:
    if not math.isfinite(value):
        return "inf" if value == math.inf else ("nan" if math.isnan(value) else "-inf")
    return f"{value:.3g}" if abs(value) >= 100 else f"{value:.3f}"


def bar_chart(means: dict[str, dict[str, float]], metrics: list[str]) -> np.ndarray:
    """BGR image: for each metric a panel with one bar per method (the mean over the images)."""
    methods = list(means)
    if not methods or not metrics:
        raise ValueError("bar_chart needs at least one method and one metric")
    legend_rows = math.ceil(len(methods) / 3)
    top = 20 + 22 * legend_rows
    rows = math.ceil(len(metrics) / _COLUMNS)
    width = _PANEL_W * min(len(metrics), _COLUMNS)
    img = np.full((top + rows * _PANEL_H, max(width, 3 * 200), 3), 255, np.uint8)
    for i, method in enumerate(methods):
        x, y = 12 + (i % 3) * 200, 18 + (i // 3) * 22
        cv2.rectangle(img, (x, y - 10), (x + 14, y + 2), PALETTE[i % len(PALETTE)], -1)
        _text(img, method[:24], (x + 20, y), 0.45)
    for k, metric in enumerate(metrics):
        ox, oy = (k % _COLUMNS) * _PANEL_W, top + (k // _COLUMNS) * _PANEL_H
        _panel(img, ox, oy, metric, [means[m].get(metric, math.nan) for m in methods])
    return img


def _panel(img: np.ndarray, ox: int, oy: int, title: str, values: list[float]) -> None:
    _text(img, title, (ox + 12, oy + 20), 0.55, (0, 0, 0), 1)
    left, right, top, bottom = ox + 16, ox + _PANEL_W - 12, oy + 44, oy + _PANEL_H - 16
    finite = [v for v in values if math.isfinite(v)]
    lo = min(0.0, *finite) if finite else 0.0
    hi = max(0.0, *finite) if finite else 1.0
    if hi == lo:
        hi = lo + 1.0

    def y_of(v: float) -> int:
        return int(round(bottom - (v - lo) / (hi - lo) * (bottom - top)))

    zero = y_of(0.0)
    cv2.line(img, (left, zero), (right, zero), (120, 120, 120), 1)
    slot = (right - left) / len(values)
    bar = max(int(slot * 0.7), 2)
    for i, v in enumerate(values):
        x0 = int(left + i * slot + (slot - bar) / 2)
        colour = PALETTE[i % len(PALETTE)]
        if math.isfinite(v):
            y = y_of(v)
            cv2.rectangle(img, (x0, min(y, zero)), (x0 + bar, max(y, zero)), colour, -1)
            label_y = y - 4 if v >= 0 else y + 12
        else:
            label_y = top + 10
        label = _short(v)
        (tw, _), _ = cv2.getTextSize(label, _FONT, 0.35, 1)
        _text(img, label, (int(x0 + bar / 2 - tw / 2), max(label_y, top - 4)), 0.35)


def write_png(path, image: np.ndarray) -> None:
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise ValueError(f"cannot encode the chart as PNG for {path}")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data.tobytes())
    tmp.replace(path)
