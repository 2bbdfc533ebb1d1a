"""The runtime on a CUDA GPU: CuPy image ops against numpy, GPU frames fused without leaving
the device (ONNX Runtime CUDA I/O binding, PyTorch, TensorRT when installed), and the pipeline's
pinned double-buffered device stage. Skipped without a GPU and CuPy."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gpu

cupy = pytest.importorskip("cupy")

from fusion_edge.runtime import imageops  # noqa: E402
from fusion_edge.runtime.calibration import Calibration  # noqa: E402
from fusion_edge.runtime.engines import ModelInfo  # noqa: E402
from fusion_edge.runtime.fusion_engine import FusionEngine  # noqa: E402
from fusion_edge.runtime.preprocess import Preprocessor  # noqa: E402
from fusion_edge.runtime.testing import write_reference_model  # noqa: E402


def frames(h=96, w=128, seed=0):
    rng = np.random.default_rng(seed)
    ir = rng.integers(0, 256, (h, w), dtype=np.uint8)
    vis = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return ir, vis


def ort_cuda_available() -> bool:
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    return "CUDAExecutionProvider" in ort.get_available_providers()


needs_ort_cuda = pytest.mark.skipif(not ort_cuda_available(), reason="needs onnxruntime-gpu (CUDA provider)")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return write_reference_model(tmp_path_factory.mktemp("gpu") / "model.onnx", "max")


def test_image_ops_on_cupy_match_numpy():
    rng = np.random.default_rng(0)
    img = rng.random((60, 80), dtype=np.float32)
    h = np.array([[0.95, 0.05, 3.0], [-0.04, 1.02, -2.0], [1e-4, -2e-4, 1.0]])
    for border in ("zero", "clamp"):
        ref = imageops.BilinearMap.build(np, h, (60, 80), (70, 90), border).apply(np, img)
        got = imageops.BilinearMap.build(cupy, h, (60, 80), (70, 90), border).apply(cupy, cupy.asarray(img))
        np.testing.assert_allclose(cupy.asnumpy(got), ref, atol=1e-5)
    bgr = rng.random((20, 30, 3), dtype=np.float32)
    y, crcb = imageops.bgr_to_ycrcb(cupy, cupy.asarray(bgr))
    y_ref, crcb_ref = imageops.bgr_to_ycrcb(np, bgr)
    np.testing.assert_allclose(cupy.asnumpy(y), y_ref, atol=1e-6)
    np.testing.assert_allclose(cupy.asnumpy(imageops.ycrcb_to_bgr(cupy, y, crcb)), bgr, atol=1e-3)


def test_preprocess_on_cupy_matches_numpy():
    ir, vis = frames()
    calib = Calibration(np.array([[1.02, 0.01, -5.0], [0.0, 0.99, 4.0], [0.0, 0.0, 1.0]]), (128, 96), (128, 96))
    pre = Preprocessor(ModelInfo(height=64, width=64, dynamic=False), calib)
    a = pre.prepare_xp(np, ir, vis)
    b = pre.prepare(cupy.asarray(ir), cupy.asarray(vis))
    assert b.on_device and isinstance(b.vis, cupy.ndarray)
    np.testing.assert_allclose(cupy.asnumpy(b.vis), a.vis, atol=1e-5)
    np.testing.assert_allclose(cupy.asnumpy(b.ir), a.ir, atol=1e-5)


@needs_ort_cuda
def test_ort_cuda_fuses_gpu_frames_without_a_host_round_trip(model, monkeypatch):
    from fusion_edge.runtime import backend_ort, fusion_engine

    ir, vis = frames()
    cpu = FusionEngine(model, backend="ort-cpu").fuse(ir, vis)
    engine = FusionEngine(model, backend="ort-cuda")
    assert engine.on_gpu and "CUDA" in engine.name
    np.testing.assert_allclose(engine.fuse(ir, vis).astype(int), cpu.astype(int), atol=2)  # host frames in

    def no_host(*args, **kwargs):
        raise AssertionError("a GPU frame went through host memory")

    monkeypatch.setattr(backend_ort, "_host_batch", no_host)
    monkeypatch.setattr(fusion_engine, "to_host", no_host)
    out = engine.fuse(cupy.asarray(ir), cupy.asarray(vis), to_host_memory=False)
    assert isinstance(out, cupy.ndarray) and out.shape == vis.shape
    monkeypatch.undo()
    np.testing.assert_allclose(cupy.asnumpy(out).astype(int), cpu.astype(int), atol=2)


@needs_ort_cuda
def test_dlpack_frames_from_torch(model):
    torch = pytest.importorskip("torch")
    ir, vis = frames()
    engine = FusionEngine(model, backend="ort-cuda")
    expected = engine.fuse(ir, vis)
    got = engine.fuse(torch.from_numpy(ir).cuda(), torch.from_numpy(vis).cuda())
    np.testing.assert_array_equal(got, expected)


@needs_ort_cuda
def test_pipeline_on_the_gpu_stage(model):
    from fusion_edge.runtime import FusionPipeline, SyntheticSource
    from fusion_edge.runtime.stages import DeviceStage, make_stage

    engine = FusionEngine(model, backend="ort-cuda", out_dtype=np.uint8)
    assert isinstance(make_stage(engine), DeviceStage)
    src = dict(live=False, count=50)
    with FusionPipeline(engine, ir=SyntheticSource((96, 128), **src),
                        vis=SyntheticSource((96, 128), channels=3, **src), keep_inputs=True) as pipe:
        out = list(pipe)
    assert len(out) == 50 and pipe.stats.dropped == 0
    cpu = FusionEngine(model, backend="ort-cpu", out_dtype=np.uint8)
    for f in (out[0], out[17], out[-1]):
        np.testing.assert_allclose(f.image.astype(int), cpu.fuse(f.ir, f.vis).astype(int), atol=2)


@needs_ort_cuda
def test_ort_cuda_graph_replay(tmp_path):
    """ORT's CUDA graph capture: outputs right and not overwritten by the next replay."""
    from fusion_edge.runtime.backend_ort import OrtBackend

    fixed = write_reference_model(tmp_path / "fixed" / "model.onnx", "max", size=(96, 128))
    backend = OrtBackend(fixed, providers="cuda", cuda_graph=True)
    assert backend.on_gpu
    rng = np.random.default_rng(3)
    a = [cupy.asarray(rng.random((1, 1, 96, 128), dtype=np.float32)) for _ in range(8)]
    outs = [backend.infer(a[2 * i], a[2 * i + 1]) for i in range(4)]  # capture happens within the first runs
    backend.synchronize()
    for i, out in enumerate(outs):
        np.testing.assert_array_equal(cupy.asnumpy(out), np.maximum(cupy.asnumpy(a[2 * i]), cupy.asnumpy(a[2 * i + 1])))
    ir, vis = frames()
    engine = FusionEngine(OrtBackend(fixed, providers="cuda", cuda_graph=True))
    cpu = FusionEngine(fixed, backend="ort-cpu").fuse(ir, vis)
    for _ in range(3):
        np.testing.assert_allclose(engine.fuse(ir, vis).astype(int), cpu.astype(int), atol=2)


