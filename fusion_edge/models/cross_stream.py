"""The cross-modal fusion blocks on a second CUDA stream, beside the decoder.

The three DFFM blocks that feed decoder stages 1-3 depend only on encoder features, so they can run
while the decoder works on the deeper stages. On a GPU a small model's kernels each fill a fraction of
the device (a frame of the ``edge`` preset is some 440 kernels averaging a few microseconds), so two
streams of them overlap instead of queueing. Captured in a CUDA graph, the side stream becomes a
parallel branch of the graph. The maths and its order within each block are unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

_SIDE_STREAMS: dict[int, torch.cuda.Stream] = {}


def side_stream(device: torch.device) -> torch.cuda.Stream:
    """One side stream per GPU, reused by every call (streams are cheap to keep, not to create)."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _SIDE_STREAMS:
        _SIDE_STREAMS[index] = torch.cuda.Stream(device=index)
    return _SIDE_STREAMS[index]


def cross_in_order(blocks: nn.ModuleList, s1: Sequence[torch.Tensor],
                   s2: Sequence[torch.Tensor]) -> Callable[[int], torch.Tensor]:
    """Stage -> fused features, each computed when the decoder asks for it (the reference's order)."""
    return lambda stage: blocks[stage](s1[stage], s2[stage])


def cross_on_side_stream(blocks: nn.ModuleList, s1: Sequence[torch.Tensor], s2: Sequence[torch.Tensor],
                         stages: Sequence[int]) -> Callable[[int], torch.Tensor]:
    """Queue ``blocks[stage](s1[stage], s2[stage])`` for each stage on the side stream now, in the given
    order; the returned function makes the current stream wait for a stage's result before handing it
    over. Memory: every side-stream allocation is made before the current stream consumes any result,
    and the next call's side work starts behind everything queued on the current stream so far, so the
    caching allocator never hands a block still being read to the other stream."""
    main = torch.cuda.current_stream(s1[0].device)
    side = side_stream(s1[0].device)
    side.wait_stream(main)  # the encoder's features are ready
    results = {}
    with torch.cuda.stream(side):
        for stage in stages:
            out = blocks[stage](s1[stage], s2[stage])
            done = torch.cuda.Event()
            done.record(side)
            results[stage] = (out, done)

    def crossed(stage: int) -> torch.Tensor:
        out, done = results.pop(stage)
        main.wait_event(done)
        return out

    return crossed
