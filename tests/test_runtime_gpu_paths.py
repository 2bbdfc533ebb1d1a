"""The runtime's GPU code paths, run on the CPU against stand-ins for CuPy and onnxruntime-gpu.

``FakeCupy`` keeps "device" arrays in host memory behind CuPy's interface, and is strict where
CuPy is: no implicit conversion to numpy, no mixing numpy arrays into device arithmetic, shape
and dtype checks on ``get``/``set``. ``FakeOrtGpu`` is onnxruntime with a CUDA provider whose
I/O binding reads the bound input pointers and writes the bound output pointer (the memory is
real, so a wrong pointer, shape or stride gives a wrong image), computing with the real CPU
session. What this cannot show (real CUDA streams, ORT's CUDA kernels, CuPy itself) is left
to ``tests/test_runtime_gpu.py`` on a GPU.
"""

from __future__ import annotations

import ctypes
import sys
import types
from types import SimpleNamespace

import numpy as np
import onnxruntime as real_ort
import pytest
from fusion_edge.runtime import backend_ort
from fusion_edge.runtime.fusion_engine import FusionEngine
from fusion_edge.runtime.testing import write_reference_model


# ------------------------------------------------------------------------- fake CuPy
def _unwrap(x):
    if isinstance(x, FakeDeviceArray):
        return x._a
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(v) for v in x)
    return x


def _wrap(x):
    if isinstance(x, np.ndarray):
        return FakeDeviceArray(x)
    if isinstance(x, np.generic):  # CuPy reductions give 0-d arrays, not scalars
        return FakeDeviceArray(np.asarray(x))
    if isinstance(x, (list, tuple)):
        return type(x)(_wrap(v) for v in x)
    return x


def _reject_host_arrays(values, what: str) -> None:
    for v in values:
        if isinstance(v, (list, tuple)):
            _reject_host_arrays(v, what)
        elif isinstance(v, np.ndarray) and v.ndim > 0:
            raise TypeError(f"{what}: unsupported type {type(v)} (a numpy array mixed into device code)")


def _from_pointer(ptr: int, shape, typestr: str) -> np.ndarray:
    dtype = np.dtype(typestr)
    count = int(np.prod(shape))
    buf = (ctypes.c_byte * (count * dtype.itemsize)).from_address(ptr)
    return np.frombuffer(buf, dtype=dtype, count=count).reshape(shape)


class FakeDeviceArray(np.lib.mixins.NDArrayOperatorsMixin):
    """CuPy's ndarray interface over a host numpy array."""

    def __init__(self, a: np.ndarray) -> None:
        self._a = a

    @property
    def __cuda_array_interface__(self):
        a = self._a
        return {"shape": a.shape, "typestr": a.dtype.str, "data": (a.ctypes.data, False), "version": 3,
                "strides": None if a.flags.c_contiguous else a.strides}

    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    nbytes = property(lambda self: self._a.nbytes)
    flags = property(lambda self: self._a.flags)
    data = property(lambda self: SimpleNamespace(ptr=self._a.ctypes.data))
    device = property(lambda self: SimpleNamespace(id=0))
    T = property(lambda self: FakeDeviceArray(self._a.T))

    def __array__(self, *args, **kwargs):
        raise TypeError("Implicit conversion to a NumPy array is not allowed (use .get())")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        _reject_host_arrays(inputs, ufunc.__name__)
        if "out" in kwargs:
            kwargs["out"] = _unwrap(kwargs["out"])
        return _wrap(getattr(ufunc, method)(*_unwrap(inputs), **kwargs))

    def __getitem__(self, key):
        return _wrap(self._a[_unwrap(key)])

    def __setitem__(self, key, value):
        _reject_host_arrays([value], "__setitem__")
        self._a[_unwrap(key)] = _unwrap(value)

    def __len__(self):
        return len(self._a)

    def __float__(self):
        return float(self._a)

    def astype(self, dtype, copy=True):
        return FakeDeviceArray(self._a.astype(dtype, copy=True))

    def reshape(self, *shape):
        return FakeDeviceArray(self._a.reshape(*shape))

    def transpose(self, *axes):
        return FakeDeviceArray(self._a.transpose(*axes))

    def copy(self):
        return FakeDeviceArray(self._a.copy())

    def min(self, *args, **kwargs):
        return _wrap(self._a.min(*args, **kwargs))

    def max(self, *args, **kwargs):
        return _wrap(self._a.max(*args, **kwargs))

    def sum(self, *args, **kwargs):
        return _wrap(self._a.sum(*args, **kwargs))

    def get(self, stream=None, order="C", out=None, blocking=True):
        if out is None:
            return self._a.copy()
        if not isinstance(out, np.ndarray) or out.shape != self.shape or out.dtype != self.dtype:
            raise ValueError("out must be a numpy array of the same shape and dtype")
        if not out.flags.c_contiguous:
            raise RuntimeError("out must be C-contiguous")
        np.copyto(out, self._a)
        return out

    def set(self, arr, stream=None):
        if arr.shape != self.shape:
            raise ValueError("Shape mismatch")
        if arr.dtype != self.dtype:
            raise TypeError(f"{arr.dtype} array cannot be set to {self.dtype} array")
        np.copyto(self._a, arr)


