"""The benchmark's outputs: a markdown table for the terminal and docs, and ``bench.json``."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from fusion_edge.bench.environment import device_label
from fusion_edge.bench.profile import profile_section
from fusion_edge.bench.runner import BenchReport

SCHEMA_VERSION = 1
COLUMNS = (
    "backend", "size", "batch", "prec", "p50 ms", "p90 ms", "p99 ms", "frames/s", "peak GPU MB",
    "GFLOPs/frame", "MB moved/frame", "compile s", "status",
)


def _num(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if abs(value) >= 100:
        return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.1f}"
    return f"{value:.{digits}f}"


def markdown_table(report: BenchReport) -> str:
    """One row per (backend, size); skipped and failed rows keep their reason in the status column."""
    lines = [
        f"Model: {report.model}. Device: {device_label(report.environment)}.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join("---" for _ in COLUMNS) + "|",
    ]
    for row in report.rows:
        cost = report.costs.get(row.size)
        lat = row.latency_ms or {}
        status = "ok" if row.status == "ok" else f"{row.status}: {row.reason}".replace("|", "/")
        cells = [
            row.backend, row.size, str(row.batch), row.precision,
            _num(lat.get("p50")), _num(lat.get("p90")), _num(lat.get("p99")), _num(row.throughput_fps, 1),
            _num(row.peak_memory_mb, 0) if row.peak_memory_mb is not None else "n/a",
            _num(cost.gflops) if cost else "n/a", _num(cost.mbytes, 1) if cost else "n/a",
            _num(row.compile_s, 1) if row.compile_s is not None else "", status,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    noted = [row for row in report.rows if row.notes]
    if noted:
        lines += ["", "Notes:"]
        lines += [f"- {row.backend} {row.size} {row.precision}: {'; '.join(row.notes)}" for row in noted]
    lines += profile_section(report.rows)
    software = report.environment["software"]
    versions = ", ".join(f"{k} {v}" for k, v in software.items() if v and k != "onnxruntime_providers")
    lines += ["", f"Software: {versions}."]
    load = report.environment.get("load_average_1min") or {}
    if load.get("start") is not None:
        lines.append(f"Machine load average (1 min) at start / end: {load['start']} / {load['end']}.")
    return "\n".join(lines)


def to_json(report: BenchReport) -> dict:
    return {
        "schema": SCHEMA_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": report.model,
        "device": device_label(report.environment),
        "environment": report.environment,
        "config": report.config,
        "cost_per_frame": {size: (c.to_dict() if c else None) for size, c in report.costs.items()},
        "results": [row.to_dict() for row in report.rows],
    }


def write_outputs(report: BenchReport, out_dir: Path, plot: bool = True) -> dict[str, Path]:
    """Write bench.md, bench.json and (with ``plot``) bench.png into ``out_dir``; each appears complete
    or not at all."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"md": out_dir / "bench.md", "json": out_dir / "bench.json"}
    _atomic_write(paths["md"], (markdown_table(report) + "\n").encode())
    _atomic_write(paths["json"], (json.dumps(to_json(report), indent=2) + "\n").encode())
    if plot:
        from fusion_edge.bench.plot import render_latency_plot

        paths["png"] = out_dir / "bench.png"
        _atomic_write(paths["png"], render_latency_plot(report))
    return paths


def _atomic_write(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    partial.replace(path)
