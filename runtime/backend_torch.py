"""PyTorch backend, for development: run a checkpoint in the pipeline before exporting it.

torch is imported here, when this backend is opened, and nowhere else in the runtime.
GPU frames are shared with torch through DLPack (no copy).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from fusion_edge.runtime.arrays import is_device_array, to_device, to_host
from fusion_edge.runtime.engines import Backend


class TorchBackend(Backend):
    def __init__(self, path: Path, *, device_id: int = 0, device: str | None = None) -> None:
        try:
            import torch

            from fusion_edge.inference import load_model
        except ImportError as exc:
            raise ImportError(f"the PyTorch backend needs torch (`pip install torch`): {exc}") from exc
        self._torch = torch
        self.path = Path(path)
        self.device_id = device_id
        if device is None:
            device = f"cuda:{device_id}" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.model = load_model(self.path, device=self.device)
        self.on_gpu = self.device.type == "cuda"
        if self.on_gpu:
            from fusion_edge.runtime.arrays import require_cupy

            cupy = require_cupy("the PyTorch backend on the GPU (zero-copy frames)")
            self._cupy = cupy
            self._torch_stream = torch.cuda.Stream(self.device)
            self.stream = cupy.cuda.ExternalStream(self._torch_stream.cuda_stream)
        self.input_hw = (None, None)  # the model pads any size itself
        self.name = f"torch {torch.__version__} ({self.device})"

    def _tensor(self, x):
        torch = self._torch
        if is_device_array(x):
            t = torch.from_dlpack(to_device(x))
        else:
            t = torch.from_numpy(np.ascontiguousarray(to_host(x), dtype=np.float32))
        return t.to(self.device, torch.float32, non_blocking=True)

    def infer(self, vis, ir):
        torch = self._torch
        if not self.on_gpu:
            with torch.inference_mode():
                return self.model(self._tensor(vis), self._tensor(ir)).clamp_(0.0, 1.0).numpy()
        with torch.cuda.stream(self._torch_stream), torch.inference_mode():
            out = self.model(self._tensor(vis), self._tensor(ir)).clamp_(0.0, 1.0)
        return self._cupy.from_dlpack(out.detach())