class FakeStream:
    current: list = []

    def __init__(self, null=False, non_blocking=False, ptds=False) -> None:
        self.ptr = 0 if null else id(self)
        self.synchronized = 0
        self.waited_for: list = []

    def __enter__(self):
        FakeStream.current.append(self)
        return self

    def __exit__(self, *exc):
        FakeStream.current.pop()

    def synchronize(self):
        self.synchronized += 1

    def wait_event(self, event):
        assert event.recorded_on is not None and event.recorded_on is not self
        self.waited_for.append(event.recorded_on)

    def record(self, event=None):
        event = event or FakeEvent()
        event.recorded_on = self
        return event


class FakeEvent:
    def __init__(self, *args, **kwargs) -> None:
        self.recorded_on = None
        self.waited = 0

    def record(self, stream=None):
        self.recorded_on = stream

    def synchronize(self):
        assert self.recorded_on is not None, "waiting on an event that was never recorded"
        self.waited += 1


class FakeDevice:
    def __init__(self, device_id=0) -> None:
        self.id = device_id
        self.compute_capability = "90"

    def use(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


class FakeCupy(types.ModuleType):
    """The parts of the ``cupy`` module the runtime uses; other functions are numpy's on device arrays."""

    ndarray = FakeDeviceArray

    def __init__(self) -> None:
        super().__init__("cupy")
        FakeStream.null = FakeStream(null=True)
        self.cuda = SimpleNamespace(
            Stream=FakeStream, ExternalStream=lambda ptr, device_id=-1: FakeStream(), Event=FakeEvent,
            Device=FakeDevice, get_current_stream=lambda: (FakeStream.current or [FakeStream.null])[-1],
            alloc_pinned_memory=self._alloc_pinned, get_elapsed_time=lambda a, b: 1.0,
            runtime=SimpleNamespace(getDevice=lambda: 0,
                                    getDeviceProperties=lambda i: {"name": b"Fake GPU", "multiProcessorCount": 4}),
        )
        self.pinned_allocations = 0

    def _alloc_pinned(self, nbytes: int):
        self.pinned_allocations += 1
        return bytearray(nbytes)  # writable and exports the buffer protocol, as PinnedMemoryPointer does

    def __getattr__(self, name):
        fn = getattr(np, name)
        if isinstance(fn, type) or not callable(fn):  # dtypes and constants: cupy.float32, cupy.nan
            return fn

        def call(*args, **kwargs):
            _reject_host_arrays(args, f"cupy.{name}")
            return _wrap(fn(*_unwrap(args), **_unwrap(kwargs)))

        return call

    def asarray(self, a, dtype=None):
        if isinstance(a, FakeDeviceArray):
            return a if dtype is None or a.dtype == np.dtype(dtype) else a.astype(dtype)
        cai = getattr(a, "__cuda_array_interface__", None)
        if cai is not None:  # another GPU library's array: a zero-copy view
            view = _from_pointer(cai["data"][0], cai["shape"], cai["typestr"])
            return FakeDeviceArray(view if dtype is None else view.astype(dtype))
        return FakeDeviceArray(np.array(a, dtype=dtype, copy=True))

    def ascontiguousarray(self, a, dtype=None):
        if not isinstance(a, FakeDeviceArray):
            raise TypeError(f"cupy.ascontiguousarray got {type(a)}")
        return FakeDeviceArray(np.ascontiguousarray(a._a, dtype=dtype))

    def asnumpy(self, a, stream=None):
        return a._a.copy() if isinstance(a, FakeDeviceArray) else np.asarray(a)

    def from_dlpack(self, x):
        return self.asarray(x)

    def empty(self, shape, dtype=np.float32):
        return FakeDeviceArray(np.empty(shape, dtype=dtype))

    def zeros(self, shape, dtype=np.float32):
        return FakeDeviceArray(np.zeros(shape, dtype=dtype))

    def copyto(self, dst, src):
        if not isinstance(dst, FakeDeviceArray) or not isinstance(src, FakeDeviceArray):
            raise TypeError("cupy.copyto takes device arrays")
        np.copyto(dst._a, src._a)


class TorchLikeCudaTensor:
    """What the runtime sees of a CUDA torch tensor: the CUDA array interface and a non-numpy dtype."""

    def __init__(self, a: np.ndarray) -> None:
        self._a = np.ascontiguousarray(a)
        self.shape = self._a.shape
        self.dtype = f"torch.{self._a.dtype}"  # np.dtype() cannot read it, as with torch.uint8

    @property
    def __cuda_array_interface__(self):
        return {"shape": self.shape, "typestr": self._a.dtype.str, "data": (self._a.ctypes.data, False),
                "version": 3, "strides": None}


# ----------------------------------------------------------------- fake onnxruntime-gpu
class FakeBinding:
    def __init__(self) -> None:
        self.inputs: dict = {}
        self.outputs: dict = {}

    def bind_input(self, name, device_type, device_id, element_type, shape, buffer_ptr):
        assert device_type == "cuda" and np.dtype(element_type) == np.float32
        self.inputs[name] = (tuple(shape), int(buffer_ptr))

    def bind_output(self, name, device_type="cpu", device_id=0, element_type=None, shape=None, buffer_ptr=None):
        assert device_type == "cuda" and buffer_ptr is not None
        self.outputs[name] = (tuple(shape), int(buffer_ptr))


class FakeSession:
    """A CUDA-provider session: runs the real CPU session on the memory behind the bound pointers."""

    def __init__(self, path, sess_options=None, providers=None, *, owner) -> None:
        self.providers = providers
        self.owner = owner
        self._real = real_ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.bindings = 0
        self.runs = 0

    def get_providers(self):
        names = [p[0] if isinstance(p, tuple) else p for p in self.providers]
        return ["CPUExecutionProvider"] if self.owner.cuda_broken else names

    def get_inputs(self):
        return self._real.get_inputs()

    def get_outputs(self):
        return self._real.get_outputs()

    def run(self, names, feeds, run_options=None):
        return self._real.run(names, feeds)

    def io_binding(self):
        self.bindings += 1
        return FakeBinding()

    def run_with_iobinding(self, binding, run_options=None):
        self.runs += 1
        feeds = {name: _from_pointer(ptr, shape, "<f4").copy() for name, (shape, ptr) in binding.inputs.items()}
        (shape, ptr), = binding.outputs.values()
        result = self._real.run(["fused"], feeds)[0]
        assert result.shape == shape, f"bound output {shape} but the graph gives {result.shape}"
        _from_pointer(ptr, shape, "<f4")[...] = result


class FakeOrtGpu(types.ModuleType):
    def __init__(self, providers=("CUDAExecutionProvider", "CPUExecutionProvider")) -> None:
        super().__init__("onnxruntime")
        self.providers = list(providers)
        self.sessions: list[FakeSession] = []
        self.cuda_broken = False  # the CUDA provider fails to start (libraries missing)
        self.preloads = 0
        self.SessionOptions = real_ort.SessionOptions
        self.GraphOptimizationLevel = real_ort.GraphOptimizationLevel
        self.RunOptions = real_ort.RunOptions
        self.__version__ = "fake-gpu"

    def get_available_providers(self):
        return list(self.providers)

    def InferenceSession(self, path, sess_options=None, providers=None):  # noqa: N802 - ORT's name
        session = FakeSession(path, sess_options, providers, owner=self)
        self.sessions.append(session)
        return session

    def preload_dlls(self):
        self.preloads += 1
        print("Failed to load libcudnn.so.9")  # ORT prints; the backend must keep it off stdout


# -------------------------------------------------------------------------- fixtures
@pytest.fixture()
def gpu(monkeypatch):
    cupy, ort = FakeCupy(), FakeOrtGpu()
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    monkeypatch.setitem(sys.modules, "onnxruntime", ort)
    return SimpleNamespace(cupy=cupy, ort=ort)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return write_reference_model(tmp_path_factory.mktemp("fake_gpu") / "model.onnx", "max")


@pytest.fixture(scope="module")
def fixed_model(tmp_path_factory):
    return write_reference_model(tmp_path_factory.mktemp("fake_gpu_fixed") / "model.onnx", "max", size=(64, 96))


def frames(h=48, w=64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w), dtype=np.uint8), rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def cpu_fuse(model, ir, vis, **options):
    return FusionEngine(model, backend="ort-cpu", **options).fuse(ir, vis)


