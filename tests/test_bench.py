"""fusion-edge bench: end to end on the CPU, argument errors, FLOP/byte counting, timing helpers."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from fusion_edge.bench.config import BenchConfig, parse_size
from fusion_edge.bench.cost import frame_cost
from fusion_edge.bench.timing import HostTimer, TimeCapExceeded, measure, percentile
from fusion_edge.cli import main
from fusion_edge.models.presets import preset_config


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    """One real run: the edge preset at 64x64 on torch-chunked and ONNX Runtime CPU, plus a GPU backend."""
    out = tmp_path_factory.mktemp("bench")
    argv = [
        "bench", "--preset", "edge", "--size", "64x64", "--backend", "torch-chunked", "ort-cpu", "torch-cuda",
        "--iters", "3", "--warmup", "0", "--threads", "1", "--device", "cpu", "--out", str(out), "--quiet",
        "--profile", "1",
    ]
    return main(argv), out


def test_profile_says_where_the_time_goes(bench_run):
    code, out = bench_run
    rows = {r["backend"]: r for r in json.loads((out / "bench.json").read_text())["results"]}
    profile = rows["torch-chunked"]["profile"]
    assert profile["device"] == "cpu" and profile["calls"] == 1
    assert profile["busy_ms_per_call"] > 0 and profile["launches_per_call"] > 0
    shares = [op["share"] for op in profile["top"]]
    assert shares and shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 1 + 1e-9
    assert any(op["name"] in ("aten::mm", "aten::addmm", "aten::bmm") for op in profile["top"])  # the matmuls
    assert rows["ort-cpu"]["profile"] is None
    assert "profile: only the PyTorch backends" in " ".join(rows["ort-cpu"]["notes"])
    table = (out / "bench.md").read_text()
    assert "## Profiles" in table and "### torch-chunked 64x64 fp32" in table
    with pytest.raises(ValueError, match="--profile"):
        BenchConfig(preset="edge", profile=-1).validate()


def test_bench_writes_table_json_and_png(bench_run, capsys):
    code, out = bench_run
    assert code == 0
    table = (out / "bench.md").read_text()
    assert "| torch-chunked | 64x64 | 1 | fp32 |" in table and "| ort-cpu | 64x64 |" in table
    data = json.loads((out / "bench.json").read_text())
    assert data["config"]["backends"] == ["torch-chunked", "ort-cpu", "torch-cuda"]
    assert data["environment"]["cpu"] and data["environment"]["software"]["torch"]
    rows = {r["backend"]: r for r in data["results"]}
    for name in ("torch-chunked", "ort-cpu"):
        row = rows[name]
        assert row["status"] == "ok", row["reason"]
        lat = row["latency_ms"]
        assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
        assert row["throughput_fps"] > 0 and row["iters"] == 3
        assert row["peak_memory_mb"] is None and "n/a" in row["peak_memory_method"]
    cost = data["cost_per_frame"]["64x64"]
    assert cost["gflops"] > 0 and cost["mbytes"] > cost["mbytes_weights"] > 0
    # each figure is rounded to 4 decimals, so the parts' sum may be off by 1.5e-4
    assert cost["gflops"] == pytest.approx(cost["gflops_matmul_conv"] + cost["gflops_scan"] + cost["gflops_other"],
                                           rel=1e-3, abs=2e-4)
    image = cv2.imread(str(out / "bench.png"))
    assert image is not None and image.shape[0] > 100 and image.shape[1] > 100
    assert image.std() > 0  # something is drawn


def test_unavailable_backend_is_listed_with_its_reason(bench_run):
    """Run with --device cpu, so the GPU backend must appear as skipped with why, on any machine."""
    _, out = bench_run
    row = {r["backend"]: r for r in json.loads((out / "bench.json").read_text())["results"]}["torch-cuda"]
    assert row["status"] == "skipped" and "GPU" in row["reason"] and row["latency_ms"] is None
    assert "skipped: torch-cuda needs a CUDA GPU" in (out / "bench.md").read_text()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--preset", "edge", "--size", "abc"], "HxW"),
        (["--preset", "edge", "--size", "0x64"], "positive"),
        (["--preset", "huge"], "invalid choice"),
        (["--preset", "edge", "--backend", "torch-magic"], "unknown backend 'torch-magic'"),
        (["--preset", "edge", "--iters", "0"], "--iters must be at least 1"),
        (["--model", "no/such/model.pt"], "not found"),
        (["--preset", "edge", "--device", "tpu"], "--device"),
    ],
)
def test_bad_arguments_give_clear_errors(argv, message, capsys):
    try:
        code = main(["bench", *argv])
    except SystemExit as exc:  # argparse rejects before the handler runs
        code = exc.code
    assert code == 2
    assert message in capsys.readouterr().err


def test_parse_size():
    assert parse_size("480x640") == (480, 640)
    assert parse_size(" 512 X 640 ") == (512, 640)
    for bad in ("640", "4x", "-4x4", "axb"):
        with pytest.raises(ValueError, match="HxW"):
            parse_size(bad)


def test_cpu_defaults_are_modest():
    assert BenchConfig(preset="paper").default_sizes(on_gpu=False) == [(256, 256)]
    assert (1024, 1280) in BenchConfig(preset="paper").default_sizes(on_gpu=True)


def test_flops_positive_and_scale_with_pixels():
    small = frame_cost(preset_config("edge"), 64, 64)
    large = frame_cost(preset_config("edge"), 128, 128)
    assert small.gflops_matmul_conv > 0 and small.gflops_scan > 0 and small.gflops_other > 0
    assert 3.6 < large.gflops / small.gflops < 4.4
    assert 3.6 < large.gflops_scan / small.gflops_scan < 4.4
    # Weights are read once per frame whatever the size, so bytes grow by less than 4x.
    assert small.mbytes < large.mbytes < 4 * small.mbytes
    half = frame_cost(preset_config("edge"), 64, 64, fp16=True)
    assert half.gflops == pytest.approx(small.gflops, rel=1e-6) and half.mbytes < small.mbytes


def test_scan_flops_follow_the_recurrence():
    """One SS2D scan of D channels over L tokens with N states: 7N + 7 FLOPs per channel-token."""
    import torch

    from fusion_edge.bench.cost import _TALLY, COUNT_IMPL, _ensure_count_impl
    from fusion_edge.ops import selective_scan, use_impl

    _ensure_count_impl()
    b, d, n, length = 1, 8, 16, 10
    u = torch.empty(b, d, length, device="meta")
    A, D = torch.empty(d, n, device="meta"), torch.empty(d, device="meta")
    BC = torch.empty(b, 1, n, length, device="meta")
    _TALLY.active, _TALLY.flops = True, 0
    try:
        with use_impl(COUNT_IMPL):
            selective_scan(u, u, A, BC, BC, D=D, delta_bias=D, delta_softplus=True)
    finally:
        _TALLY.active = False
    assert _TALLY.flops == b * d * length * (7 * n + 1 + 3 + 1 + 2)


def test_percentiles_match_numpy():
    values = [5.0, 1.0, 3.0, 2.0, 4.0, 10.0, 7.0]
    for q in (0, 50, 90, 99, 100):
        assert percentile(values, q) == pytest.approx(np.percentile(values, q))


def test_time_cap_skips_instead_of_running_long():
    import time

    calls = []

    def slow():
        calls.append(1)
        time.sleep(0.02)

    with pytest.raises(TimeCapExceeded, match="max-seconds"):
        measure(slow, HostTimer(), warmup=2, iters=100, max_seconds=0.5)
    assert len(calls) == 2  # the first call and the probe only
    resets = []
    calls.clear()
    stats, first = measure(slow, HostTimer(), warmup=2, iters=3, max_seconds=5,
                           after_first_call=lambda: resets.append(len(calls)))
    assert stats.samples == 3 and stats.p50 >= 15 and first > 0
    assert resets == [1] and len(calls) == 2 + 3  # reset right after the first call; 2 warm-up + 3 timed


def test_warm_up_lasts_at_least_warmup_seconds():
    """Short calls: after the counted warm-up, calls continue until warmup_seconds went into warming up
    (each completed, the sync runs after each); a capped (long) run skips the extra warm-up."""
    import time

    calls, syncs = [], []

    def short():
        calls.append(1)
        time.sleep(0.002)

    stats, _ = measure(short, HostTimer(lambda: syncs.append(1)), warmup=2, iters=3, max_seconds=5,
                       warmup_seconds=0.1)
    warm = len(calls) - 3
    assert stats.samples == 3 and warm >= 20  # 0.1 s of 2-ms calls, not just the 2 counted ones
    assert warm <= 60
    calls.clear()
    measure(short, HostTimer(), warmup=2, iters=3, max_seconds=5)
    assert len(calls) == 2 + 3  # warmup_seconds 0: the count alone
    calls.clear()

    def slow():
        calls.append(1)
        time.sleep(0.02)

    measure(slow, HostTimer(), warmup=5, iters=100, max_seconds=0.3, min_iters=5, warmup_seconds=10)
    assert len(calls) < 20  # over the cap: neither the extra counted warm-up nor the seconds run


def _tiny_onnx(path, size=32):
    """A stand-in graph with the model's I/O names: fused = vis + ir, fixed at 1x1xSIZExSIZE."""
    import onnx
    from onnx import TensorProto, helper

    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 1, size, size]) for n in ("vis", "ir")]
    out = helper.make_tensor_value_info("fused", TensorProto.FLOAT, [1, 1, size, size])
    graph = helper.make_graph([helper.make_node("Add", ["vis", "ir"], ["fused"])], "g", inputs, [out])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_onnx_model_runs_at_its_own_size_and_torch_backends_say_why_not(tmp_path, capsys):
    path = _tiny_onnx(tmp_path / "m.onnx")
    argv = ["bench", "--model", str(path), "--backend", "ort-cpu", "torch-chunked", "--iters", "3", "--warmup", "0",
            "--device", "cpu", "--out", str(tmp_path / "out"), "--quiet"]
    assert main(argv) == 0
    rows = {r["backend"]: r for r in json.loads((tmp_path / "out" / "bench.json").read_text())["results"]}
    assert (rows["ort-cpu"]["height"], rows["ort-cpu"]["width"]) == (32, 32)
    assert rows["ort-cpu"]["status"] == "ok" and rows["ort-cpu"]["latency_ms"]["p50"] > 0
    assert rows["torch-chunked"]["status"] == "skipped" and "onnx file" in rows["torch-chunked"]["reason"]


