"""Combine several ``bench.json`` files (one per preset or precision) into one table, JSON and plot.

    python -m fusion_edge.bench.merge RUN_DIR_OR_JSON... --out DIR [--name bench_gpu]

Writes NAME.md (one section per model, precision and batch: runs of the same model split over
several processes share a section), NAME.json (the runs, unchanged) and NAME.png (every
backend of every run, labelled ``preset backend precision``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from fusion_edge.bench.cost import FrameCost
from fusion_edge.bench.plot import render_series
from fusion_edge.bench.report import _atomic_write, markdown_table
from fusion_edge.bench.runner import BenchReport, ResultRow


def load_reports(path: Path) -> list[tuple[BenchReport, dict]]:
    """BenchReports rebuilt from a bench.json (or the folder holding one), each with its raw JSON.
    A merged file (a JSON list of runs, as this module writes) gives all of its runs, so merged
    results can be merged again."""
    path = Path(path)
    if path.is_dir():
        path = path / "bench.json"
    if not path.is_file():
        raise FileNotFoundError(f"no bench.json at {path}")
    data = json.loads(path.read_text())
    runs = data if isinstance(data, list) else [data]
    if not all(isinstance(run, dict) and "results" in run for run in runs):
        raise ValueError(f"{path} is not a bench result (a run, or a list of runs, with 'results')")
    return [(_report(run), run) for run in runs]


def _report(data: dict) -> BenchReport:
    rows = [ResultRow(**_known(ResultRow, row)) for row in data["results"]]
    costs = {size: (FrameCost(**_known(FrameCost, c)) if c else None) for size, c in data["cost_per_frame"].items()}
    return BenchReport(data["config"], data["model"], data["environment"], costs, rows)


def _known(cls, values: dict) -> dict:
    """Only the fields ``cls`` has, so files from older or newer versions still load."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in values.items() if k in names}


def _precision(config: dict) -> str:
    if not config.get("fp16"):
        return "fp32"
    return "fp16 (float16 model)" if config.get("torch_fp16") == "half" else "fp16"


def combine(reports: list[BenchReport]) -> BenchReport:
    """One report from runs of the same model, precision and batch (split into several processes):
    their rows in (size, backend) order, and the FLOP/byte counts any of them made."""
    from fusion_edge.bench.config import BACKENDS

    first = reports[0]
    costs: dict = {}
    for report in reports:
        for size, cost in report.costs.items():
            if costs.get(size) is None:
                costs[size] = cost
    rows = [row for report in reports for row in report.rows]
    backend_rank = {name: i for i, name in enumerate(BACKENDS)}
    rows.sort(key=lambda r: (r.height * r.width, r.height, backend_rank.get(r.backend, len(BACKENDS))))
    return BenchReport(first.config, first.model, first.environment, costs, rows)


def merge(paths: list[Path], out_dir: Path, name: str, note: str = "") -> dict[str, Path]:
    loaded = [run for p in paths for run in load_reports(p)]
    groups: dict[tuple, list[BenchReport]] = {}
    for report, data in loaded:
        key = (report.model, _precision(report.config), report.config["batch"], data.get("device"))
        groups.setdefault(key, []).append(report)
    sections, series, sizes = ([note, ""] if note else []), {}, set()
    for (model, precision, batch, _), reports in groups.items():
        report = combine(reports)
        sections += [f"## {model}, {precision}, batch {batch}", "", markdown_table(report), ""]
        preset = report.config.get("preset") or report.model
        for r in report.rows:
            sizes.add((r.height, r.width))
            if r.status == "ok":
                series.setdefault(f"{preset} {r.backend} {r.precision}", []).append(((r.height, r.width),
                                                                                      r.latency_ms))
    devices = sorted({data["device"] for _, data in loaded})
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths_out = {"md": out_dir / f"{name}.md", "json": out_dir / f"{name}.json", "png": out_dir / f"{name}.png"}
    _atomic_write(paths_out["md"], ("\n".join(sections).rstrip() + "\n").encode())
    _atomic_write(paths_out["json"], (json.dumps([data for _, data in loaded], indent=2) + "\n").encode())
    _atomic_write(paths_out["png"], render_series(series, sizes, "p50 latency per backend", "; ".join(devices)))
    return paths_out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fusion_edge.bench.merge", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="bench.json files or the folders holding them")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--name", default="bench", help="file name stem (default: bench)")
    parser.add_argument("--note", default="", help="a paragraph to put above the tables (markdown)")
    args = parser.parse_args(argv)
    try:
        written = merge(args.runs, args.out, args.name, args.note)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        print(f"merge: error: {exc}", file=sys.stderr)
        return 2
    print("wrote " + ", ".join(str(p) for p in written.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