# ----------------------------------------------------------------------------- tests
def test_cuda_provider_gets_our_stream_and_string_options(gpu, model):
    engine = FusionEngine(model, backend="ort-cuda")
    assert engine.on_gpu and engine.name == "onnxruntime[CUDA]"
    (name, options), cpu = gpu.ort.sessions[-1].providers
    assert name == "CUDAExecutionProvider" and cpu == "CPUExecutionProvider"
    assert options == {"device_id": "0", "user_compute_stream": str(engine.stream.ptr)}
    assert all(isinstance(v, str) for v in options.values())


def test_host_frames_fused_on_the_device_path_match_the_cpu_engine(gpu, model, fixed_model):
    ir, vis = frames()
    for path, size_options in ((model, {}), (fixed_model, {})):
        with pytest.MonkeyPatch.context() as mp:
            mp.setitem(sys.modules, "onnxruntime", real_ort)
            expected = cpu_fuse(path, ir, vis, **size_options)
        engine = FusionEngine(path, backend="ort-cuda", **size_options)
        got = engine.fuse(ir, vis)
        assert isinstance(got, np.ndarray) and got.shape == vis.shape and got.dtype == np.uint8
        # bilinear on the device vs area/OpenCV on the host for the fixed model's resize
        tolerance = 2 if path == model else 40
        assert np.abs(got.astype(int) - expected.astype(int)).max() <= tolerance
        assert np.abs(got.astype(int) - expected.astype(int)).mean() < 1.5
        assert engine.stream.synchronized >= 1


