"""benchmarks/compile_variants.py and benchmarks/es2d_delta.py without a GPU: the variant table is
consistent with the modes the model code accepts, and the report renders what the GPU workers return."""

import argparse
import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from fusion_edge.ops import es2d, fusable

REPO = Path(__file__).resolve().parents[1]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return module


@pytest.fixture(scope="module")
def cv():
    return _script("compile_variants")


def test_every_variant_sets_modes_the_model_accepts(cv, monkeypatch):
    monkeypatch.setattr(fusable, "_default_impl", fusable.get_default_impl())  # restored afterwards
    for name, variant in cv.VARIANTS.items():
        monkeypatch.setattr(es2d, "_projection", "auto")
        monkeypatch.setattr(es2d, "_delta", "auto")
        monkeypatch.setattr(es2d, "_scan_form", "auto")
        fusable.set_default_impl(variant.forms)  # raises on an unknown form
        es2d.set_projection(variant.projection)
        es2d.set_delta(variant.delta)
        es2d.set_scan_form(variant.scan_form)
        assert isinstance(variant.options, dict) and isinstance(variant.cross_stream, bool), name
    # every inductor option a variant sets exists under that name (plain or dotted: triton.x, test_configs.x)
    import torch._inductor.config as inductor_config

    for name, variant in cv.VARIANTS.items():
        for key in variant.options:
            if key == "decompose_mm":  # a pass's size limit, set by _apply_inductor_options itself
                continue
            owner, _, leaf = key.rpartition(".")
            assert hasattr(getattr(inductor_config, owner) if owner else inductor_config, leaf), (name, key)
    # the A/B pairs differ in the one thing they compare
    assert cv.VARIANTS["gemm"].delta == "auto" and cv.VARIANTS["scan-delta"].delta == "kernel"
    fixed, reductions = cv.VARIANTS["fixed-pointwise"].options, cv.VARIANTS["fixed-reductions"].options
    assert {k: v for k, v in reductions.items() if k != "test_configs.force_filter_reduction_configs"} == fixed
    assert cv.VARIANTS["lib-delta"].delta == "library"
    assert cv.VARIANTS["stream"].cross_stream and not cv.VARIANTS["gemm"].cross_stream
    fused, routes = cv.VARIANTS["fused-scans"], cv.VARIANTS["route-scans"]
    assert (fused.scan_form, routes.scan_form) == ("fused", "routes")
    assert fused._replace(scan_form="auto") == routes._replace(scan_form="auto") == cv.VARIANTS["fixed-pointwise"]
    assert not cv.VARIANTS["map-gather"].conv_gather and cv.VARIANTS["fixed-pointwise"].conv_gather
    assert cv.VARIANTS["map-gather"]._replace(conv_gather=True) == cv.VARIANTS["fixed-pointwise"]
    assert cv.VARIANTS["separate-gelu"]._replace(gelu_epilogue="auto") == cv.VARIANTS["fixed-pointwise"]
    assert cv.VARIANTS["separate-gelu"].gelu_epilogue == "off"
    assert cv.VARIANTS["separate-norm"]._replace(merge_norm=True) == cv.VARIANTS["fixed-pointwise"]
    assert not cv.VARIANTS["separate-norm"].merge_norm
    with pytest.raises(argparse.ArgumentTypeError, match="unknown variants"):
        cv._variant_list("gemm,fastest")


def test_gpu_table_shows_the_one_stream_column_only_where_timed(cv):
    args = argparse.Namespace(preset="paper", size=(512, 640), scope="blocks")
    common = dict(p50_ms=7.467, p10_ms=7.445, p90_ms=7.499, queued_p50_ms=7.441, launch_us=5626.0, kernels=1041.0,
                  busy_ms=8.02, compile_s=169.2, max_diff=0.013)
    results = [dict(variant="stream", one_stream_p50_ms=7.571, top=[("fe_es2d_lanes_scan_f16_l8", 24.0, 1171.4)],
                    **common),
               dict(variant="gemm", one_stream_p50_ms=None, **common),
               dict(variant="autotune", error="CompileTimeout: compiling variant autotune took longer than 330 s")]
    text = cv._table(args, results)
    assert "| stream | 7.467 | 7.445 | 7.499 | 7.441 | 7.571 | 5626 | 1041 | 8.020 | 169.2 | 0.013 |" in text
    assert "| gemm | 7.467 | 7.445 | 7.499 | 7.441 | - | 5626 |" in text
    assert "| autotune | error: CompileTimeout" in text
    assert "| `fe_es2d_lanes_scan_f16_l8` | 24 | 1171.4 |" in text
    header = next(line for line in text.splitlines() if line.startswith("| variant"))
    row = next(line for line in text.splitlines() if line.startswith("| stream"))
    assert header.count("|") == row.count("|")


def test_es2d_delta_benchmark_names_the_models_rule_and_needs_a_gpu(monkeypatch):
    monkeypatch.setattr(es2d, "_delta", "auto")
    had_kernels = "kernels" in sys.modules
    try:
        module = _script("es2d_delta")  # imports benchmarks/kernels.py as top-level "kernels"
        # paper stage 1 and edge stage 4 at 512x640, as in benchmarks/results/es2d_delta_h100.md
        assert module.rule_picks(torch.empty(1, 192, 128, 160, device="meta"), 6) == "GEMM"
        assert module.rule_picks(torch.empty(2, 256, 16, 20, device="meta"), 8) == "scan"
        if not torch.cuda.is_available():
            with pytest.raises(SystemExit):
                module.main([])
    finally:
        if not had_kernels:
            sys.modules.pop("kernels", None)
