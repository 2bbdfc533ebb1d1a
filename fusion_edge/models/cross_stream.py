"""Work that runs on side CUDA streams beside the encoder and decoder: the cross-modal blocks and the prior.

The three DFFM blocks that feed decoder stages 1-3 depend only on encoder features, and a two-scale
prior only on the input pair, so they can run while the main stream works on something else. On a GPU
a small model's kernels each fill a fraction of the device (a frame of the ``edge`` preset is some 440
kernels averaging a few microseconds), so several streams of them overlap instead of queueing.
Captured in a CUDA graph, each side stream becomes a parallel branch of the graph. The maths and its
order within each block are unchanged, so every schedule gives the same output.

Schedules (``FusionMamba.cross_schedule``):

- ``inline``: one stream, each block computed when the decoder asks for it (the reference's order);
- ``after-encoder`` (the default side schedule): once the whole encoder is done, the blocks of stages
  3, 2, 1 on one side stream, beside the decoder;
- ``early``: each block on its own side stream as soon as its encoder stage is done (block 1 then runs
  beside encoder stages 2-4).

Under both side schedules a two-scale prior runs on a stream of its own from the start. Measured on an
H200 with the same compiled blocks (benchmarks/results/cross_schedules_h200.md), ``early`` was 0.01-0.05
ms slower than ``after-encoder`` for both presets at 512x640: the encoder is the critical path, and
blocks beside it slow it down; the prior beside the network saved 0.045 ms of the default weights.

Memory: a side stream's work is queued behind everything queued on the main stream so far, and every
result is waited for by the main stream before the forward returns, so the caching allocator never
hands a block still read by one stream to another.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

SCHEDULES = ("inline", "after-encoder", "early")
SIDE_SCHEDULE = "after-encoder"  # what ``cross_on_side_stream = True`` selects
PRIOR_STREAM = 3  # the two-scale prior's side stream (the cross-modal blocks take streams 0-2)

_SIDE_STREAMS: dict[tuple[int, int, int], torch.cuda.Stream] = {}


def side_stream(device: torch.device, index: int = 0, priority: int = 0) -> torch.cuda.Stream:
    """Side stream ``index`` of a GPU at ``priority`` (lower is more urgent, as in CUDA), reused by every
    call (streams are cheap to keep, not to create). Captured into a CUDA graph, a kernel keeps the
    priority of the stream it was queued on."""
    gpu = device.index if device.index is not None else torch.cuda.current_device()
    key = (gpu, index, priority)
    if key not in _SIDE_STREAMS:
        _SIDE_STREAMS[key] = torch.cuda.Stream(device=gpu, priority=priority)
    return _SIDE_STREAMS[key]


def check_schedule(schedule: str) -> str:
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown cross-block schedule {schedule!r}; choose one of: {', '.join(SCHEDULES)}")
    return schedule


class SideWork:
    """Results computed on side streams; the main stream waits for one only when it takes it."""

    def __init__(self, device: torch.device, priority: int = 0) -> None:
        self.device = device
        self.priority = priority
        self.main = torch.cuda.current_stream(device)
        self._results: dict[object, tuple[torch.Tensor, torch.cuda.Event]] = {}

    def launch(self, key: object, stream: int, fn: Callable[..., torch.Tensor], *args: torch.Tensor) -> None:
        """Queue ``fn(*args)`` on side stream ``stream`` behind everything queued on the main stream."""
        side = side_stream(self.device, stream, self.priority)
        side.wait_stream(self.main)
        with torch.cuda.stream(side):
            out = fn(*args)
            done = torch.cuda.Event()
            done.record(side)
        self._results[key] = (out, done)

    def take(self, key: object) -> torch.Tensor:
        out, done = self._results.pop(key)
        self.main.wait_event(done)
        return out

    def __contains__(self, key: object) -> bool:
        return key in self._results