def test_torch_backend_on_gpu(tmp_path):
    torch = pytest.importorskip("torch")
    from fusion_edge import create_model

    torch.manual_seed(0)
    path = tmp_path / "edge.pt"
    torch.save(create_model("edge").state_dict(), path)
    ir, vis = frames(64, 64)
    engine = FusionEngine(path, backend="torch")
    assert engine.on_gpu
    a = engine.fuse(ir, vis)
    b = engine.fuse(cupy.asarray(ir), cupy.asarray(vis), to_host_memory=False)
    np.testing.assert_allclose(cupy.asnumpy(b).astype(int), a.astype(int), atol=1)


def test_tensorrt_backend(model, tmp_path):
    from fusion_edge.runtime.backend_tensorrt import find_tensorrt

    trt = find_tensorrt()
    if trt is None:
        pytest.skip("TensorRT is not installed")
    if trt.__name__.startswith("tensorrt_rtx") and cupy.cuda.Device().compute_capability == "90":
        pytest.skip("TensorRT for RTX does not run on compute capability 9.0")
    fixed = write_reference_model(tmp_path / "fixed" / "model.onnx", "max", size=(96, 128))
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(fixed.read_bytes())
    serialized = builder.build_serialized_network(network, builder.create_builder_config())
    engine_path = fixed.parent / "model.engine"
    engine_path.write_bytes(bytes(serialized))
    ir, vis = frames()
    engine = FusionEngine(engine_path)
    assert engine.backend.name.startswith("tensorrt")
    expected = FusionEngine(fixed, backend="ort-cpu").fuse(ir, vis)
    np.testing.assert_allclose(engine.fuse(cupy.asarray(ir), cupy.asarray(vis)).astype(int), expected.astype(int),
                               atol=2)