def test_fixed_shape_onnx_rejects_other_sizes(tmp_path):
    from fusion_edge.bench.sources import SourceUnavailable, check_onnx_shape

    path = _tiny_onnx(tmp_path / "m.onnx")
    check_onnx_shape(path, 32, 32, 1)
    with pytest.raises(SourceUnavailable, match="fixed at 1x1x32x32"):
        check_onnx_shape(path, 64, 64, 1)


def test_tensorrt_engine_builds_ahead_of_time(tmp_path):
    """The tensorrt backend's builders (the export package's and the fallback) accept a portable-style
    graph; TensorRT for RTX builds without a GPU, so this runs in CI where it is installed."""
    from fusion_edge.bench.backend_base import BackendUnavailable
    from fusion_edge.bench.backends_trt import _build_local, build_serialized, import_trt

    try:
        trt = import_trt()
    except BackendUnavailable as exc:
        pytest.skip(str(exc))
    path = _tiny_onnx(tmp_path / "m.onnx")
    try:
        engine = build_serialized(trt, path, 1, 32, 32, fp16=False)
    except RuntimeError as exc:  # full TensorRT needs a GPU to build
        pytest.skip(f"{trt.__name__} cannot build here: {exc}")
    assert len(engine) > 1000
    assert len(_build_local(trt, path, 1, 32, 32)) > 1000


