"""Live pipeline counters: throughput, capture-to-output latency, and what was lost why.

Windows are fixed-size (the last few seconds / samples), so a run of any length uses
constant memory and the figures describe now, not the average since start.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass(frozen=True)
class PipelineStats:
    """A snapshot. ``dropped`` counts frames skipped to stay current (full queues, frames
    without a partner in time); ``rejected`` frames that were unusable (empty, undecodable,
    wrong size or dtype); ``reconnects`` sources reopened after they failed."""

    frames: int = 0
    fps: float = 0.0
    latency_p50_ms: float = 0.0
    latency_p99_ms: float = 0.0
    dropped: int = 0
    rejected: int = 0
    reconnects: int = 0
    source_errors: int = 0
    elapsed_s: float = 0.0
    details: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        return (f"{self.frames} frames, {self.fps:.1f} fps, latency p50 {self.latency_p50_ms:.1f} ms "
                f"p99 {self.latency_p99_ms:.1f} ms, dropped {self.dropped}, rejected {self.rejected}, "
                f"reconnects {self.reconnects}")


def percentiles(values: np.ndarray, qs: tuple[float, ...]) -> np.ndarray:
    """``np.percentile(values, qs)`` (linear interpolation, the same result) from one partial
    sort: np.percentile's general machinery costs more than the pipeline's own frame work, and a
    snapshot is taken for every fused frame."""
    n = values.size
    pos = [q / 100.0 * (n - 1) for q in qs]
    lo = [int(p) for p in pos]
    hi = [min(i + 1, n - 1) for i in lo]
    part = np.partition(values, sorted(set(lo + hi)))
    a, b = part[lo], part[hi]
    t = np.array(pos) - lo
    diff = b - a
    # numpy's _lerp: from the nearer end, so the result is exact at t = 0 and t = 1
    return np.where(t >= 0.5, b - diff * (1 - t), a + diff * t)


class StatsCollector:
    """Thread-safe counters behind ``PipelineStats``."""

    def __init__(self, latency_window: int = 1000, fps_window_s: float = 2.0) -> None:
        self._lock = threading.Lock()
        self._latencies: deque[float] = deque(maxlen=latency_window)
        self._out_times: deque[float] = deque(maxlen=4096)
        self._fps_window = fps_window_s
        self._counts: dict[str, int] = {}
        self.frames = 0
        self.started = time.monotonic()

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + n

    def set(self, key: str, value: int) -> None:
        with self._lock:
            self._counts[key] = value

    def output(self, latency_s: float, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self.frames += 1
            self._latencies.append(latency_s)
            self._out_times.append(now)
            while now - self._out_times[0] > self._fps_window:
                self._out_times.popleft()

    def snapshot(self) -> PipelineStats:
        now = time.monotonic()
        with self._lock:
            lat = np.fromiter(self._latencies, dtype=np.float64, count=len(self._latencies))
            times = (self._out_times[0], self._out_times[-1], len(self._out_times)) if self._out_times else None
            counts = dict(self._counts)
            frames = self.frames
        fps = 0.0
        if times is not None and times[2] >= 2 and times[1] > times[0]:
            fps = (times[2] - 1) / (times[1] - times[0])
        p50, p99 = (percentiles(lat, (50.0, 99.0)) * 1e3).tolist() if lat.size else (0.0, 0.0)

        def total(prefix: str) -> int:
            return sum(v for k, v in counts.items() if k.startswith(prefix))

        return PipelineStats(
            frames=frames, fps=fps, latency_p50_ms=p50, latency_p99_ms=p99, dropped=total("dropped"),
            rejected=total("rejected"), reconnects=total("reconnects"), source_errors=total("errors"),
            elapsed_s=now - self.started, details=counts,
        )
