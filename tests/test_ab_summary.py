"""benchmarks/ab_summary.py: the before / after tables keep each tree's fastest round, name shapes that one
tree lacks, and put the compiled presets side by side."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ab():
    spec = importlib.util.spec_from_file_location("ab_summary", REPO / "benchmarks" / "ab_summary.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["ab_summary"] = module
    spec.loader.exec_module(module)
    return module


def _record(kind, stage, ms, batch=1, plan=(4, 16)):
    return dict(kind=kind, preset="paper", res=[512, 640], stage=stage, batch=batch, plan=list(plan), plan_ms=ms)


def _write_round(folder: Path, tree: str, number: int, records: list) -> None:
    path = folder / f"variants_{tree}_{number}"
    path.mkdir()
    (path / "variants.json").write_text(json.dumps(dict(device="test", sms=132, records=records)))


def test_fastest_round_per_tree_and_geometric_mean(ab, tmp_path):
    _write_round(tmp_path, "base", 1, [_record("scan", 1, 0.10), _record("scan", 2, 0.04)])
    _write_round(tmp_path, "base", 2, [_record("scan", 1, 0.08), _record("scan", 2, 0.05)])
    _write_round(tmp_path, "new", 1, [_record("scan", 1, 0.05), _record("scan", 2, 0.04)])
    _write_round(tmp_path, "new", 2, [_record("scan", 1, 0.06), _record("scan", 2, 0.02)])
    text = ab.summary(tmp_path)
    assert "| paper | 512x640 | 1 | 1 | 4, 16 | 0.0800 | 0.0500 | 1.60x |" in text
    assert "| paper | 512x640 | 2 | 1 | 4, 16 | 0.0400 | 0.0200 | 2.00x |" in text
    assert "Geometric mean speed-up over 2 shapes: 1.789x (worst 1.60x, best 2.00x)." in text
    assert "Rounds: 2 of the base tree, 2 of the new one" in text
    assert "Fused ES2D" not in text  # no ES2D records, no empty table


def test_a_shape_one_tree_lacks_is_listed_not_dropped(ab, tmp_path):
    _write_round(tmp_path, "base", 1, [_record("es2d", 1, 0.2), _record("es2d", 3, 0.1)])
    _write_round(tmp_path, "new", 1, [_record("es2d", 1, 0.25)])
    text = ab.summary(tmp_path)
    assert "| paper | 512x640 | 3 | 1 | - | 0.1000 | - | missing |" in text
    assert "| paper | 512x640 | 1 | 1 | 4, 16 | 0.2000 | 0.2500 | 0.80x |" in text
    assert "over 1 shapes" in text


def test_compiled_presets_side_by_side(ab, tmp_path):
    table = ("| variant | p50 ms | p10 ms |\n|---|---|---|\n| stream | {} | 1.0 |\n")
    (tmp_path / "compiled_edge_base.md").write_text("# title\n\n" + table.format("1.546"))
    (tmp_path / "compiled_edge_new.md").write_text(table.format("1.482"))
    (tmp_path / "compiled_paper_base.md").write_text(table.format("6.701"))  # its new run did not finish
    text = ab.summary(tmp_path)
    assert "| edge | stream | 1.5460 | 1.4820 |" in text
    assert "| paper | stream | 6.7010 | - |" in text


def test_an_empty_folder_is_a_clear_error(ab, tmp_path):
    with pytest.raises(SystemExit, match="no variants_base"):
        ab.summary(tmp_path)