def test_compile_timeout_skips_the_backend_and_later_compilations(tmp_path):
    """A compilation past --compile-timeout is interrupted and listed as skipped with the reason; later
    ones in the same run are not attempted. The GPU-only compiled backends say why they cannot run."""
    argv = ["bench", "--preset", "edge", "--size", "64x64", "96x96", "--backend", "torch-compile",
            "torch-cuda-compile", "--iters", "1", "--warmup", "0", "--threads", "1", "--device", "cpu",
            "--compile-timeout", "1", "--out", str(tmp_path), "--quiet"]
    assert main(argv) == 0
    rows = json.loads((tmp_path / "bench.json").read_text())["results"]
    first, second = (r for r in rows if r["backend"] == "torch-compile")
    assert first["status"] == "skipped" and "took longer than 1 s" in first["reason"]
    assert second["status"] == "skipped" and "earlier compilation in this run timed out" in second["reason"]
    gpu_rows = [r for r in rows if r["backend"] == "torch-cuda-compile"]
    assert all(r["status"] == "skipped" and "needs a CUDA GPU" in r["reason"] for r in gpu_rows)


def test_time_budget_lists_what_did_not_fit(tmp_path):
    argv = ["bench", "--preset", "edge", "--size", "64x64", "--backend", "torch-chunked", "ort-cpu", "--iters", "1",
            "--warmup", "0", "--device", "cpu", "--time-budget", "0.000001", "--out", str(tmp_path), "--quiet"]
    assert main(argv) == 0
    rows = json.loads((tmp_path / "bench.json").read_text())["results"]
    assert [r["status"] for r in rows] == ["skipped", "skipped"]
    assert all("time budget" in r["reason"] for r in rows)


