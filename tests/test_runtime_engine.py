"""FusionEngine on the ONNX Runtime CPU backend: sizes, dtypes, colour, registration, errors;
the array-module image ops (the GPU path, run here with numpy) against OpenCV."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from fusion_edge.runtime import imageops
from fusion_edge.runtime.calibration import Calibration
from fusion_edge.runtime.engines import ModelInfo, model_info, open_backend, resolve_model_path
from fusion_edge.runtime.fusion_engine import FusionEngine
from fusion_edge.runtime.preprocess import FrameError, Preprocessor
from fusion_edge.runtime.testing import write_reference_model


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {
        "dynamic": write_reference_model(root / "dynamic" / "model.onnx", "max"),
        "fixed": write_reference_model(root / "fixed" / "model.onnx", "max", size=(64, 96)),
        "mean": write_reference_model(root / "mean" / "model.onnx", "mean", weight=0.25),
    }


@pytest.fixture(scope="module")
def pair(data_dir):
    seq = data_dir / "sequence"
    ir = cv2.imread(str(seq / "ir" / "0060.jpg"), cv2.IMREAD_UNCHANGED)
    vis = cv2.imread(str(seq / "vis" / "0060.jpg"), cv2.IMREAD_COLOR)
    assert ir.shape == (480, 640) and vis.shape == (480, 640, 3)
    return ir, vis


def luma(bgr_u8: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(bgr_u8.astype(np.float32) / 255.0, cv2.COLOR_BGR2YCrCb)[:, :, 0]


def test_dynamic_model_fuses_luma_and_keeps_colour(models, pair):
    ir, vis = pair
    engine = FusionEngine(models["dynamic"])
    assert engine.backend.name == "onnxruntime[CPU]" and not engine.on_gpu
    assert engine.info.dynamic and engine.info.fixed_hw is None
    fused = engine.fuse(ir, vis)
    assert fused.shape == vis.shape and fused.dtype == np.uint8
    expected = np.maximum(luma(vis), ir.astype(np.float32) / 255.0)
    err = np.abs(luma(fused) - expected)
    # colour round trip through uint8; saturated colours clip in BGR, which moves their luma a little
    assert np.percentile(err, 99.9) < 3.5 / 255 and err.mean() < 0.6 / 255 and err.max() < 0.03
    # chroma kept: the fused image has the visible image's colours where VIS is the brighter one
    vis_wins = luma(vis) > ir / 255.0 + 0.05
    crcb_in = cv2.cvtColor(vis, cv2.COLOR_BGR2YCrCb)[:, :, 1:].astype(int)
    crcb_out = cv2.cvtColor(fused, cv2.COLOR_BGR2YCrCb)[:, :, 1:].astype(int)
    assert np.abs(crcb_in - crcb_out)[vis_wins].mean() < 1.5
    grey = FusionEngine(models["dynamic"], colour="grey").fuse(ir, vis)
    assert grey.shape == ir.shape
    assert np.abs(grey / 255.0 - expected).max() <= 0.5 / 255 + 1e-6


def test_weighted_model_matches_formula(models, pair):
    ir, vis = pair
    grey_vis = cv2.cvtColor(vis, cv2.COLOR_BGR2GRAY)
    fused = FusionEngine(models["mean"], out_dtype=np.float32).fuse(ir, grey_vis)
    expected = 0.25 * grey_vis / 255.0 + 0.75 * ir / 255.0
    assert fused.dtype == np.float32
    np.testing.assert_allclose(fused, expected, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_input_dtypes_and_output_dtype(models, pair, dtype):
    ir, vis = pair
    scale = {np.uint8: 1, np.uint16: 257, np.float32: 1 / 255.0}[dtype]
    ir_t = (ir.astype(np.float64) * scale).astype(dtype)
    vis_t = (cv2.cvtColor(vis, cv2.COLOR_BGR2GRAY).astype(np.float64) * scale).astype(dtype)
    fused = FusionEngine(models["dynamic"]).fuse(ir_t, vis_t)
    assert fused.dtype == np.dtype(dtype)
    ref = np.maximum(ir, cv2.cvtColor(vis, cv2.COLOR_BGR2GRAY)).astype(np.float64) * scale
    assert np.abs(fused.astype(np.float64) - ref).max() <= max(scale, 1e-6) * 1.01


def test_fixed_size_model_resizes_in_and_out(models, pair):
    ir, vis = pair
    engine = FusionEngine(models["fixed"])
    assert engine.info.fixed_hw == (64, 96)
    assert engine.fuse(ir, vis).shape == (480, 640, 3)
    small = FusionEngine(models["fixed"], output_size="engine").fuse(ir, vis)
    assert small.shape == (64, 96, 3)
    # the engine saw the same image at 96x64: compare with OpenCV's area resize of the expected result
    expected = np.maximum(cv2.resize(luma(vis), (96, 64), interpolation=cv2.INTER_AREA),
                          cv2.resize(ir.astype(np.float32) / 255.0, (96, 64), interpolation=cv2.INTER_AREA))
    assert np.abs(luma(small) - expected).max() < 4.0 / 255


def test_ir_of_another_size_and_16bit_minmax(models, pair):
    ir, vis = pair
    raw = (ir.astype(np.uint16) * 4 + 3000)[::2, ::2].copy()  # 320x240 "14-bit" thermal
    engine = FusionEngine(models["mean"], ir_range="minmax", colour="grey", out_dtype=np.float32)
    fused = engine.fuse(raw, cv2.cvtColor(vis, cv2.COLOR_BGR2GRAY))
    assert fused.shape == (480, 640)
    ir_part = (fused - 0.25 * cv2.cvtColor(vis, cv2.COLOR_BGR2GRAY) / 255.0) / 0.75
    assert ir_part.min() > -0.01 and ir_part.max() > 0.98  # stretched to the full range


def test_calibration_warps_ir_onto_vis(models):
    """A shifted IR image registered with the matching homography lines up with VIS."""
    h, w = 120, 160
    vis = np.zeros((h, w), np.uint8)
    cv2.rectangle(vis, (60, 40), (100, 80), 255, -1)
    shift = np.array([[1.0, 0, -12], [0, 1.0, 7], [0, 0, 1]])  # IR sees the scene moved by (-12, +7)
    ir = cv2.warpAffine(vis, shift[:2], (w, h))
    calib = Calibration(np.linalg.inv(shift), ir_size=(w, h), vis_size=(w, h))
    engine = FusionEngine(models["mean"], calibration=calib, out_dtype=np.float32)
    aligned = engine.fuse(ir, vis)
    unaligned = FusionEngine(models["mean"], out_dtype=np.float32).fuse(ir, vis)
    target = vis / 255.0
    assert np.abs(aligned - target)[10:-10, 15:-15].max() < 0.02
    assert np.abs(unaligned - target).max() > 0.5


def test_dynamic_models_are_padded_to_their_multiple(models, tmp_path):
    path = write_reference_model(tmp_path / "m" / "model.onnx", "max")
    manifest = json.loads((path.parent / "manifest.json").read_text())
    manifest["size_multiple"] = 32
    (path.parent / "manifest.json").write_text(json.dumps(manifest))
    engine = FusionEngine(path)
    ir = np.random.default_rng(0).integers(0, 255, (50, 70), dtype=np.uint8)
    vis = np.random.default_rng(1).integers(0, 255, (50, 70), dtype=np.uint8)
    prep = engine.prepare(ir, vis)
    assert prep.vis.shape == (1, 1, 64, 96) and prep.work_hw == (50, 70)
    np.testing.assert_array_equal(engine.fuse(ir, vis), np.maximum(ir, vis))


def test_model_info_from_manifest_and_graph():
    info = model_info({"height": 256, "width": 320, "dynamic": False}, (256, 320))
    assert info.fixed_hw == (256, 320)
    info = model_info({"height": 256, "width": 320, "dynamic": {"min": [64, 64], "max": [512, 640]}}, (None, None))
    assert info.dynamic and info.max_hw == (512, 640) and info.min_hw == (64, 64)
    pre = Preprocessor(info)
    assert pre.work_size((1080, 1920)) == (352, 640)  # scaled to fit, kept to the multiple of 32
    assert pre.work_size((480, 640)) == (480, 640)


def test_backend_resolution_and_errors(models, tmp_path):
    assert resolve_model_path(models["fixed"].parent) == (models["fixed"], "ort")
    assert resolve_model_path(models["fixed"]) == (models["fixed"], "ort")
    with pytest.raises(FileNotFoundError, match="model not found"):
        resolve_model_path(tmp_path / "nope.onnx")
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match="cannot tell the backend"):
        resolve_model_path(tmp_path / "weights.bin")
    with pytest.raises(ValueError, match="unknown backend"):
        open_backend(models["fixed"], "magic")
    (tmp_path / "bad.onnx").write_bytes(b"not a graph")
    with pytest.raises(ValueError, match="cannot load"):
        FusionEngine(tmp_path / "bad.onnx")
    (tmp_path / "model.engine").write_bytes(b"x")
    with pytest.raises((ImportError, RuntimeError), match="TensorRT|CuPy"):
        FusionEngine(tmp_path / "model.engine")


def test_wrong_io_names_are_named(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 1, 8, 8])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 1, 8, 8])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 1, 8, 8])
    graph = helper.make_graph([helper.make_node("Max", ["a", "b"], ["out"])], "g", [a, b], [out])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "model.onnx"))
    with pytest.raises(ValueError, match=r"expected inputs \['vis', 'ir'\].*found inputs \['a', 'b'\]"):
        FusionEngine(tmp_path / "model.onnx")


@pytest.mark.parametrize(
    "ir, match",
    [(None, "no image"), (np.zeros((0, 0), np.uint8), "non-empty"), (np.zeros((8, 8, 2), np.uint8), "channels"),
     (np.zeros((8, 8), np.int32), "dtype"), (np.zeros((8,), np.uint8), "non-empty")],
)
def test_bad_frames_raise_frame_errors(models, ir, match):
    with pytest.raises(FrameError, match=match):
        FusionEngine(models["dynamic"]).fuse(ir, np.zeros((8, 8), np.uint8))


# ------------------------------------------------- the GPU path, with numpy
def test_bilinear_map_matches_cv2_warp_and_resize():
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.random((60, 80), dtype=np.float32), (0, 0), 2.0)
    h = np.array([[0.95, 0.05, 3.0], [-0.04, 1.02, -2.0], [1e-4, -2e-4, 1.0]])
    m = imageops.BilinearMap.build(np, h, (60, 80), (70, 90), "zero")
    ours = m.apply(np, img)
    ref = cv2.warpPerspective(img, h, (90, 70), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    inner = np.s_[5:-5, 5:-5]
    assert np.abs(ours - ref)[inner].max() < 2e-3  # OpenCV quantises coordinates to 1/32 px
    up = imageops.BilinearMap.build(np, imageops.resize_matrix((60, 80), (120, 200)), (60, 80), (120, 200), "clamp")
    np.testing.assert_allclose(up.apply(np, img), cv2.resize(img, (200, 120), interpolation=cv2.INTER_LINEAR),
                               atol=2e-3)
    two = np.stack([img, 1 - img], -1)
    assert np.allclose(up.apply(np, two)[..., 1], 1 - up.apply(np, img), atol=1e-5)


def test_colour_ops_match_cv2():
    bgr = np.random.default_rng(1).random((20, 30, 3), dtype=np.float32)
    y, crcb = imageops.bgr_to_ycrcb(np, bgr)
    ref = cv2.cvtColor(bgr, cv2.COLOR_BGR2YCrCb)
    np.testing.assert_allclose(y, ref[..., 0], atol=1e-5)
    np.testing.assert_allclose(crcb, ref[..., 1:], atol=1e-5)
    np.testing.assert_allclose(imageops.ycrcb_to_bgr(np, y, crcb), cv2.cvtColor(ref, cv2.COLOR_YCrCb2BGR), atol=1e-4)
    padded = imageops.pad_reflect(np, bgr[..., 0], 3, 5)
    np.testing.assert_array_equal(padded, cv2.copyMakeBorder(bgr[..., 0], 0, 3, 0, 5, cv2.BORDER_REFLECT_101))


@pytest.mark.parametrize("fixed", [False, True])
def test_array_module_preprocess_agrees_with_opencv_path(fixed, pair):
    """The CuPy path's code run with numpy gives the OpenCV path's inputs and outputs."""
    from fusion_edge.runtime.postprocess import Postprocessor

    ir, vis = pair
    info = ModelInfo(height=240, width=320, dynamic=False) if fixed else ModelInfo(size_multiple=32)
    calib = Calibration(np.array([[1.02, 0.01, -5.0], [0.0, 0.99, 4.0], [0.0, 0.0, 1.0]]), (320, 240), (640, 480))
    pre = Preprocessor(info, calib if fixed else None)
    small_ir = cv2.resize(ir, (320, 240), interpolation=cv2.INTER_AREA) if fixed else ir
    host = pre.prepare(small_ir, vis)
    xp = pre.prepare_xp(np, small_ir, vis)
    assert host.vis.shape == xp.vis.shape and host.ir.shape == xp.ir.shape
    # vis: OpenCV shrinks with area averaging, the GPU path bilinearly: equal on average, close pointwise
    tol = 0.06 if fixed else 1e-5
    assert np.abs(host.vis - xp.vis).mean() < tol / 4 and np.abs(host.ir - xp.ir)[..., 5:-5, 5:-5].mean() < tol / 4
    fused = np.maximum(host.vis, host.ir)
    post = Postprocessor()
    a = post.finish(fused, host).astype(int)
    b = post.finish_xp(np, fused, xp).astype(int)
    assert a.shape == b.shape == vis.shape
    assert np.abs(a - b).max() <= 2


def test_plugin_flavour_graph_runs_through_onnxruntime_extensions(tmp_path):
    """A graph with our custom LDC node (as the plugin export writes it) loads in the ORT backend."""
    pytest.importorskip("onnxruntime_extensions")
    pytest.importorskip("fusion_edge.export.ort_custom_ops")
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    shape = [1, 1, 16, 16]
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n in ("vis", "ir", "fused")]
    identity = np.zeros((1, 1, 3, 3), np.float32)
    identity[0, 0, 1, 1] = 1.0
    inits = [numpy_helper.from_array(identity, "w"), numpy_helper.from_array(np.ones((1, 1, 3, 3), np.float32), "bm"),
             numpy_helper.from_array(np.zeros((1, 1), np.float32), "lm"),
             numpy_helper.from_array(np.zeros((1,), np.float32), "th")]
    nodes = [helper.make_node("FusionEdgeLDC", ["ir", "w", "bm", "lm", "th"], ["ldc"], domain="ai.onnx.contrib",
                              plugin_version="1", plugin_namespace="fusion_edge"),
             helper.make_node("Max", ["vis", "ldc"], ["fused"])]
    model = helper.make_model(helper.make_graph(nodes, "g", io[:2], io[2:], initializer=inits),
                              opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.contrib", 1)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "model.onnx"))
    engine = FusionEngine(tmp_path / "model.onnx", out_dtype=np.float32)
    a, b = np.random.default_rng(0).random((2, 16, 16), dtype=np.float32)
    np.testing.assert_allclose(engine.fuse(b, a), np.maximum(a, b), atol=1e-6)
