"""Live-mode latency behaviour of the pipeline: the newest frame wins, at most one waits, and
latency runs from the capture. Driven by sources and an engine the test controls, so the
assertions are about which frames come out, not about timings."""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fusion_edge.runtime import FusionEngine, FusionPipeline
from fusion_edge.runtime.engines import Backend
from fusion_edge.runtime.pairing import TimestampPairer
from fusion_edge.runtime.queues import FrameQueue
from fusion_edge.runtime.sources import Frame, Source
from fusion_edge.runtime.stats import StatsCollector, percentiles
from fusion_edge.runtime.testing import write_reference_model


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return write_reference_model(tmp_path_factory.mktemp("latency") / "model.onnx", "max")


class ManualSource(Source):
    """A live camera whose frames the test hands over one by one (``give``)."""

    live = True

    def __init__(self, name: str, *, read_delay: float = 0.0, stamps: bool = False) -> None:
        self.name = name
        self.read_delay = read_delay  # a slow decode after the frame arrived
        self.stamps_capture_time = stamps
        self.frames: queue.Queue = queue.Queue()
        self.read_count = 0
        self.ended = threading.Event()  # the camera is unplugged: read() returns
        self._open = False

    def give(self, timestamp: float | None = None) -> None:
        self.frames.put(timestamp)

    def open(self) -> None:
        self._open = True

    def read(self):
        while self._open and not self.ended.is_set():
            try:
                ts = self.frames.get(timeout=0.02)
            except queue.Empty:
                continue
            stamp = time.monotonic() if ts is None else ts
            time.sleep(self.read_delay)
            self.read_count += 1
            return Frame(stamp, np.full((16, 16), self.read_count % 256, np.uint8))
        return None

    def close(self) -> None:
        self._open = False


def unplug(*sources: ManualSource) -> None:
    for source in sources:
        source.ended.set()


class GatedBackend(Backend):
    """Max fusion that waits for ``release`` before each pair: inference as slow as the test wants."""

    def __init__(self, path) -> None:
        self.path, self.name = Path(path), "gated"
        self.started = threading.Semaphore(0)
        self.gate = threading.Semaphore(0)

    def infer(self, vis, ir):
        self.started.release()
        assert self.gate.acquire(timeout=10), "the test never released the engine"
        return np.maximum(vis, ir)


def wait_until(predicate, timeout=5.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.005)


def test_percentiles_are_numpys():
    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 10, 999, 1000):
        values = rng.exponential(size=n)
        np.testing.assert_array_equal(percentiles(values, (50.0, 99.0)), np.percentile(values, [50, 99]))
    collector = StatsCollector()
    for i in range(101):
        collector.output(i / 1000.0)
    assert collector.snapshot().latency_p50_ms == pytest.approx(50.0)


def test_queue_drain_takes_everything_waiting():
    q = FrameQueue(3, "newest")
    assert q.drain() == []
    for i in range(5):
        q.put(i)
    assert q.drain() == [2, 3, 4] and len(q) == 0 and q.dropped == 2
    q.close()
    assert q.drain() == []


class Stamp:
    def __init__(self, timestamp):
        self.timestamp = timestamp


def test_pairer_pop_latest_skips_older_pairs():
    pairer = TimestampPairer(tolerance=0.01)
    for t in (0.0, 0.1, 0.2):
        pairer.push(0, Stamp(t))
        pairer.push(1, Stamp(t + 0.001))
    ir, vis = pairer.pop_latest()
    assert (ir.timestamp, vis.timestamp) == (0.2, pytest.approx(0.201))
    assert pairer.superseded == 4 and pairer.pairs == 1 and pairer.dropped == 0
    assert pairer.pop_latest() is None