def test_device_frames_never_touch_host_memory(gpu, model, monkeypatch):
    from fusion_edge.runtime import fusion_engine

    ir, vis = frames()
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "onnxruntime", real_ort)
        expected = cpu_fuse(model, ir, vis)
    engine = FusionEngine(model, backend="ort-cuda")

    def no_host(*args, **kwargs):
        raise AssertionError("a device frame went through host memory")

    monkeypatch.setattr(backend_ort, "_host_batch", no_host)
    monkeypatch.setattr(fusion_engine, "to_host", no_host)
    out = engine.fuse(gpu.cupy.asarray(ir), gpu.cupy.asarray(vis), to_host_memory=False)
    assert isinstance(out, FakeDeviceArray) and out.shape == vis.shape
    # the engine's stream was ordered after the caller's (the legacy stream here), where the frames came from
    assert engine.stream.waited_for and engine.stream.waited_for[0] is FakeStream.null
    # float colour conversion on the device, OpenCV's integer one on the host: within 2 levels
    assert np.abs(out.get().astype(int) - expected.astype(int)).max() <= 2
    # a CUDA torch tensor (CUDA array interface, torch dtype) is taken as a zero-copy view
    again = engine.fuse(TorchLikeCudaTensor(ir), TorchLikeCudaTensor(vis), to_host_memory=False)
    np.testing.assert_array_equal(again.get(), out.get())