class _TinySource:
    """A bench model source holding a small model (every block type, dims 8)."""

    def __init__(self):
        import torch

        from fusion_edge.models.presets import create_model

        torch.manual_seed(0)
        self.model = create_model("edge", dims=8, depths=[1, 1, 1, 1], depths_decoder=[1, 1, 1, 1]).for_inference()

    def torch_model(self, device):
        return self.model


def test_compiled_model_is_built_once_per_size_and_checked_against_eager():
    """The compiled backends share one compilation per size; the note gives the distance to fp32 eager."""
    import torch

    from fusion_edge.bench.backend_base import BenchContext
    from fusion_edge.bench.backends_compile import compiled_model
    from fusion_edge.ops import torch_ops

    ctx = BenchContext(source=_TinySource(), device="cpu", batch=1, fp16=False, compile_backend="eager")
    try:
        with torch_ops.cpu_route():  # the graph of a GPU: the kernels as custom ops
            built = compiled_model(ctx, 32, 32, "cuda")
            assert compiled_model(ctx, 32, 32, "cuda") is built
            with torch.inference_mode():
                out = built.forward()
            assert out.shape == (1, 1, 32, 32)
            assert built.compile_s > 0
            # the traced graph has the elementwise forms of the small ops (fusion_edge.ops.fusable): rounding only
            distance = float(built.notes[-1].split("max |output - fp32 eager| = ")[1].split()[0])
            assert distance < 1e-4
            other = compiled_model(ctx, 32, 64, "cuda")
            assert other is not built and ctx.cache["compiled"][1] is other  # one compiled model kept
    finally:
        torch._dynamo.reset()


def test_elementwise_kernels_take_the_heuristic_configuration_on_the_gpu_unless_asked_to_time_them():
    """Inductor's timed choice among elementwise configurations differs between compilations; on a GPU the
    bench compiles with its heuristic one (the same every time), --autotune-pointwise restores timing."""
    import torch._inductor.config as inductor_config

    from fusion_edge.bench.backend_base import BenchContext
    from fusion_edge.bench.backends_compile import _inductor_options
    from fusion_edge.cli import build_parser

    def ctx(device="cpu", **kw):
        return BenchContext(source=_TinySource(), device=device, batch=1, fp16=False, **kw)

    timed = inductor_config.triton.autotune_pointwise
    assert timed is True  # inductor's own default, which the bench overrides
    with _inductor_options(ctx("cuda", compile_backend="inductor")):
        assert inductor_config.triton.autotune_pointwise is False
    assert inductor_config.triton.autotune_pointwise is timed
    for kept in (ctx("cuda", compile_backend="inductor", compile_autotune_pointwise=True),
                 ctx("cpu", compile_backend="inductor"), ctx("cuda", compile_backend="aot_eager")):
        with _inductor_options(kept):
            assert inductor_config.triton.autotune_pointwise is timed
    parser = build_parser()
    assert parser.parse_args(["bench", "--preset", "edge"]).autotune_pointwise is False
    assert parser.parse_args(["bench", "--preset", "edge", "--autotune-pointwise"]).autotune_pointwise is True


