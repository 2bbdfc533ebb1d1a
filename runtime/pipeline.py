"""The streaming pipeline: capture threads -> pairing -> inference -> your loop and sinks.

    with FusionPipeline("model.onnx", ir=0, vis=1, calibration="rig.json") as pipe:
        for fused in pipe:                 # FusedFrame: image, timestamps, latency, stats
            cv2.imshow("fused", fused.image)

One capture thread per source puts frames into a small bounded queue. For live sources
the newest frame wins: each queue holds one frame, replaced (and counted as dropped) when a
newer one comes, the worker takes the newest pair ready, and a fused frame waiting for the
consumer is replaced by a newer one; so no frame waits behind a stale one. For recordings
the queues block (nothing is lost) and, on a GPU, the worker overlaps frame N+1's upload with
frame N's inference (double buffering: more throughput, up to one engine run more latency).
A worker thread pairs frames by timestamp, runs the engine and hands fused frames to the
consumer, which runs the sinks. Sources
that fail are reopened with backoff; bad frames are rejected and counted; the end of the
input, ``stop()``, a sink returning False or Ctrl-C end the run cleanly (sinks are closed,
video files finalised).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fusion_edge.runtime.calibration import Calibration
from fusion_edge.runtime.fusion_engine import FusionEngine
from fusion_edge.runtime.pairing import TimestampPairer
from fusion_edge.runtime.queues import Closed, FrameQueue
from fusion_edge.runtime.sinks import Sink
from fusion_edge.runtime.sources import Source, open_source, split_side_by_side
from fusion_edge.runtime.stages import make_stage
from fusion_edge.runtime.stats import PipelineStats, StatsCollector
from fusion_edge.runtime.validation import FrameValidator

log = logging.getLogger(__name__)

_POLL_S = 0.05  # how often blocked threads look at the stop flag


@dataclass
class ReconnectPolicy:
    """Waits between attempts to reopen a failed source: ``initial_s``, doubling up to ``max_s``.
    ``max_attempts`` consecutive failures end that source (None: keep trying)."""

    initial_s: float = 0.5
    max_s: float = 5.0
    factor: float = 2.0
    max_attempts: int | None = None


class Captured:
    """A validated frame with the monotonic time it was captured."""

    __slots__ = ("timestamp", "image", "captured")

    def __init__(self, timestamp: float, image: Any, captured: float) -> None:
        self.timestamp, self.image, self.captured = timestamp, image, captured


@dataclass
class FusedFrame:
    """One output. ``timestamp`` is the VIS frame's; ``latency_s`` runs from the capture of the
    older of the two input frames to the moment the frame reached the consumer."""

    index: int
    timestamp: float
    image: np.ndarray
    ir_timestamp: float
    vis_timestamp: float
    latency_s: float
    stats: PipelineStats | None = None
    ir: Any = None  # the input frames, when the pipeline keeps them (keep_inputs=True)
    vis: Any = None


class _CaptureThread(threading.Thread):
    def __init__(self, key: str, source: Source, queue: FrameQueue, stats: StatsCollector, stop: threading.Event,
                 policy: ReconnectPolicy) -> None:
        super().__init__(name=f"capture-{key}", daemon=True)
        self.key, self.source, self.queue, self.stats = key, source, queue, stats
        self.stop_event, self.policy = stop, policy
        self.validator = FrameValidator(key)
        self.frames = 0
        self.error: BaseException | None = None

    def _wait(self, delay: float, failures: int) -> bool:
        """Back off before reopening; False when it is time to give up."""
        if self.policy.max_attempts is not None and failures > self.policy.max_attempts:
            log.error("%s: giving up on %s after %d failed attempts", self.key, self.source.name, failures - 1)
            return False
        self.stop_event.wait(delay)
        return True

    def run(self) -> None:
        delay, failures, opened_before, last_reject_log = self.policy.initial_s, 0, False, 0.0
        stamps_capture = bool(self.source.live and getattr(self.source, "stamps_capture_time", False))
        try:
            while not self.stop_event.is_set():
                if not self.source.is_open:
                    try:
                        self.source.open()
                    except Exception as exc:
                        failures += 1
                        self.stats.count(f"errors.{self.key}")
                        log.warning("%s: cannot open %s (%s); retrying in %.1f s", self.key, self.source.name, exc,
                                    delay)
                        if not self._wait(delay, failures):
                            break
                        delay = min(delay * self.policy.factor, self.policy.max_s)
                        continue
                    if opened_before:
                        self.stats.count(f"reconnects.{self.key}")
                        log.info("%s: reconnected to %s", self.key, self.source.name)
                    opened_before = True
                try:
                    frame = self.source.read()
                except Exception as exc:
                    failures += 1
                    self.stats.count(f"errors.{self.key}")
                    log.warning("%s: reading %s failed (%s); reopening in %.1f s", self.key, self.source.name, exc,
                                delay)
                    self.source.close()
                    if not self._wait(delay, failures):
                        break
                    delay = min(delay * self.policy.factor, self.policy.max_s)
                    continue
                if frame is None:
                    if not self.source.live:
                        log.info("%s: end of %s after %d frames", self.key, self.source.name, self.frames)
                        break
                    failures += 1
                    self.stats.count(f"errors.{self.key}")
                    log.warning("%s: %s stopped delivering frames; reopening in %.1f s", self.key, self.source.name,
                                delay)
                    self.source.close()
                    if not self._wait(delay, failures):
                        break
                    delay = min(delay * self.policy.factor, self.policy.max_s)
                    continue
                now = time.monotonic()
                # latency runs from the capture: the source's own stamp when it is taken on this clock
                captured = float(frame.timestamp) if stamps_capture else now
                failures, delay = 0, self.policy.initial_s
                reason = self.validator.check(frame.image)
                if reason is not None:
                    self.stats.count(f"rejected.{self.key}")
                    if now - last_reject_log > 1.0:  # do not flood the log from a glitching camera
                        log.warning("rejected frame: %s", reason)
                        last_reject_log = now
                    continue
                self.frames += 1
                item = Captured(float(frame.timestamp), frame.image, captured)
                while not self.stop_event.is_set():
                    if self.queue.put(item, timeout=_POLL_S) or self.queue.closed:
                        break
        except BaseException as exc:  # keep the pipeline's consumer informed instead of dying silently
            self.error = exc
            log.exception("%s: capture thread failed", self.key)
        finally:
            try:
                self.source.close()
            finally:
                self.queue.close()


class FusionPipeline:
    """Fuse two live streams (or one side-by-side stream) with a model, as an iterator.

    ``model``: a FusionEngine, or a model path (``backend``, ``calibration`` and
    ``engine_options`` configure the engine; fused frames are uint8 unless ``out_dtype`` is given).
    ``ir``/``vis``: Sources or specs for ``open_source`` (camera index, /dev/videoN, GStreamer
    pipeline, URL, video file, image folder, ``synthetic``). Or ``sbs``: one stream holding both
    images, split by ``layout``. ``tolerance``: the most seconds two frames may be apart to be
    paired. ``policy``: "newest" / "block" / "auto" (newest for live sources, block for recordings).
    ``queue_size``: frames each queue holds (default 1 with "newest": the freshest frame only;
    2 with "block"). ``overlap``: on a GPU, upload and preprocess frame N+1 while frame N is
    inferred (default: for recordings, not for live sources, where it would hold frame N back
    until N+1 is queued: up to one engine run of latency, a whole one with ONNX Runtime, whose
    ``run`` blocks).
    ``sinks``: called in the consuming thread for every frame. ``max_frames`` ends the run.
    """

    def __init__(self, model: FusionEngine | str | Path, ir: Any = None, vis: Any = None, *, sbs: Any = None,
                 layout: str = "ir-left", calibration: Calibration | str | Path | None = None, backend: str = "auto",
                 tolerance: float = 0.02, queue_size: int | None = None, policy: str = "auto",
                 overlap: bool | None = None, sinks: Sequence[Sink] = (),
                 max_frames: int | None = None, reconnect: ReconnectPolicy | None = None, keep_inputs: bool = False,
                 log_every_s: float | None = 5.0, out_dtype: Any = np.uint8, **engine_options: Any) -> None:
        if sbs is None and (ir is None or vis is None):
            raise ValueError("give both ir and vis sources, or one side-by-side source (sbs)")
        if sbs is not None and (ir is not None or vis is not None):
            raise ValueError("give either ir and vis sources or a side-by-side source (sbs), not both")
        if policy not in ("auto", "newest", "block"):
            raise ValueError(f"policy must be auto, newest or block, got {policy!r}")
        self._own_engine = not isinstance(model, FusionEngine)
        if self._own_engine:
            model = FusionEngine(model, backend=backend, calibration=calibration, out_dtype=out_dtype,
                                 **engine_options)
        elif calibration is not None or engine_options or backend != "auto":
            raise ValueError("pass calibration, backend and engine options to the FusionEngine you give, "
                             "not to the pipeline")
        self.engine: FusionEngine = model
        if sbs is not None:
            self.sources = {"sbs": open_source(sbs)}
        else:
            self.sources = {"ir": open_source(ir), "vis": open_source(vis)}
        self.layout = layout
        split_side_by_side(np.zeros((2, 4), np.uint8), layout)  # validate the layout now
        if queue_size is not None and queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self.pairer = TimestampPairer(tolerance)
        self.queue_size = queue_size
        self.policy = policy
        self.overlap = overlap
        self._stale = 0  # frames skipped because a newer pair was ready (live)
        self.sinks = list(sinks)
        self.max_frames = max_frames
        self.reconnect = reconnect or ReconnectPolicy()
        self.keep_inputs = keep_inputs
        self.log_every_s = log_every_s
        self.stats_collector = StatsCollector()
        self._stop = threading.Event()
        self._started = False
        self._closed = False
        self._threads: list[threading.Thread] = []
        self._queues: dict[str, FrameQueue] = {}
        self._out: FrameQueue | None = None
        self._error: BaseException | None = None
        self._index = 0

    # ------------------------------------------------------------ lifecycle
    @property
    def live(self) -> bool:
        return any(s.live for s in self.sources.values())

    def _policy(self) -> str:
        if self.policy != "auto":
            return self.policy
        return "newest" if self.live else "block"

    @property
    def fps_hint(self) -> float | None:
        """The frame rate of the VIS (or side-by-side) source, once known."""
        src = self.sources.get("vis") or self.sources.get("sbs")
        return src.fps if src is not None else None

    def start(self) -> FusionPipeline:
        if self._started:
            return self
        if self._closed:
            raise RuntimeError("this pipeline was closed; make a new one")
        self._started = True
        policy = self._policy()
        self._newest = policy == "newest"
        size = self.queue_size or (1 if self._newest else 2)
        self._queues = {k: FrameQueue(size, policy) for k in self.sources}
        self._out = FrameQueue(size, policy)
        self.stats_collector = StatsCollector()
        for key, source in self.sources.items():
            t = _CaptureThread(key, source, self._queues[key], self.stats_collector, self._stop, self.reconnect)
            self._threads.append(t)
        worker = threading.Thread(target=self._work, name="fusion-worker", daemon=True)
        self._threads.append(worker)
        for t in self._threads:
            t.start()
        log.info("pipeline started: %s -> %s (%s queues)", ", ".join(f"{k}={s.name}" for k, s in self.sources.items()),
                 self.engine, policy)
        return self

    def stop(self) -> None:
        """Ask every thread to finish; iteration ends after the frames already fused."""
        self._stop.set()
        for q in self._queues.values():
            q.close()

    def close(self) -> None:
        """Stop, wait for the threads, close the sinks (finalising files). Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self.stop()
        if self._out is not None:
            self._out.close()
        for t in self._threads:
            t.join(timeout=5.0)
            if t.is_alive():
                log.warning("thread %s did not finish within 5 s", t.name)
        errors = []
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:
                errors.append(exc)
                log.error("closing %s failed: %s", type(sink).__name__, exc)
        if self._own_engine:
            self.engine.close()
        if errors:
            raise errors[0]

    def __enter__(self) -> FusionPipeline:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def stats(self) -> PipelineStats:
        self._update_counters()
        return self.stats_collector.snapshot()

    # ------------------------------------------------------------- consumer
    def __iter__(self) -> Iterator[FusedFrame]:
        self.start()
        last_log = time.monotonic()
        try:
            while True:
                try:
                    item = self._out.get(timeout=_POLL_S)
                except TimeoutError:
                    continue
                except Closed:
                    break
                ir_cap, vis_cap, image = item
                now = time.monotonic()
                latency = now - min(ir_cap.captured, vis_cap.captured)
                self.stats_collector.output(latency, now)
                self._update_counters()
                fused = FusedFrame(
                    index=self._index, timestamp=vis_cap.timestamp, image=image, ir_timestamp=ir_cap.timestamp,
                    vis_timestamp=vis_cap.timestamp, latency_s=latency, stats=self.stats_collector.snapshot(),
                    ir=ir_cap.image if self.keep_inputs else None, vis=vis_cap.image if self.keep_inputs else None,
                )
                self._index += 1
                keep_going = True
                for sink in self.sinks:
                    if sink.write(fused) is False:
                        keep_going = False
                yield fused
                if self.log_every_s and now - last_log >= self.log_every_s:
                    log.info("%s", fused.stats.summary())
                    last_log = now
                if not keep_going or (self.max_frames is not None and self._index >= self.max_frames):
                    break
        finally:
            self.close()
        if self._error is not None:
            raise RuntimeError(f"the fusion worker failed: {self._error}") from self._error

    def run(self) -> PipelineStats:
        """Run to the end (sinks do the work); returns the final counters."""
        for _ in self:
            pass
        return self.stats

    def _update_counters(self) -> None:
        c = self.stats_collector
        for key, q in self._queues.items():
            c.set(f"dropped.queue.{key}", q.dropped)
        if self._out is not None:
            c.set("dropped.queue.output", self._out.dropped)
        c.set("dropped.unpaired", self.pairer.dropped)
        c.set("dropped.stale", self._stale + self.pairer.superseded)

    # --------------------------------------------------------------- worker
    def _next_pair(self, wait: bool):
        """(ir, vis) Captured pair; None when nothing is ready (only if not ``wait``); Closed at the end.

        Live ("newest"): the newest pair ready now; older frames waiting are skipped and counted."""
        if "sbs" in self._queues:
            queue = self._queues["sbs"]
            waiting = queue.drain() if self._newest else []
            if waiting:
                self._stale += len(waiting) - 1
                cap = waiting[-1]
            else:
                while True:
                    try:
                        cap = queue.get(timeout=_POLL_S if wait else 0)
                        break
                    except TimeoutError:
                        if not wait:
                            return None
                        if self._stop.is_set():
                            raise Closed from None
            ir, vis = split_side_by_side(cap.image, self.layout)
            return Captured(cap.timestamp, ir, cap.captured), Captured(cap.timestamp, vis, cap.captured)
        queues = (self._queues["ir"], self._queues["vis"])
        while True:
            if self._newest:
                for stream, queue in enumerate(queues):
                    for item in queue.drain():
                        self.pairer.push(stream, item)
                pair = self.pairer.pop_latest()
            else:
                pair = self.pairer.pop()
            if pair is not None:
                return pair
            stream = self.pairer.needs()
            try:
                item = queues[stream].get(timeout=_POLL_S if wait else 0)
            except TimeoutError:
                if not wait:
                    return None
                if self._stop.is_set():
                    raise Closed from None
                continue
            self.pairer.push(stream, item)

    def _work(self) -> None:
        overlap = (not self._newest) if self.overlap is None else self.overlap
        stage = make_stage(self.engine, depth=2 if overlap else 1)
        inflight: deque = deque()
        try:
            while not self._stop.is_set():
                try:
                    pair = self._next_pair(wait=not inflight)
                except Closed:
                    break
                if pair is None:  # nothing new yet: finish what the GPU is working on
                    self._emit(stage, inflight.popleft())
                    continue
                ir_cap, vis_cap = pair
                try:
                    inflight.append(stage.submit(ir_cap.image, vis_cap.image, (ir_cap, vis_cap)))
                except ValueError as exc:  # a frame pair the engine cannot use
                    self.stats_collector.count("rejected.engine")
                    log.warning("rejected pair: %s", exc)
                    continue
                if len(inflight) >= stage.depth:
                    self._emit(stage, inflight.popleft())
            while inflight:
                self._emit(stage, inflight.popleft())
        except BaseException as exc:
            self._error = exc
            log.exception("fusion worker failed")
            self._stop.set()
        finally:
            for q in self._queues.values():
                q.close()
            self._out.close()

    def _emit(self, stage, ticket) -> None:
        image = stage.collect(ticket)
        ir_cap, vis_cap = ticket.meta
        while not self._out.put((ir_cap, vis_cap, image), timeout=_POLL_S):
            if self._out.closed or self._stop.is_set():
                return
