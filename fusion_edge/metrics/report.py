"""Score tables of several fusion methods over a set of image pairs: markdown, CSV and JSON."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class MethodScores:
    """One method's metric values per image (keyed by image name), in insertion order."""

    name: str
    per_image: dict[str, dict[str, float]] = field(default_factory=dict)

    def mean(self, metrics: list[str]) -> dict[str, float]:
        """Mean over the images; inf if any image is inf (e.g. PSNR of an exact copy), NaN if none."""
        out = {}
        for name in metrics:
            values = [scores[name] for scores in self.per_image.values() if name in scores]
            out[name] = math.fsum(values) / len(values) if values else math.nan
        return out


def format_value(value: float, digits: int = 4) -> str:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{digits}f}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def mean_table(methods: list[MethodScores], metrics: list[str]) -> str:
    """Methods as rows, metrics as columns, the mean over all images in each cell."""
    rows = []
    for method in methods:
        means = method.mean(metrics)
        rows.append([method.name, *(format_value(means[m]) for m in metrics)])
    return markdown_table(["method", *metrics], rows)


def markdown_report(methods: list[MethodScores], metrics: list[str], context: list[str] | None = None) -> str:
    """The mean table, then one per-image table per method."""
    count = max((len(m.per_image) for m in methods), default=0)
    parts = ["# Fusion metrics\n", *(f"{line}  \n" for line in context or []), f"\n## Mean over {count} pairs\n\n"]
    parts.append(mean_table(methods, metrics))
    for method in methods:
        parts.append(f"\n## {method.name}: per image\n\n")
        rows = [[image, *(format_value(s[m]) for m in metrics)] for image, s in method.per_image.items()]
        means = method.mean(metrics)
        rows.append(["**mean**", *(format_value(means[m]) for m in metrics)])
        parts.append(markdown_table(["image", *metrics], rows))
    return "".join(parts)


def csv_text(methods: list[MethodScores], metrics: list[str]) -> str:
    """One row per method and image, then a row with image 'mean' per method; full precision."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["method", "image", *metrics])
    for method in methods:
        for image, scores in method.per_image.items():
            writer.writerow([method.name, image, *(repr(float(scores[m])) for m in metrics)])
        means = method.mean(metrics)
        writer.writerow([method.name, "mean", *(repr(float(means[m])) for m in metrics)])
    return buf.getvalue()


def json_text(methods: list[MethodScores], metrics: list[str], extra: dict | None = None) -> str:
    """{"metrics": [...], "methods": {name: {"mean": {...}, "per_image": {...}}}, ...extra}.

    Non-finite values (PSNR of an exact copy) are written as null: JSON has no infinity.
    """

    def clean(value: float) -> float | None:
        return float(value) if math.isfinite(value) else None

    doc = {
        **(extra or {}),
        "metrics": metrics,
        "methods": {
            m.name: {
                "mean": {k: clean(v) for k, v in m.mean(metrics).items()},
                "per_image": {img: {k: clean(s[k]) for k in metrics} for img, s in m.per_image.items()},
            }
            for m in methods
        },
    }
    return json.dumps(doc, indent=2, allow_nan=False) + "\n"


def write_text(path: Path, text: str) -> None:
    """Write through a temporary file and rename, so a failure never leaves half a report."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