def test_torch_cpu_tensors_are_read_as_host_frames(model):
    torch = pytest.importorskip("torch")
    ir, vis = frames()
    engine = FusionEngine(model, backend="ort-cpu")
    np.testing.assert_array_equal(engine.fuse(torch.from_numpy(ir), torch.from_numpy(vis)), engine.fuse(ir, vis))


def test_pipeline_device_stage_with_pinned_double_buffers(gpu, model):
    from fusion_edge.runtime import FusionPipeline, SyntheticSource
    from fusion_edge.runtime.stages import DeviceStage, make_stage

    engine = FusionEngine(model, backend="ort-cuda", out_dtype=np.uint8)
    stage = make_stage(engine)
    assert isinstance(stage, DeviceStage) and stage.depth == 2
    src = dict(live=False, count=30)
    with FusionPipeline(engine, ir=SyntheticSource((48, 64), **src),
                        vis=SyntheticSource((48, 64), channels=3, **src), keep_inputs=True) as pipe:
        out = list(pipe)
    assert len(out) == 30 and pipe.stats.dropped == 0
    # pinned buffers are made once per slot and reused: ir, vis and out in each of the two slots
    assert gpu.cupy.pinned_allocations == 6
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "onnxruntime", real_ort)
        cpu = FusionEngine(model, backend="ort-cpu", out_dtype=np.uint8)
        for f in (out[0], out[13], out[-1]):
            assert np.abs(f.image.astype(int) - cpu.fuse(f.ir, f.vis).astype(int)).max() <= 2
    # each returned image is its own copy (the pinned buffer is reused two pairs later)
    assert len({f.image.ctypes.data for f in out}) == len(out)


def test_cuda_graph_binds_once_and_hands_out_copies(gpu, fixed_model):
    from fusion_edge.runtime.backend_ort import OrtBackend

    backend = OrtBackend(fixed_model, providers="cuda", cuda_graph=True)
    (_, options), _ = gpu.ort.sessions[-1].providers
    assert options["enable_cuda_graph"] == "1"
    cp = gpu.cupy
    rng = np.random.default_rng(1)
    a = [cp.asarray(rng.random((1, 1, 64, 96), dtype=np.float32)) for _ in range(4)]
    first = backend.infer(a[0], a[1])
    second = backend.infer(a[2], a[3])
    np.testing.assert_array_equal(first.get(), np.maximum(a[0].get(), a[1].get()))  # not overwritten
    np.testing.assert_array_equal(second.get(), np.maximum(a[2].get(), a[3].get()))
    session = gpu.ort.sessions[-1]
    assert session.bindings == 1 and session.runs == 2
    with pytest.raises(ValueError, match="one input shape"):
        backend.infer(cp.zeros((1, 1, 32, 32)), cp.zeros((1, 1, 32, 32)))
    with pytest.raises(ValueError, match="CUDA provider"):
        OrtBackend(fixed_model, providers="cpu", cuda_graph=True)


def test_mismatched_batches_are_refused(gpu, model):
    from fusion_edge.runtime.backend_ort import OrtBackend

    backend = OrtBackend(model, providers="cuda")
    with pytest.raises(ValueError, match="differ in shape"):
        backend.infer(gpu.cupy.zeros((1, 1, 8, 8)), gpu.cupy.zeros((1, 1, 8, 16)))
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        backend.infer(gpu.cupy.zeros((8, 8)), gpu.cupy.zeros((8, 8)))