def test_reduction_kernels_take_one_heuristic_configuration_on_the_gpu_unless_asked_to_time_them():
    """Likewise for reductions (LayerNorms, means): one heuristic configuration each on a GPU, the choice
    of inductor's deterministic mode; --autotune-reductions restores timing; noted in the row."""
    import torch._inductor.config as inductor_config

    from fusion_edge.bench.backend_base import BenchContext
    from fusion_edge.bench.backends_compile import _inductor_options
    from fusion_edge.cli import build_parser

    def ctx(device="cpu", **kw):
        return BenchContext(source=_TinySource(), device=device, batch=1, fp16=False, **kw)

    timed = inductor_config.test_configs.force_filter_reduction_configs
    assert timed is False  # inductor's own default: reductions are timed
    with _inductor_options(ctx("cuda", compile_backend="inductor")):
        assert inductor_config.test_configs.force_filter_reduction_configs is True
        assert inductor_config.triton.autotune_pointwise is False  # the two switches are independent
    assert inductor_config.test_configs.force_filter_reduction_configs is timed
    with _inductor_options(ctx("cuda", compile_backend="inductor", compile_autotune_reductions=True)):
        assert inductor_config.test_configs.force_filter_reduction_configs is timed
        assert inductor_config.triton.autotune_pointwise is False
    for kept in (ctx("cpu", compile_backend="inductor"), ctx("cuda", compile_backend="aot_eager")):
        with _inductor_options(kept):
            assert inductor_config.test_configs.force_filter_reduction_configs is timed
    parser = build_parser()
    assert parser.parse_args(["bench", "--preset", "edge"]).autotune_reductions is False
    assert parser.parse_args(["bench", "--preset", "edge", "--autotune-reductions"]).autotune_reductions is True


def test_inductor_compilation_freezes_the_weights_and_combines_kernels_unless_asked_not_to():
    """Freezing (weights folded into the compiled code) is on while inductor compiles, off with
    --no-freeze and for the tracing-only compile backends; combo kernels likewise, on GPU runs only
    (--no-combo turns them off)."""
    import torch._inductor.config as inductor_config

    from fusion_edge.bench.backend_base import BenchContext
    from fusion_edge.bench.backends_compile import _inductor_options
    from fusion_edge.cli import build_parser

    def ctx(device="cpu", **kw):
        return BenchContext(source=_TinySource(), device=device, batch=1, fp16=False, **kw)

    frozen, combo = inductor_config.freezing, inductor_config.combo_kernels
    with _inductor_options(ctx(compile_backend="inductor")):
        assert inductor_config.freezing is True
        assert inductor_config.combo_kernels == combo  # CPU: no combo kernels
    with _inductor_options(ctx("cuda", compile_backend="inductor")):
        assert inductor_config.freezing is True and inductor_config.combo_kernels is True
    assert (inductor_config.freezing, inductor_config.combo_kernels) == (frozen, combo)
    with _inductor_options(ctx("cuda", compile_backend="inductor", compile_combo=False)):
        assert inductor_config.combo_kernels == combo
    for off in (ctx("cuda", compile_backend="inductor", compile_freeze=False, compile_combo=False),
                ctx("cuda", compile_backend="aot_eager")):
        with _inductor_options(off):
            assert (inductor_config.freezing, inductor_config.combo_kernels) == (frozen, combo)

    parser = build_parser()
    args = parser.parse_args(["bench", "--preset", "edge", "--no-freeze", "--no-combo"])
    assert args.no_freeze is True and args.no_combo is True
    args = parser.parse_args(["bench", "--preset", "edge"])
    assert args.no_freeze is False and args.no_combo is False


def test_block_scope_compiles_blocks_and_patch_layers_and_keeps_the_output():

    from fusion_edge.bench.backends_compile import compile_blocks
    from fusion_edge.models.dffm import DFFMBlock
    from fusion_edge.models.dvss import DVSSBlock
    from fusion_edge.models.patch import FinalPatchExpand2D, PatchEmbed2D, PatchExpand2D, PatchMerging2D

    model = _TinySource().model
    compiled = compile_blocks(model, backend="eager", fullgraph=True, dynamic=False)
    kinds = (DVSSBlock, DFFMBlock, PatchEmbed2D, PatchMerging2D, PatchExpand2D, FinalPatchExpand2D)
    found = {type(m) for m in compiled.modules() if isinstance(m, kinds)}
    assert found == set(kinds)
    assert all(m._compiled_call_impl is not None for m in compiled.modules() if isinstance(m, kinds))
    assert all(getattr(m, "_compiled_call_impl", None) is None for m in model.modules())  # the original is untouched
    _assert_compiled_matches(compiled, model)


