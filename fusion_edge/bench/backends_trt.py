"""TensorRT backend: build an engine from the portable ONNX graph (or load a given engine) and run
it on torch's current CUDA stream, with input and output buffers owned by torch.

Engines are built by ``fusion_edge.export.engine.build_engine`` where that exists (fp16 from an
fp16 graph), else by the small builder below; TensorRT for RTX is used when full TensorRT is
absent (it does not run on every GPU: the build or load error is then the row's reason).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from fusion_edge.bench.backend_base import BackendUnavailable, BenchContext, Prepared
from fusion_edge.bench.timing import CudaEventTimer

log = logging.getLogger(__name__)


def import_trt():
    """The TensorRT module (full TensorRT first, else TensorRT for RTX)."""
    try:
        from fusion_edge.export.trt_loader import import_tensorrt

        return import_tensorrt()
    except ImportError as exc:
        raise BackendUnavailable(f"TensorRT is not installed ({str(exc).splitlines()[0]})") from exc


def _build_local(trt, onnx_path: Path, batch: int, height: int, width: int) -> bytes:
    """Parse and build with TensorRT's API directly (precision follows the graph)."""
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    flags = 0
    if "STRONGLY_TYPED" in trt.NetworkDefinitionCreationFlag.__members__:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    if any(-1 in tuple(network.get_input(i).shape) for i in range(network.num_inputs)):
        profile = builder.create_optimization_profile()
        shape = (batch, 1, height, width)
        for i in range(network.num_inputs):
            profile.set_shape(network.get_input(i).name, shape, shape, shape)
        config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError("TensorRT failed to build an engine")
    return bytes(serialized)


def build_serialized(trt, onnx_path: Path, batch: int, height: int, width: int, fp16: bool) -> bytes:
    try:
        from fusion_edge.export.engine import ShapeProfile, build_engine
    except ImportError:
        return _build_local(trt, onnx_path, batch, height, width)
    profile = ShapeProfile((height, width), (height, width), (height, width), batch=batch)
    with tempfile.TemporaryDirectory(prefix="fusion-edge-bench-trt-") as tmp:
        engine_path = Path(tmp) / "model.engine"
        build_engine(onnx_path, engine_path, profile=profile, fp16=fp16, trt=trt)
        return engine_path.read_bytes()


def _register_plugins(trt) -> None:
    """Our plugins must be registered before an engine that uses them is deserialized."""
    try:
        from fusion_edge.runtime.backend_tensorrt import register_plugins
    except ImportError:
        return
    register_plugins(trt, trt.Logger(trt.Logger.ERROR))


def _torch_dtype(trt, dtype):
    import torch

    table = {trt.float32: torch.float32, trt.float16: torch.float16}
    if dtype not in table:
        raise RuntimeError(f"engine tensor type {dtype} is not supported by the benchmark")
    return table[dtype]


def prepare(ctx: BenchContext, height: int, width: int, backend: str = "tensorrt") -> Prepared:
    import torch

    if not ctx.on_gpu:
        raise BackendUnavailable("tensorrt needs a CUDA GPU (running on CPU)")
    trt = import_trt()
    free_before = torch.cuda.mem_get_info()[0]
    engine_file = ctx.source.engine_path()
    if engine_file is not None:
        serialized = engine_file.read_bytes()
    else:
        onnx_path = ctx.source.onnx_for(height, width, ctx.batch, ctx.fp16)
        serialized = build_serialized(trt, onnx_path, ctx.batch, height, width, ctx.fp16)
    _register_plugins(trt)
    runtime = trt.Runtime(trt.Logger(trt.Logger.ERROR))
    engine = runtime.deserialize_cuda_engine(serialized)
    if engine is None:
        raise RuntimeError(f"{trt.__name__} could not load the engine (built for another GPU or TensorRT version?)")
    context = engine.create_execution_context()
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
    buffers = []
    for name in inputs + [n for n in names if n not in inputs]:  # input shapes fix the output shapes
        if name in inputs:
            shape = tuple(engine.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                shape = (ctx.batch, 1, height, width)
                if not context.set_input_shape(name, shape):
                    raise BackendUnavailable(f"the engine does not accept {name} of shape {shape}")
        else:
            shape = tuple(context.get_tensor_shape(name))
        tensor = torch.rand(shape, device=ctx.device).to(_torch_dtype(trt, engine.get_tensor_dtype(name)))
        context.set_tensor_address(name, tensor.data_ptr())
        buffers.append(tensor)
    in_shape = tuple(buffers[0].shape)
    if in_shape[0] != ctx.batch or in_shape[-2:] != (height, width):
        raise BackendUnavailable(f"the engine is fixed at input {'x'.join(map(str, in_shape))}")

    def run():
        if not context.execute_async_v3(torch.cuda.current_stream().cuda_stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")

    def peak_memory():
        used = (free_before - torch.cuda.mem_get_info()[0]) / 1e6
        return used, "device memory taken by engine, context and buffers (cudaMemGetInfo delta)"

    notes = [f"{trt.__name__} {getattr(trt, '__version__', '')}".strip()]
    keep_alive = [runtime, engine, context, buffers]
    return Prepared(run=run, timer=CudaEventTimer(), peak_memory=peak_memory, close=keep_alive.clear, notes=notes)


PREPARE = {"tensorrt": prepare}