def test_live_worker_takes_the_newest_pair_after_a_slow_frame(model):
    backend = GatedBackend(model)
    engine = FusionEngine(backend)
    ir, vis = ManualSource("ir"), ManualSource("vis")
    with FusionPipeline(engine, ir=ir, vis=vis, tolerance=0.005, log_every_s=None) as pipe:
        out = iter(pipe)
        ir.give(0.0)
        vis.give(0.001)
        assert backend.started.acquire(timeout=5)  # pair 0 is being inferred
        for k in range(1, 4):  # three pairs arrive while it runs: only the newest may be fused next
            ir.give(k / 10)
            vis.give(k / 10 + 0.001)
        wait_until(lambda: ir.read_count == 4 and vis.read_count == 4 and len(pipe._queues["ir"]) == 1
                   and len(pipe._queues["vis"]) == 1)
        backend.gate.release()
        first = next(out)
        assert backend.started.acquire(timeout=5)
        backend.gate.release()
        second = next(out)
        stats = pipe.stats
        unplug(ir, vis)
    assert first.ir_timestamp == 0.0 and second.ir_timestamp == pytest.approx(0.3)
    # the two skipped pairs were replaced in the one-frame queues and counted, not fused late
    assert stats.details["dropped.queue.ir"] == 2 and stats.details["dropped.queue.vis"] == 2
    assert stats.dropped >= 4


def test_live_output_keeps_only_the_newest_fused_frame(model):
    ir, vis = ManualSource("ir"), ManualSource("vis")
    with FusionPipeline(model, ir=ir, vis=vis, tolerance=0.005, log_every_s=None) as pipe:
        for k in range(3):  # the consumer does not read while three pairs are fused
            ir.give(k / 10)
            vis.give(k / 10)
            wait_until(lambda k=k: pipe.stats_collector.frames == 0 and pipe._out.dropped + len(pipe._out) == k + 1)
        out = iter(pipe)  # kept: a dropped iterator closes the pipeline
        fused = next(out)
        assert fused.ir_timestamp == pytest.approx(0.2)
        assert pipe.stats.details["dropped.queue.output"] == 2
        unplug(ir, vis)


def test_recordings_still_lose_nothing(model):
    from fusion_edge.runtime import ArraySource

    frames = [np.full((16, 16), i, np.uint8) for i in range(20)]
    with FusionPipeline(model, ir=ArraySource(frames), vis=ArraySource(frames), log_every_s=None) as pipe:
        out = [f.image[0, 0] for f in pipe]
    assert out == list(range(20)) and pipe.stats.dropped == 0


def test_latency_runs_from_the_capture_stamp(model):
    # a source that stamps frames on arrival and decodes for 80 ms: the decode counts as latency
    def first_fused(stamps: bool, tolerance: float):
        ir, vis = (ManualSource(name, read_delay=0.08, stamps=stamps) for name in ("ir", "vis"))
        with FusionPipeline(model, ir=ir, vis=vis, tolerance=tolerance, log_every_s=None) as pipe:
            ir.give()
            vis.give()
            out = iter(pipe)  # kept: a dropped iterator closes the pipeline
            fused = next(out)
            unplug(ir, vis)
        return fused

    assert first_fused(stamps=True, tolerance=0.05).latency_s >= 0.08
    # a source without capture stamps: latency starts when read() returned
    assert first_fused(stamps=False, tolerance=1.0).latency_s < 0.08


def test_camera_sources_stamp_before_decoding(monkeypatch):
    import cv2
    from fusion_edge.runtime.sources import CaptureSource

    calls = []

    class FakeCapture:
        def __init__(self, *args):
            pass

        def isOpened(self):  # noqa: N802 - OpenCV's name
            return True

        def get(self, prop):
            return 30.0

        def set(self, *args):
            return True

        def grab(self):
            calls.append("grab")
            return True

        def retrieve(self):
            calls.append(("retrieve", time.monotonic()))
            return True, np.zeros((4, 4), np.uint8)

        def read(self):
            raise AssertionError("a live camera is read with grab() + retrieve()")

        def release(self):
            pass

    monkeypatch.setattr(cv2, "VideoCapture", FakeCapture)
    cam = CaptureSource(0)
    assert cam.live and cam.stamps_capture_time
    cam.open()
    frame = cam.read()
    assert calls[0] == "grab" and frame.timestamp <= calls[1][1]


def test_queue_size_is_checked(model):
    with pytest.raises(ValueError, match="queue_size"):
        FusionPipeline(model, ir=ManualSource("ir"), vis=ManualSource("vis"), queue_size=0)
