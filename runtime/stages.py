"""The inference stage of the pipeline: submit a pair, collect its fused image later.

``HostStage`` (CPU backends) does the work in ``submit``. ``DeviceStage`` (GPU backends)
copies the frames into pinned host buffers, uploads them, preprocesses, infers and
postprocesses on the engine's CUDA stream and downloads into a pinned buffer, all queued
without waiting; ``collect`` waits for that pair's event. With two buffer sets the host
pairs and stages frame N+1 while the GPU works on frame N (double buffering; the pipeline
uses it for recordings, and one set for live sources, where holding frame N back until N+1 is
queued would add latency).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from fusion_edge.runtime.arrays import follow_callers_stream, require_cupy
from fusion_edge.runtime.fusion_engine import FusionEngine


@dataclass
class Ticket:
    """A submitted pair: its metadata and how to get its result."""

    meta: Any
    result: Any = None  # host stage: the finished image
    event: Any = None  # device stage: set when the download is done
    host_out: np.ndarray | None = None
    keep: Any = None  # device arrays that must live until the event


class HostStage:
    depth = 1

    def __init__(self, engine: FusionEngine) -> None:
        self.engine = engine

    def submit(self, ir: np.ndarray, vis: np.ndarray, meta: Any) -> Ticket:
        return Ticket(meta, result=self.engine.run(self.engine.prepare(ir, vis)))

    def collect(self, ticket: Ticket) -> np.ndarray:
        return ticket.result


class DeviceStage:
    def __init__(self, engine: FusionEngine, depth: int = 2) -> None:
        self.engine = engine
        self.cupy = require_cupy("the GPU pipeline")
        self.stream = engine.stream
        self.depth = max(1, depth)
        self._slots: list[dict[str, np.ndarray]] = [{} for _ in range(self.depth)]
        self._next = 0

    def _pinned(self, slot: dict, key: str, shape: tuple, dtype: np.dtype) -> np.ndarray:
        buf = slot.get(key)
        if buf is None or buf.shape != tuple(shape) or buf.dtype != dtype:
            count = int(np.prod(shape))
            mem = self.cupy.cuda.alloc_pinned_memory(max(1, count * np.dtype(dtype).itemsize))
            buf = np.frombuffer(mem, dtype=dtype, count=count).reshape(shape)
            slot[key] = buf
        return buf

    def submit(self, ir: np.ndarray, vis: np.ndarray, meta: Any) -> Ticket:
        """Queue one pair; the caller keeps at most ``depth`` tickets uncollected."""
        cp = self.cupy
        slot = self._slots[self._next]
        self._next = (self._next + 1) % self.depth
        if not (isinstance(ir, np.ndarray) and isinstance(vis, np.ndarray)):
            follow_callers_stream(cp, self.stream)  # GPU frames: after the work that produced them
        with self.stream:
            device = []
            for key, frame in (("ir", ir), ("vis", vis)):
                if isinstance(frame, np.ndarray):
                    staged = self._pinned(slot, key, frame.shape, frame.dtype)
                    np.copyto(staged, frame)
                    d = cp.empty(frame.shape, dtype=frame.dtype)
                    d.set(staged, stream=self.stream)
                else:  # already on the GPU
                    d = cp.asarray(frame)
                device.append(d)
            prep = self.engine.preprocessor.prepare(device[0], device[1])
            out = self.engine.run(prep)
            host_out = self._pinned(slot, "out", out.shape, np.dtype(out.dtype))
            try:
                out.get(stream=self.stream, out=host_out, blocking=False)
            except TypeError:  # CuPy < 13: no ``blocking``; copies into pinned memory are async anyway
                out.get(stream=self.stream, out=host_out)
            event = self.stream.record()
        return Ticket(meta, event=event, host_out=host_out, keep=(device, prep, out))

    def collect(self, ticket: Ticket) -> np.ndarray:
        ticket.event.synchronize()
        ticket.keep = None
        return ticket.host_out.copy()  # the pinned buffer is reused two pairs later


def make_stage(engine: FusionEngine, depth: int = 2):
    return DeviceStage(engine, depth) if engine.on_gpu else HostStage(engine)