def _assert_compiled_matches(compiled, model) -> None:
    """The compiled copy gives the eager model's output on a small pair (the compiled units run the
    elementwise forms of the small ops, fusion_edge.ops.fusable); dynamo's caches are cleared after."""
    import torch

    vis, ir = torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32)
    try:
        with torch.inference_mode():
            assert torch.allclose(compiled(vis, ir), model(vis, ir), atol=1e-4, rtol=0)
    finally:
        torch._dynamo.reset()


def test_stage_scope_compiles_whole_stages_and_keeps_the_output():
    """``stages``: each encoder/decoder stage is one compiled graph (its blocks are not compiled on their own,
    they are traced into it), the DFFM blocks and the outer patch layers are compiled as with ``blocks``."""

    from fusion_edge.bench.backends_compile import compile_blocks, compile_units
    from fusion_edge.models.dffm import DFFMBlock
    from fusion_edge.models.dvss import DecoderStage, DVSSBlock, EncoderStage
    from fusion_edge.models.patch import FinalPatchExpand2D, PatchEmbed2D, PatchMerging2D

    model = _TinySource().model
    compiled = compile_blocks(model, "stages", backend="eager", fullgraph=True, dynamic=False)
    on_their_own = {type(m) for m in compiled.modules() if getattr(m, "_compiled_call_impl", None) is not None}
    assert on_their_own == {EncoderStage, DecoderStage, DFFMBlock, PatchEmbed2D, FinalPatchExpand2D}
    assert not any(isinstance(m, (DVSSBlock, PatchMerging2D)) for m in compiled.modules()
                   if getattr(m, "_compiled_call_impl", None) is not None)
    with pytest.raises(ValueError, match="compile unit must be blocks or stages"):
        compile_units("layers")
    BenchConfig(preset="edge", compile_scope="stages").validate()  # the bench takes it too
    with pytest.raises(ValueError, match="--compile-scope must be one of model, blocks, stages, got 'layers'"):
        BenchConfig(preset="edge", compile_scope="layers").validate()
    _assert_compiled_matches(compiled, model)


def test_half_model_keeps_the_scan_parameters_in_float32():
    import torch

    from fusion_edge.bench.backends_torch import SCAN_PARAMS, half_model

    half = half_model(_TinySource().model)
    scan_params = {n for n, _ in half.named_parameters() if n.rsplit(".", 1)[-1] in SCAN_PARAMS}
    assert scan_params
    for name, param in half.named_parameters():
        assert param.dtype == (torch.float32 if name in scan_params else torch.float16), name
    out = half(torch.rand(1, 1, 32, 32, dtype=torch.float16), torch.rand(1, 1, 32, 32, dtype=torch.float16))
    assert out.dtype == torch.float16 and torch.isfinite(out).all()


def test_table_shows_compile_time_and_notes():
    from fusion_edge.bench.report import markdown_table
    from fusion_edge.bench.runner import BenchReport, ResultRow

    row = ResultRow("torch-cuda-compile-graph", 512, 640, 1, "fp16", "ok", latency_ms={"p50": 1.2, "p90": 1.3,
                    "p99": 1.4}, throughput_fps=800.0, compile_s=41.25, notes=["max |output - fp32 eager| = 1e-3"])
    env = {"software": {"torch": "2.11", "cuda": "13.0"}, "cpu": "x", "gpu": "NVIDIA H100"}
    table = markdown_table(BenchReport({}, "preset edge", env, {}, [row]))
    assert "| compile s | status |" in table and "| 41.2 | ok |" in table
    assert "- torch-cuda-compile-graph 512x640 fp16: max |output - fp32 eager| = 1e-3" in table


def test_min_iters_times_fewer_calls_instead_of_skipping():
    import time

    def slow():
        time.sleep(0.02)

    stats, _ = measure(slow, HostTimer(), warmup=5, iters=100, max_seconds=0.3, min_iters=5)
    assert 5 <= stats.samples < 100
    with pytest.raises(TimeCapExceeded):
        measure(slow, HostTimer(), warmup=2, iters=100, max_seconds=0.05, min_iters=5)


