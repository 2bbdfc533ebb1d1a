"""The whole training step (forward, loss, backward, clipping, Adam) replayed as one CUDA graph.

A step of the small presets is several thousand small kernels; launched one by one from Python
the GPU mostly waits for the launches. Captured once, the step is one launch. What changes
between steps lives in device memory the graph reads: the batch (static input buffers), the
learning rate (the optimizer's lr tensor), the random numbers of drop-path (torch's CUDA
generator advances its offset at every replay). Gradients stay in the buffers the capture
allocated; the captured backward overwrites them, so they are never zeroed between replays.

A capture can fail (an operation that is not capturable) or, in principle, disagree with the
eager step; :func:`check_against_eager` compares one replay with an eager step from the same
state, and :func:`recover_from_failed_capture` puts the current stream and torch's CUDA
generator back as they were, since a failed capture can leave the generator in capture mode
(then every random op fails with "Offset increment outside graph capture").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

StepBody = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# Eager steps run on the capture stream before capturing, so that lazily created state (the
# optimizer's moments, cuDNN's algorithm choices, library workspaces) exists before capture.
WARMUP_STEPS = 3
# A replay agrees with the eager step when the loss is within this relative tolerance and the
# parameter update differs by at most this fraction of its norm (bf16 kernels and atomics are
# not bit-reproducible, so the two never match exactly).
LOSS_RTOL = 0.02
UPDATE_RTOL = 0.1


@dataclass
class StepGraph:
    """A captured step: copy a batch into the static inputs, replay, read the static stats."""

    graph: torch.cuda.CUDAGraph
    vis: torch.Tensor
    ir: torch.Tensor
    stats: torch.Tensor  # written by every replay: read it before the next one

    def __call__(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        self.vis.copy_(vis, non_blocking=True)
        self.ir.copy_(ir, non_blocking=True)
        self.graph.replay()
        return self.stats


def capture_step(body: StepBody, vis: torch.Tensor, ir: torch.Tensor, stream: torch.cuda.Stream,
                 clear_grads: Callable[[], None]) -> StepGraph:
    """Capture ``body(vis, ir)`` (one full optimizer step returning its stats) on ``stream``.

    Gradients are cleared to None first, so the captured backward allocates them in the graph's
    memory and later replays write them afresh. Capturing runs nothing: the model and optimizer
    are unchanged until the first replay.
    """
    static_vis, static_ir = vis.clone(), ir.clone()
    torch.cuda.synchronize(vis.device)
    clear_grads()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=stream):
        stats = body(static_vis, static_ir)
    return StepGraph(graph, static_vis, static_ir, stats)


def recover_from_failed_capture(device: torch.device, stream: torch.cuda.Stream, rng_state: torch.Tensor) -> None:
    """Make eager training possible again after a capture raised.

    ``torch.cuda.graph`` leaves its side stream current when ending the capture fails, and
    torch's CUDA generator in capture mode: restore ``stream`` and give the default generator a
    fresh state holding ``rng_state`` (the state it had before). Raises RuntimeError if the
    device is still unusable, so the run stops with a clear message instead of failing later.
    """
    torch.cuda.set_stream(stream)
    try:
        torch.cuda.synchronize(device)
        fresh = torch.Generator(device=device)
        fresh.set_state(rng_state)
        index = device.index if device.index is not None else torch.cuda.current_device()
        torch.cuda.default_generators[index].graphsafe_set_state(fresh)
        torch.rand(1, device=device).add_(1)  # a random op and a kernel: both must work now
        torch.cuda.synchronize(device)
    except Exception as exc:
        raise RuntimeError(f"the failed CUDA graph capture left the GPU unusable ({type(exc).__name__}: "
                           f"{str(exc)[:200]}); run again without --cuda-graph") from exc


@torch.no_grad()
def check_against_eager(graphed: StepGraph, eager: StepBody, vis: torch.Tensor, ir: torch.Tensor,
                        params: list[torch.Tensor], state: list[torch.Tensor]) -> tuple[torch.Tensor, str | None]:
    """Replay on (vis, ir), undo it, run the eager step from the same state and RNG; compare.

    ``params`` are the trained parameters, ``state`` every other tensor the step changes (the
    optimizer's moments and step counts). The model is left after the eager step, which counts
    as a training step. Returns (the eager step's stats, None) when they agree, else
    (stats, what differed).
    """
    device = vis.device
    everything = list(params) + list(state)
    before = [t.clone() for t in everything]
    rng = torch.cuda.get_rng_state(device)
    graph_stats = graphed(vis, ir).clone()
    graph_params = [p.clone() for p in params]
    for t, saved in zip(everything, before):
        t.copy_(saved)
    torch.cuda.set_rng_state(rng, device)
    with torch.enable_grad():
        eager_stats = eager(vis, ir)
    g_loss, e_loss = float(graph_stats[0]), float(eager_stats[0])
    if not abs(g_loss - e_loss) <= LOSS_RTOL * abs(e_loss) + 1e-4:
        return eager_stats, f"loss {g_loss:.5f} replayed vs {e_loss:.5f} eager"
    diff = torch.zeros((), device=device, dtype=torch.float64)
    norm = torch.zeros((), device=device, dtype=torch.float64)
    for p, p_graph, p_before in zip(params, graph_params, before):
        eager_update = (p - p_before).double()
        diff += (p_graph.double() - p_before.double() - eager_update).square().sum()
        norm += eager_update.square().sum()
    rel = float(diff.sqrt() / norm.sqrt().clamp(min=1e-30))
    if not rel <= UPDATE_RTOL:
        return eager_stats, f"parameter update differs by {rel:.3f} of its norm"
    return eager_stats, None
