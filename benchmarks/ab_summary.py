"""Before / after tables from the raw results of two source trees timed on one GPU machine.

    python benchmarks/ab_summary.py DIR [--out ab.md]

DIR is what ``benchmarks/ab_kernels.sh`` leaves: ``variants_base_N/variants.json`` and
``variants_new_N/variants.json`` (``benchmarks/scan_variants.py --plans-only`` runs, N counting the rounds),
and ``compiled_PRESET_{base,new}.md`` (``benchmarks/compile_variants.py`` tables). Per scan and ES2D shape it
keeps each tree's fastest round (rounds alternate base, new, base, new, so drift hits both alike), prints the
speed-up and the geometric mean, and puts the compiled presets' rows side by side. A shape missing from
either tree (a round cut short by its time budget) is listed as missing, never dropped silently.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

TITLES = {
    "scan": "Selective scan (float16, N=16, 4 groups, softplus, D, delta_bias)",
    "es2d": "Fused ES2D op (projection + delta + scan; x float16)",
}


def _shape_key(record: dict) -> tuple:
    return (record["kind"], record["preset"], tuple(record["res"]), record["stage"], record["batch"])


def load_rounds(folder: Path, tree: str) -> list[list[dict]]:
    """The plan records of every round of ``tree`` ("base" or "new"), in round order."""
    rounds = sorted(folder.glob(f"variants_{tree}_*/variants.json"),
                    key=lambda p: int(p.parent.name.rsplit("_", 1)[1]))
    return [json.loads(p.read_text())["records"] for p in rounds]


def best_times(rounds: list[list[dict]]) -> tuple[dict[tuple, float], dict[tuple, list]]:
    """Per shape: the fastest time of the chosen plan over the rounds, and that plan."""
    best: dict[tuple, float] = {}
    plans: dict[tuple, list] = {}
    for records in rounds:
        for record in records:
            key = _shape_key(record)
            if record.get("plan_ms") is None:
                continue
            if key not in best or record["plan_ms"] < best[key]:
                best[key] = record["plan_ms"]
            plans[key] = record.get("plan")
    return best, plans


def shape_tables(base: list[list[dict]], new: list[list[dict]]) -> list[str]:
    """Markdown tables, one per kind, of base against new per shape, with the geometric mean."""
    base_ms, _ = best_times(base)
    new_ms, plans = best_times(new)
    lines: list[str] = []
    for kind, title in TITLES.items():
        keys = [k for k in dict.fromkeys([*base_ms, *new_ms]) if k[0] == kind]
        if not keys:
            continue
        lines += [f"### {title}", "", "| preset | HxW | stage | batch | plan (lanes, chunks) | before ms | after ms "
                  "| speed-up |", "|---|---|---|---|---|---|---|---|"]
        logs = []
        for key in keys:
            _, preset, (height, width), stage, batch = key
            plan = plans.get(key)
            plan_text = f"{plan[0]}, {plan[1]}" if plan else "-"
            before, after = base_ms.get(key), new_ms.get(key)
            if before is None or after is None:
                lines.append(f"| {preset} | {height}x{width} | {stage} | {batch} | {plan_text} | "
                             f"{_ms(before)} | {_ms(after)} | missing |")
                continue
            logs.append(math.log(before / after))
            lines.append(f"| {preset} | {height}x{width} | {stage} | {batch} | {plan_text} | {before:.4f} | "
                         f"{after:.4f} | {before / after:.2f}x |")
        if logs:
            lines += ["", f"Geometric mean speed-up over {len(logs)} shapes: {math.exp(sum(logs) / len(logs)):.3f}x "
                      f"(worst {math.exp(min(logs)):.2f}x, best {math.exp(max(logs)):.2f}x)."]
        lines.append("")
    return lines


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


_ROW = re.compile(r"^\| (\S+) \| ([\d.]+) \|")


def compiled_rows(folder: Path) -> list[str]:
    """The compiled presets' p50 side by side, from compile_variants.py's tables (first variant row each)."""
    lines = ["| preset | variant | before p50 ms | after p50 ms |", "|---|---|---|---|"]
    found = False
    for before_file in sorted(folder.glob("compiled_*_base.md")):
        preset = before_file.name[len("compiled_"):-len("_base.md")]
        after_file = folder / f"compiled_{preset}_new.md"
        before = _first_row(before_file)
        after = _first_row(after_file) if after_file.exists() else None
        variant = (before or after or ("-", None))[0]
        lines.append(f"| {preset} | {variant} | {_ms(before and before[1])} | {_ms(after and after[1])} |")
        found = True
    return lines if found else []


def _first_row(path: Path) -> tuple[str, float] | None:
    for line in path.read_text().splitlines():
        match = _ROW.match(line)
        if match and match.group(1) != "variant":
            return match.group(1), float(match.group(2))
    return None


def summary(folder: Path) -> str:
    base, new = load_rounds(folder, "base"), load_rounds(folder, "new")
    if not base and not new and not list(folder.glob("compiled_*_base.md")):
        raise SystemExit(f"{folder}: no variants_base_*/variants.json, variants_new_*/variants.json or "
                         "compiled_*_base.md to summarise")
    lines = [f"Rounds: {len(base)} of the base tree, {len(new)} of the new one (each shape keeps its fastest).", ""]
    lines += shape_tables(base, new)
    compiled = compiled_rows(folder)
    if compiled:
        lines += ["### Compiled presets (benchmarks/compile_variants.py, compiled side by side, timed in turns)", "",
                  *compiled, ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="the OUT folder of benchmarks/ab_kernels.sh")
    parser.add_argument("--out", type=Path, help="also write the tables to this markdown file")
    args = parser.parse_args()
    text = summary(args.folder)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