def test_run_order_puts_compilation_last_and_limits_backend_sizes():
    from fusion_edge.bench.config import parse_backend_sizes
    from fusion_edge.bench.runner import run_order

    sizes = [(512, 640), (256, 256)]
    config = BenchConfig(preset="edge", sizes=sizes, backends=["torch-chunked", "torch-cuda-compile",
                                                                 "torch-cuda-graph", "torch-compile"],
                         backend_sizes=parse_backend_sizes(["torch-chunked=256x256", "torch-compile=512x640"]))
    config.validate()
    order = [(size, backend) for _, _, size, backend in run_order(sizes, config)]
    assert order == [
        ((512, 640), "torch-cuda-graph"), ((256, 256), "torch-chunked"), ((256, 256), "torch-cuda-graph"),
        ((512, 640), "torch-cuda-compile"), ((256, 256), "torch-cuda-compile"), ((512, 640), "torch-compile"),
    ]


@pytest.mark.parametrize("items, message", [
    (["torch-chunked"], "BACKEND=HxW"),
    (["torch-magic=64x64"], "unknown backend"),
    (["torch-chunked=64"], "HxW"),
])
def test_backend_sizes_errors(items, message):
    from fusion_edge.bench.config import parse_backend_sizes

    with pytest.raises(ValueError, match=message):
        parse_backend_sizes(items)


def test_backend_sizes_must_be_among_the_sizes():
    config = BenchConfig(preset="edge", sizes=[(64, 64)], backends=["torch-chunked"],
                         backend_sizes={"torch-chunked": [(32, 32)]})
    with pytest.raises(ValueError, match="32x32 not among --size"):
        config.validate()


def test_merge_puts_runs_of_one_model_in_one_section(tmp_path):
    from fusion_edge.bench.merge import merge
    from fusion_edge.bench.report import to_json
    from fusion_edge.bench.runner import BenchReport, ResultRow

    env = {"software": {"torch": "2.11", "cuda": "13.0"}, "cpu": "x", "gpu": "NVIDIA H100"}
    cost = frame_cost(preset_config("edge"), 64, 64, fp16=True)
    lat = {"p50": 1.0, "p90": 1.1, "p99": 1.2}
    main_run = BenchReport({"preset": "edge", "fp16": True, "batch": 1}, "preset edge", env, {"64x64": cost},
                           [ResultRow("torch-cuda-graph", 64, 64, 1, "fp16", "ok", latency_ms=lat)])
    extra_run = BenchReport({"preset": "edge", "fp16": True, "batch": 1}, "preset edge", env, {"64x64": None},
                            [ResultRow("torch-chunked", 64, 64, 1, "fp16", "ok", latency_ms=lat)])
    paths = []
    for i, report in enumerate((main_run, extra_run)):
        path = tmp_path / f"run{i}" / "bench.json"
        path.parent.mkdir()
        path.write_text(json.dumps(to_json(report)))
        paths.append(path)
    md = merge(paths, tmp_path / "out", "m")["md"].read_text()
    assert md.count("## preset edge, fp16, batch 1") == 1
    chunked, graph = md.index("| torch-chunked | 64x64"), md.index("| torch-cuda-graph | 64x64")
    assert chunked < graph  # backends in table order
    assert f"| {cost.gflops:.2f} |" in md[chunked:graph]  # the count made by the other run
    # a merged result merges again (a JSON list of runs), to the same table
    again = merge([tmp_path / "out" / "m.json"], tmp_path / "again", "m")["md"].read_text()
    assert again == md
    (tmp_path / "other.json").write_text(json.dumps([{"no": "results"}]))
    with pytest.raises(ValueError, match="not a bench result"):
        merge([tmp_path / "other.json"], tmp_path / "bad", "m")


def test_checkpoint_receives_the_rows_so_far():
    from fusion_edge.bench.runner import run_bench

    seen = []
    config = BenchConfig(preset="edge", sizes=[(64, 64), (32, 32)], backends=["torch-cuda"], device="cpu",
                         count_cost=False)
    report = run_bench(config, progress=lambda line: None, checkpoint=lambda r: seen.append(len(r.rows)))
    assert seen == [1, 2] and len(report.rows) == 2
    assert all(r.status == "skipped" for r in report.rows)
    assert report.costs == {"64x64": None, "32x32": None}


