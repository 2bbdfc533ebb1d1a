"""``FusionEngine``: fuse one IR/VIS pair with any backend, from any array, in one call.

The building block under the pipeline and the simplest API for apps:

    engine = FusionEngine("model.onnx")            # or model.engine, a model folder, a .pt
    fused = engine.fuse(ir_frame, vis_frame)      # numpy in, numpy out (like vis: grey or BGR)

GPU frames (CuPy, or anything with DLPack) stay on the GPU through preprocessing,
inference and postprocessing when the backend runs on the GPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fusion_edge.runtime.arrays import follow_callers_stream, is_device_array, require_cupy, to_device, to_host
from fusion_edge.runtime.calibration import Calibration
from fusion_edge.runtime.engines import Backend, ModelInfo, model_info, open_backend, read_manifest
from fusion_edge.runtime.postprocess import Postprocessor
from fusion_edge.runtime.preprocess import Prepared, Preprocessor


class FusionEngine:
    """A loaded fusion model with its pre- and postprocessing.

    ``backend``: "auto" (by file and what is installed), "tensorrt", "ort", "ort-trt",
    "ort-cuda", "ort-cpu" or "torch". ``calibration``: a Calibration or the path of a
    calibration file (IR -> VIS homography). Other options are ``Preprocessor``'s.
    """

    def __init__(self, model: str | Path | Backend, *, backend: str = "auto", device_id: int = 0,
                 calibration: Calibration | str | Path | None = None, colour: str = "auto",
                 output_size: str = "input", ir_range: str = "scale", out_dtype: Any = None,
                 **backend_options: Any) -> None:
        if isinstance(model, Backend):
            self.backend = model
        else:
            self.backend = open_backend(model, backend, device_id=device_id, **backend_options)
        if calibration is not None and not isinstance(calibration, Calibration):
            calibration = Calibration.load(calibration)
        self.manifest = read_manifest(self.backend.path)
        self.info: ModelInfo = model_info(self.manifest, self.backend.input_hw)
        self.preprocessor = Preprocessor(self.info, calibration, colour=colour, output_size=output_size,
                                         ir_range=ir_range, out_dtype=out_dtype)
        self.postprocessor = Postprocessor()

    @property
    def on_gpu(self) -> bool:
        return self.backend.on_gpu

    @property
    def name(self) -> str:
        return self.backend.name

    @property
    def stream(self):
        return self.backend.stream

    def prepare(self, ir: Any, vis: Any) -> Prepared:
        """Preprocess where the model runs: host frames go to the GPU once, for a GPU backend."""
        if not self.on_gpu:
            if is_device_array(ir) or is_device_array(vis):
                ir, vis = to_host(ir), to_host(vis)
            return self.preprocessor.prepare(ir, vis)
        if is_device_array(ir) or is_device_array(vis):
            follow_callers_stream(require_cupy("GPU frames"), self.stream)
        with self.stream:
            return self.preprocessor.prepare(to_device(ir), to_device(vis))

    def run(self, prep: Prepared):
        """Inference and postprocessing of a prepared pair (queued on the stream on a GPU)."""
        if self.on_gpu:
            with self.stream:
                return self.postprocessor.finish(self.backend.infer(prep.vis, prep.ir), prep)
        return self.postprocessor.finish(self.backend.infer(prep.vis, prep.ir), prep)

    def fuse(self, ir: Any, vis: Any, *, to_host_memory: bool = True):
        """Fuse one pair. Returns an image like ``vis`` (grey or BGR, its dtype unless
        ``out_dtype`` was set) at the VIS size (or the engine's, with output_size="engine").

        With ``to_host_memory=False`` and a GPU backend the result stays a CuPy array.
        """
        out = self.run(self.prepare(ir, vis))
        if self.on_gpu:
            self.backend.synchronize()  # our stream does not sync with the default one
            return to_host(out) if to_host_memory else out
        return out

    def infer(self, vis, ir):
        """The raw network on a batch: (B, 1, H, W) float32 in [0, 1] each (no pre/post)."""
        return self.backend.infer(vis, ir)

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> FusionEngine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        size = "dynamic" if self.info.fixed_hw is None else "x".join(map(str, self.info.fixed_hw[::-1]))
        return f"<FusionEngine {self.backend.path.name} on {self.name}, input {size}>"
