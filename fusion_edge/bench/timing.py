"""Latency measurement: warm-up, then one timed call per iteration, summarised as percentiles.

On a GPU each call is bracketed by CUDA events on the current stream (backends that run on a
stream of their own, such as ONNX Runtime, synchronise the device and use the host clock
instead); on the CPU the host clock (``time.perf_counter``) times each call.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass


class TimeCapExceeded(RuntimeError):
    """The configuration would run longer than the per-configuration time cap."""


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default), q in [0, 100]."""
    if not values:
        raise ValueError("percentile of an empty sequence")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass
class LatencyStats:
    p50: float
    p90: float
    p99: float
    mean: float
    min: float
    max: float
    samples: int

    @classmethod
    def from_samples(cls, ms: Sequence[float]) -> LatencyStats:
        return cls(
            p50=percentile(ms, 50), p90=percentile(ms, 90), p99=percentile(ms, 99),
            mean=sum(ms) / len(ms), min=min(ms), max=max(ms), samples=len(ms),
        )

    def throughput(self, batch: int) -> float:
        """Frames per second over the whole timed run: batch * iterations / total time."""
        return batch * 1000.0 / self.mean


class HostTimer:
    """Times a call with the host clock; ``sync`` (e.g. torch.cuda.synchronize) brackets it."""

    name = "perf_counter"

    def __init__(self, sync: Callable[[], None] | None = None) -> None:
        self.sync = sync or (lambda: None)
        if sync is not None:
            self.name = "perf_counter+synchronize"

    def time_calls(self, fn: Callable[[], object], count: int) -> list[float]:
        out = []
        for _ in range(count):
            self.sync()
            start = time.perf_counter()
            fn()
            self.sync()
            out.append((time.perf_counter() - start) * 1000.0)
        return out


class CudaEventTimer:
    """Times calls with CUDA events recorded on the current stream; one synchronize at the end."""

    name = "cuda-events"

    def time_calls(self, fn: Callable[[], object], count: int) -> list[float]:
        import torch

        torch.cuda.synchronize()
        pairs = []
        for _ in range(count):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            pairs.append((start, end))
        torch.cuda.synchronize()
        return [s.elapsed_time(e) for s, e in pairs]


def measure(
    fn: Callable[[], object],
    timer: HostTimer | CudaEventTimer,
    warmup: int,
    iters: int,
    max_seconds: float,
    after_first_call: Callable[[], None] | None = None,
    min_iters: int | None = None,
    warmup_seconds: float = 0.0,
) -> tuple[LatencyStats, float]:
    """Warm up, then time ``iters`` calls; returns the statistics and the first call's seconds.

    The first call (lazy initialisation, compilation, autotuning) and a second, probing call
    count as warm-up. Before the rest runs, the probe's time multiplied by the calls still to
    come is checked against ``max_seconds``: over it, with ``min_iters`` the extra warm-up is
    dropped and fewer calls are timed (at least ``min_iters``), else (or if even those would not
    fit) TimeCapExceeded instead of an over-long run. ``warmup_seconds``: after the counted
    warm-up, keep calling (each call completed) until this much time has gone into warming up,
    so a GPU that idled while the model compiled is back at its clocks when timing starts; a
    handful of millisecond-long calls is not enough for that.
    """
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    if after_first_call is not None:  # e.g. reset peak-memory statistics once compilation is over
        after_first_call()
    probe = HostTimer(_sync_of(timer)).time_calls(fn, 1)[0] / 1000.0
    extra_warmup = max(warmup - 2, 0)
    if probe * (extra_warmup + iters) > max_seconds:
        fitting = int(max_seconds / probe) if probe > 0 else iters
        if min_iters is None or fitting < min_iters:
            remaining = extra_warmup + iters if min_iters is None else min_iters
            raise TimeCapExceeded(
                f"one call took {probe:.2f} s; {remaining} more would take about {probe * remaining:.0f} s "
                f"> --max-seconds {max_seconds:g}"
            )
        extra_warmup, iters, warmup_seconds = 0, min(iters, fitting), 0.0
    warm_start = time.perf_counter()
    for _ in range(extra_warmup):
        fn()
    _keep_warm(fn, _sync_of(timer), warmup_seconds - (time.perf_counter() - warm_start) - probe)
    return LatencyStats.from_samples(timer.time_calls(fn, iters)), first


def _keep_warm(fn: Callable[[], object], sync: Callable[[], None] | None, seconds: float) -> None:
    """Call ``fn`` (waiting for each call) until ``seconds`` have passed."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        fn()
        if sync is not None:
            sync()


def _sync_of(timer: HostTimer | CudaEventTimer) -> Callable[[], None] | None:
    """What makes a host-clock reading complete for this timer's backend."""
    if isinstance(timer, CudaEventTimer):
        import torch

        return torch.cuda.synchronize
    return timer.sync