def test_sigterm_ends_the_run_keeping_what_it_measured(tmp_path):
    """A caller's time limit (SIGTERM) must not lose the configurations already measured."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    argv = [sys.executable, "-m", "fusion_edge.cli", "bench", "--preset", "edge", "--size", "32x32", "64x64",
            "--backend", "torch-cuda", "torch-chunked", "--device", "cpu", "--threads", "1", "--warmup", "0",
            "--iters", "100000", "--max-seconds", "100000", "--no-cost", "--out", str(out), "--quiet"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]),
                                                                      os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / "bench.json").exists() and time.monotonic() < deadline:  # the first row is written
            time.sleep(0.2)
        time.sleep(1.0)  # now inside torch-chunked's endless timing
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, proc.stderr.read()
    finally:
        proc.kill()
    rows = json.loads((out / "bench.json").read_text())["results"]
    assert [(r["backend"], r["status"]) for r in rows] == [
        ("torch-cuda", "skipped"), ("torch-chunked", "skipped"), ("torch-cuda", "skipped"),
        ("torch-chunked", "skipped"),
    ]
    assert "needs a CUDA GPU" in rows[0]["reason"]
    assert rows[1]["reason"] == "stopped from outside (SIGTERM) while running"
    assert "not run" in rows[3]["reason"]
    assert (out / "bench.md").exists()


@pytest.mark.gpu
def test_profile_counts_gpu_kernels_also_inside_a_cuda_graph(tmp_path):
    from fusion_edge.bench.runner import run_bench

    config = BenchConfig(preset="edge", sizes=[(64, 64)], backends=["torch-cuda", "torch-cuda-graph"], device="cuda",
                         fp16=True, warmup=2, iters=5, count_cost=False, profile=2)
    report = run_bench(config, progress=lambda line: None)
    for row in report.rows:
        assert row.status == "ok", row.reason
        assert row.profile["device"] == "cuda" and row.profile["launches_per_call"] > 50, row.notes
        assert 0 < row.profile["busy_ms_per_call"] <= row.profile["wall_ms_per_call"] * 1.5


def test_profile_groups_generated_kernels_and_explains_overlap():
    """Inductor's numbered Triton kernels are one family; other kernel names stay; a busy time above the
    p50 (two streams) is explained rather than left looking like a measuring error."""
    from fusion_edge.bench.profile import OpShare, Profile, kernel_family

    assert kernel_family("triton_poi_fused_mm_view_5") == kernel_family("triton_poi_fused_mm_view_12")
    assert kernel_family("triton_poi_fused_mm_view_5") == "triton_poi_fused_mm_view_N"
    assert kernel_family("fe_es2d_lanes_scan_f16_l8") == "fe_es2d_lanes_scan_f16_l8"
    assert kernel_family("sm90_xmma_gemm_64x64_3") == "sm90_xmma_gemm_64x64_3"  # library kernels: as named
    overlapping = Profile("cuda", 5, 2.5, 1.85, 455, [OpShare("k", 17, 0.31, 0.17)]).summary(1.73)
    assert "GPU busy 1.85 ms of a 1.73 ms p50 (more than the p50: kernels on several streams overlap)" in overlapping
    assert "overlap" not in Profile("cuda", 5, 2.5, 1.5, 455, []).summary(1.73)


@pytest.mark.parametrize("flag, expected", [([], True), (["--no-cudnn-benchmark"], False)])
def test_cudnn_benchmark_flag_reaches_cudnn_and_the_report(monkeypatch, flag, expected):
    """--no-cudnn-benchmark leaves cuDNN's convolution choice to its heuristic on a GPU and says so in the
    report's config (a run on a machine without a GPU: the backends fail, the setting is still applied)."""
    import torch

    from fusion_edge.bench import runner
    from fusion_edge.cli import build_parser

    args = build_parser().parse_args(["bench", "--preset", "edge", *flag])
    assert args.cudnn_benchmark is expected
    monkeypatch.setattr(runner, "resolve_device", lambda requested: "cuda")
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", not expected)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark_limit", 10)
    config = BenchConfig(preset="edge", sizes=[(32, 32)], backends=["torch-cuda"], device="cuda", count_cost=False,
                         cudnn_benchmark=args.cudnn_benchmark)
    report = runner.run_bench(config, progress=lambda line: None)
    assert torch.backends.cudnn.benchmark is expected
    # timed, cuDNN tries every algorithm it has, not only its heuristic's first ten
    assert torch.backends.cudnn.benchmark_limit == (0 if expected else 10)
    assert report.config["cudnn_benchmark"] is expected