def test_cuda_provider_that_fails_to_start(gpu, model, caplog, capsys):
    from fusion_edge.runtime.backend_ort import OrtBackend

    gpu.ort.cuda_broken = True
    with pytest.raises(RuntimeError, match="LD_LIBRARY_PATH"):
        OrtBackend(model, providers="cuda")
    # tried without our stream option, then preloaded the CUDA libraries and tried again
    assert gpu.ort.preloads == 1 and len(gpu.ort.sessions) == 3
    assert "user_compute_stream" not in gpu.ort.sessions[1].providers[0][1]
    assert "libcudnn" not in capsys.readouterr().out  # what ORT printed went to the log
    backend = OrtBackend(model, providers="auto")  # auto: warn and run on the CPU
    assert not backend.on_gpu and backend.stream is None
    assert "could not start" in caplog.text
    ir, vis = frames()
    assert FusionEngine(backend).fuse(ir, vis).shape == vis.shape


def test_cuda_provider_that_rejects_our_stream_runs_on_its_own(gpu, model, caplog):
    """ORT's Python API moves a session to the CPU when a provider raises while starting; when our
    stream option is what it rejected, the backend still gets the GPU without it."""
    from fusion_edge.runtime.backend_ort import OrtBackend

    real_get_providers = FakeSession.get_providers

    def picky(session):
        options = session.providers[0][1] if isinstance(session.providers[0], tuple) else {}
        return ["CPUExecutionProvider"] if "user_compute_stream" in options else real_get_providers(session)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(FakeSession, "get_providers", picky)
        backend = OrtBackend(model, providers="cuda")
    assert backend.on_gpu and len(gpu.ort.sessions) == 2 and gpu.ort.preloads == 0
    assert "only without our CUDA stream" in caplog.text
    ir, vis = frames()
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "onnxruntime", real_ort)
        expected = cpu_fuse(model, ir, vis)
    assert np.abs(FusionEngine(backend).fuse(ir, vis).astype(int) - expected.astype(int)).max() <= 2


def test_auto_asks_for_tensorrt_only_when_its_libraries_load(gpu, monkeypatch):
    ort = FakeOrtGpu(["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(backend_ort, "tensorrt_libraries_present", lambda: False)
    assert backend_ort.choose_providers(ort, "auto") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert backend_ort.choose_providers(ort, "tensorrt")[0] == "TensorrtExecutionProvider"
    monkeypatch.setattr(backend_ort, "tensorrt_libraries_present", lambda: True)
    assert backend_ort.choose_providers(ort, "auto")[0] == "TensorrtExecutionProvider"
    with pytest.raises(RuntimeError, match="onnxruntime-gpu"):
        backend_ort.choose_providers(FakeOrtGpu(["CPUExecutionProvider"]), "cuda")


@pytest.mark.parametrize("live", [True, False])
def test_device_stage_overlaps_for_recordings_only(gpu, model, monkeypatch, live):
    """Live: frame N is handed out before N+1 is queued (no frame held back behind the next
    one); recordings: N+1 is queued while N is in flight (double buffering)."""
    from fusion_edge.runtime import FusionPipeline, SyntheticSource
    from fusion_edge.runtime.stages import DeviceStage

    events = []
    submit, collect = DeviceStage.submit, DeviceStage.collect

    def logged_submit(self, ir, vis, meta):
        events.append("submit")
        return submit(self, ir, vis, meta)

    def logged_collect(self, ticket):
        events.append("collect")
        return collect(self, ticket)

    monkeypatch.setattr(DeviceStage, "submit", logged_submit)
    monkeypatch.setattr(DeviceStage, "collect", logged_collect)
    engine = FusionEngine(model, backend="ort-cuda", out_dtype=np.uint8)
    src = dict(live=live, realtime=live, fps=100, count=None if live else 12)
    with FusionPipeline(engine, ir=SyntheticSource((32, 32), **src), vis=SyntheticSource((32, 32), **src),
                        tolerance=0.004, max_frames=10, log_every_s=None) as pipe:
        assert len(list(pipe)) == 10
    back_to_back = sum(a == b == "submit" for a, b in zip(events, events[1:]))
    if live:
        assert back_to_back == 0 and events[:2] == ["submit", "collect"]
    else:
        assert back_to_back > 0
