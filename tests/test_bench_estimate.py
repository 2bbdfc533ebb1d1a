"""The Jetson roofline estimate and merging of bench runs: arithmetic and file handling."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import cv2
import pytest

REPO = Path(__file__).resolve().parents[1]


def _load_estimate():
    spec = importlib.util.spec_from_file_location("jetson_estimate", REPO / "benchmarks" / "jetson_estimate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("jetson_estimate", module)  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


COST = {"height": 100, "width": 200, "dtype": "float16", "gflops": 12.0, "gflops_matmul_conv": 10.0,
        "gflops_scan": 1.5, "gflops_other": 0.5, "mbytes": 400.0, "mbytes_weights": 4.0}


def test_roofline_arithmetic():
    est = _load_estimate()
    work = est.work_from_cost("edge", COST)
    assert work.gflops_other == pytest.approx(2.0)
    assert work.mbytes_fused == pytest.approx(4.0 + 3 * 100 * 200 * 2 / 1e6)
    device = est.Device("test", tensor_fp16_tflops=10.0, cuda_fp32_tflops=1.0, bandwidth_gbs=100.0, source="-")
    e = est.estimate(work, device)
    assert e["compute_ms"] == pytest.approx(10.0 / 10.0 + 2.0 / 1.0)  # GFLOP / TFLOPS = ms
    assert e["memory_eager_ms"] == pytest.approx(4.0)  # 400 MB at 100 GB/s
    assert e["floor_low_ms"] == pytest.approx(3.0) and e["floor_high_ms"] == pytest.approx(4.0)
    assert e["bound"] == "memory"


def test_published_figures_are_consistent():
    """The derived dense FP16 rate reproduces the published Orin Nano 40 TOPS (sparse INT8 = 4x dense FP16)."""
    est = _load_estimate()
    nano = next(d for d in est.DEVICES if d.name == "Orin Nano 8GB")
    agx = next(d for d in est.DEVICES if d.name == "AGX Orin 64GB")
    assert 4 * nano.tensor_fp16_tflops == pytest.approx(40, rel=0.05)
    assert 4 * agx.tensor_fp16_tflops == pytest.approx(170, rel=0.01)
    assert agx.cuda_fp32_tflops == pytest.approx(5.3, rel=0.01)


def _fake_run(folder: Path, preset: str, fp16: bool) -> Path:
    row = {"backend": "torch-chunked", "height": 100, "width": 200, "batch": 1, "precision": "fp16" if fp16 else "fp32",
           "status": "ok", "reason": "", "latency_ms": {"p50": 5.0, "p90": 6.0, "p99": 7.0, "mean": 5.5, "min": 4.0,
                                                         "max": 7.0},
           "throughput_fps": 180.0, "peak_memory_mb": None, "peak_memory_method": "n/a (CPU)", "a_future_field": 1}
    data = {"schema": 1, "model": f"preset {preset}", "device": "test CPU",
            "environment": {"cpu": "test CPU", "cpu_cores": 2, "torch_threads": 1, "gpu": None,
                            "software": {"torch": "x"}},
            "config": {"preset": preset, "batch": 1, "fp16": fp16}, "cost_per_frame": {"100x200": COST},
            "results": [row, {**row, "backend": "torch-cuda", "status": "skipped", "reason": "needs a CUDA GPU",
                              "latency_ms": None}]}
    folder.mkdir(parents=True)
    (folder / "bench.json").write_text(json.dumps(data))
    return folder


def test_merge_writes_one_table_per_run(tmp_path):
    from fusion_edge.bench.merge import main

    runs = [_fake_run(tmp_path / "a", "edge", True), _fake_run(tmp_path / "b", "paper", False)]
    assert main([str(r) for r in runs] + ["--out", str(tmp_path / "m"), "--name", "bench_x"]) == 0
    md = (tmp_path / "m" / "bench_x.md").read_text()
    assert "## preset edge, fp16, batch 1" in md and "## preset paper, fp32, batch 1" in md
    assert "skipped: needs a CUDA GPU" in md
    assert len(json.loads((tmp_path / "m" / "bench_x.json").read_text())) == 2
    assert cv2.imread(str(tmp_path / "m" / "bench_x.png")) is not None
    est = _load_estimate()
    works = est.works_from_json(tmp_path / "m" / "bench_x.json")
    assert [w.label for w in works] == ["edge", "paper"]


def test_merge_reports_a_missing_run(tmp_path, capsys):
    from fusion_edge.bench.merge import main

    assert main([str(tmp_path / "nothing"), "--out", str(tmp_path / "m")]) == 2
    assert "no bench.json" in capsys.readouterr().err
