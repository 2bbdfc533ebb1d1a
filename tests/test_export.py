"""``fusion-edge export`` end to end on the ``edge`` preset (random weights) at 64x64:
portable and plugin flavours, parity on real pairs from the shared data, a TensorRT-RTX engine
built on this CPU, and failed exports that leave nothing behind."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from fusion_edge.export import parity, pipeline
from fusion_edge.export.contract import DOMAIN, ES2D_OP, LDC_OP, SCAN_OP
from fusion_edge.export.pipeline import ExportOptions, run_export
from fusion_edge.export.portable import FORBIDDEN_OPS, standard_op_types
from fusion_edge.export.source_model import from_preset

from fusion_edge.cli import main as cli_main

H, W = 64, 64
# ES2D calls of the edge preset: 7 encoder blocks (run once, both modalities stacked on the batch
# axis), 7 decoder blocks, 3 used cross blocks
ES2D_CALLS = 7 + 7 + 3


def load_manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def visible_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture(scope="module")
def portable_export(tmp_path_factory, data_dir):
    """The CLI: a dynamic portable graph plus a TensorRT-RTX engine (profile pinned at 64x64 to keep
    the CPU build short; ONNX Runtime checks other sizes below)."""
    pytest.importorskip("tensorrt_rtx", reason="needs tensorrt-rtx-cu13 (in the export extra)")
    out = tmp_path_factory.mktemp("portable") / "edge"
    code = cli_main([
        "export", "--preset", "edge", "--random-weights", "--height", str(H), "--width", str(W), "--dynamic",
        "--min-size", str(H), str(W), "--max-size", str(H), str(W), "--engine",
        "--timing-cache", str(out.parent / "timing.cache"), "--builder-optimization-level", "0",
        "--parity-pairs", "2", "--parity-data", str(data_dir / "tno21"), "-o", str(out),
    ])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def plugin_export(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("plugin") / "edge"
    run_export(ExportOptions(output=out, height=H, width=W, preset="edge", random_weights=True, flavour="plugin",
                             parity_pairs=2, parity_data=data_dir / "tno21"))
    return out


@pytest.fixture(scope="module")
def reference_model():
    return from_preset("edge", random_weights=True, seed=0).model


def test_portable_export_writes_exactly_its_files(portable_export):
    assert visible_files(portable_export) == ["manifest.json", "model.engine", "model.onnx"]
    manifest = load_manifest(portable_export)
    for name in ("model.onnx", "model.engine"):
        data = (portable_export / name).read_bytes()
        assert manifest["files"][name] == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def test_portable_manifest(portable_export):
    m = load_manifest(portable_export)
    assert m["model"]["preset"] == "edge" and m["model"]["weights"] == "random (seed 0)" and m["model"]["fold_ldc"]
    assert (m["height"], m["width"], m["dynamic"], m["flavour"], m["precision"]) == (H, W, True, "portable", "fp32")
    assert m["opset"] >= 17 and m["custom_ops"] == {}
    assert [i["name"] for i in m["inputs"]] == ["vis", "ir"] and m["outputs"][0]["name"] == "fused"
    assert m["inputs"][0]["range"] == [0.0, 1.0] and "YCrCb" in m["colour"]["visible"]
    assert m["min_size"] == [H, W] and m["max_size"] == [H, W]
    assert {"torch", "onnx", "onnxruntime", "tensorrt_rtx", "fusion_edge"} <= set(m["versions"])
    p = m["parity"]
    assert p["passed"] and p["tolerance"] == 1e-4 and p["max_abs_diff"] <= 1e-4
    assert {c["pair"] for c in p["cases"]} == {"01", "11"}  # real tno21 pairs
    e = m["engine"]
    assert e["builder"].startswith("tensorrt_rtx") and e["precision"] == "fp32" and e["plugins"] == []
    assert e["profile"] == {"min": [H, W], "opt": [H, W], "max": [H, W], "batch": 1}
    assert e["optimization_level"] == 0
    assert e["bytes"] == (portable_export / "model.engine").stat().st_size > 0


def test_portable_graph_has_only_standard_ops(portable_export):
    graph = onnx.load(str(portable_export / "model.onnx"))
    opset = {o.domain: o.version for o in graph.opset_import}
    assert set(opset) <= {"", "ai.onnx"} and opset.get("", opset.get("ai.onnx")) >= 17
    assert not graph.functions
    standard = standard_op_types(17)
    for node in graph.graph.node:
        assert node.domain in ("", "ai.onnx"), node
        assert node.op_type in standard and node.op_type not in FORBIDDEN_OPS, node.op_type
        assert not any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute)
    dims = [[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.graph.input]
    assert [i.name for i in graph.graph.input] == ["vis", "ir"]
    assert dims == [["batch", 1, "height", "width"]] * 2
    assert [o.name for o in graph.graph.output] == ["fused"]


def test_dynamic_portable_graph_matches_pytorch_at_other_sizes(portable_export, reference_model, data_dir):
    files = parity.pair_files(data_dir / "sequence")
    sizes = [(32, 32), (96, 128), (84, 76)]  # smaller, larger, and off the 32-pixel grid
    pairs = {s: parity.load_pairs(files, *s, count=1) for s in sizes}
    report = parity.measure(reference_model, portable_export / "model.onnx", pairs, flavour="portable")
    assert report.passed and report.max_abs_diff <= 1e-4, report.cases
    assert {(c["height"], c["width"]) for c in report.cases} == set(sizes)


def test_plugin_export_has_one_custom_node_per_scan(plugin_export):
    assert visible_files(plugin_export) == ["manifest.json", "model.onnx"]
    graph = onnx.load(str(plugin_export / "model.onnx"))
    custom = [n for n in graph.graph.node if n.domain == DOMAIN]
    assert len(custom) == ES2D_CALLS and {n.op_type for n in custom} == {ES2D_OP}
    for node in custom:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs["plugin_version"] == b"1" and attrs["plugin_namespace"] == b"fusion_edge"
        assert attrs["d_state"] == 16 and attrs["dt_rank"] in (1, 2, 4, 8)
    others = {n.domain for n in graph.graph.node if n.domain != DOMAIN}
    assert others <= {""}
    m = load_manifest(plugin_export)
    assert m["flavour"] == "plugin" and m["custom_ops"] == {ES2D_OP: ES2D_CALLS} and m["engine"] is None
    assert m["parity"]["passed"] and m["parity"]["max_abs_diff"] <= 1e-4
    assert "onnxruntime-extensions" in m["parity"]["runtime"]


def _computed_from_constants(graph: onnx.GraphProto, name: str) -> bool:
    """Whether tensor ``name`` depends on initializers and constants only (not on the inputs)."""
    producers = {out: node for node in graph.node for out in node.output}
    inits = {t.name for t in graph.initializer}
    stack, seen = [name], set()
    while stack:
        current = stack.pop()
        if current in inits or current in seen or current == "":
            continue
        seen.add(current)
        if current not in producers:
            return False  # a graph input
        stack.extend(producers[current].input)
    return True


def test_plugin_export_with_plain_scan_nodes(tmp_path, data_dir):
    """--scan-node selective-scan: each ES2D core is standard-op gather/projections/scatter around one
    FusionEdgeSelectiveScan node (the single-kernel node an ahead-of-time plugin carries). 40x48 makes
    odd route grids at the third stage, so the shape-computed padding is exercised."""
    out = tmp_path / "scan"
    code = cli_main(["export", "--preset", "edge", "--random-weights", "--height", "40", "--width", "48",
                     "--flavour", "plugin", "--scan-node", "selective-scan",
                     "--parity-pairs", "2", "--parity-data", str(data_dir / "tno21"), "-o", str(out)])
    assert code == 0
    graph = onnx.load(str(out / "model.onnx"))
    custom = [n for n in graph.graph.node if n.domain == DOMAIN]
    assert len(custom) == ES2D_CALLS and {n.op_type for n in custom} == {SCAN_OP}
    for node in custom:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs == {"d_state": 16, "delta_softplus": 1, "plugin_version": b"1", "plugin_namespace": b"fusion_edge"}
        # A (= -exp(A_logs)), D and delta_bias come from the weights; u, delta, B and C from the image
        assert [_computed_from_constants(graph.graph, i) for i in node.input] == [False, False, True, False, False,
                                                                                  True, True]
    m = load_manifest(out)
    assert m["custom_ops"] == {SCAN_OP: ES2D_CALLS}
    assert m["parity"]["passed"] and m["parity"]["max_abs_diff"] <= 1e-4


def test_plugin_fp16_unfolded_export(tmp_path, data_dir):
    """--fp16 --no-fold-ldc in the plugin flavour: LDCs become custom nodes, parity as images <= 1e-2."""
    out = tmp_path / "fp16"  # 32x32: PyTorch's fp16 convolutions are slow on a CPU
    run_export(ExportOptions(output=out, height=32, width=32, preset="edge", random_weights=True, flavour="plugin",
                             fp16=True, fold_ldc=False, parity_pairs=1, parity_data=data_dir / "tno21"))
    graph = onnx.load(str(out / "model.onnx"))
    counts = {op: sum(n.op_type == op for n in graph.graph.node) for op in (ES2D_OP, LDC_OP)}
    assert counts == {ES2D_OP: ES2D_CALLS, LDC_OP: 7 + 7 + 2 * 3}
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in graph.graph.initializer)
    io_types = {v.name: v.type.tensor_type.elem_type for v in [*graph.graph.input, *graph.graph.output]}
    assert set(io_types.values()) == {onnx.TensorProto.FLOAT}  # the I/O contract stays fp32
    m = load_manifest(out)
    assert m["precision"] == "fp16" and not m["model"]["fold_ldc"]
    assert m["parity"]["tolerance"] == 1e-2 and m["parity"]["passed"]


def test_failed_reexport_leaves_the_previous_export_intact(portable_export, monkeypatch):
    """A new graph is staged, then the engine build dies half-way: the old files stay as they were."""
    from fusion_edge.export import onnx_export

    before = {name: (portable_export / name).read_bytes() for name in visible_files(portable_export)}

    def new_graph(module, path, **kwargs):
        Path(path).write_bytes(b"a new graph")
        return onnx.ModelProto()

    def half_written_engine(onnx_path, engine_path, **kwargs):
        Path(engine_path).write_bytes(b"half an engine")
        raise RuntimeError("builder crashed")

    monkeypatch.setattr(onnx_export, "export_onnx", new_graph)
    monkeypatch.setattr(pipeline, "build_engine", half_written_engine)
    options = ExportOptions(output=portable_export, height=H, width=W, preset="edge", random_weights=True,
                            parity_pairs=0, engine=True)
    with pytest.raises(RuntimeError, match="builder crashed"):
        run_export(options)
    assert visible_files(portable_export) == sorted(before)  # no staging folder, no temp file
    assert all((portable_export / name).read_bytes() == data for name, data in before.items())


def test_failed_first_export_leaves_no_files(tmp_path, monkeypatch):
    from fusion_edge.export import onnx_export

    def crash_mid_write(module, path, **kwargs):
        Path(path).write_bytes(b"\x08\x07partial")
        raise RuntimeError("tracing failed")

    monkeypatch.setattr(onnx_export, "export_onnx", crash_mid_write)
    out = tmp_path / "new"
    with pytest.raises(RuntimeError, match="tracing failed"):
        run_export(ExportOptions(output=out, height=H, width=W, preset="edge", random_weights=True, parity_pairs=0))
    assert visible_files(out) == []


def test_parity_failure_aborts_the_export(tmp_path, monkeypatch, data_dir):
    from fusion_edge.export import onnx_export

    def some_graph(module, path, **kwargs):
        Path(path).write_bytes(b"a graph")
        return onnx.ModelProto()

    def wrong_graph(model, onnx_path, pairs_by_size, *, flavour, precision="fp32"):
        report = parity.ParityReport(runtime="test", reference="test", precision=precision, tolerance=1e-4)
        report.max_abs_diff = 0.5
        return report

    monkeypatch.setattr(onnx_export, "export_onnx", some_graph)
    monkeypatch.setattr(parity, "measure", wrong_graph)
    out = tmp_path / "bad"
    with pytest.raises(RuntimeError, match="parity check failed: max abs difference 0.5 exceeds 0.0001"):
        run_export(ExportOptions(output=out, height=H, width=W, preset="edge", random_weights=True,
                                 parity_pairs=1, parity_data=data_dir / "tno21"))
    assert visible_files(out) == []


def test_fit_crops_to_the_aspect_then_resizes():
    image = np.zeros((100, 300), np.float32)
    image[:, 100:200] = 1.0  # the centre third
    fitted = parity.fit(image, 50, 50)
    assert fitted.shape == (50, 50) and fitted.min() == 1.0  # the square centre crop is all ones


def test_export_without_a_model_uses_the_packaged_weights(tmp_path, data_dir):
    """`fusion-edge export --height H --width W -o DIR`: the packaged edge weights, as fuse and demo use."""
    out = tmp_path / "default"
    code = cli_main(["export", "--height", "32", "--width", "32", "--parity-pairs", "1",
                     "--parity-data", str(data_dir / "tno21"), "-o", str(out)])
    assert code == 0
    m = load_manifest(out)
    assert m["model"]["preset"] == "edge" and m["model"]["weights"] == "packaged"
    assert m["model"]["config"]["residual_scale"] == 1.0
    assert m["parity"]["passed"]
