"""What every backend gives the benchmark: a prepared call on static inputs, and how to time it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fusion_edge.bench.timing import CudaEventTimer, HostTimer


class BackendUnavailable(Exception):
    """The backend cannot run here (missing package, no GPU, unsupported source); the message says why."""


@dataclass
class Prepared:
    """One backend ready to run one input shape."""

    run: Callable[[], object]
    timer: HostTimer | CudaEventTimer
    # Returns (megabytes, how it was measured) after the timed run, or (None, why not).
    peak_memory: Callable[[], tuple[float | None, str]] = lambda: (None, "n/a")
    close: Callable[[], None] = lambda: None
    after_first_call: Callable[[], None] | None = None  # runs once the first (initialising) call is done
    notes: list[str] = field(default_factory=list)
    compile_s: float | None = None  # torch.compile's compilation (and first compiled call), apart from latency


@dataclass
class BenchContext:
    """Shared state of one run that backends draw on."""

    source: object  # fusion_edge.bench.sources.ModelSource
    device: str  # torch device for torch backends: "cpu" or "cuda[:N]"
    batch: int
    fp16: bool
    threads: int | None = None
    torch_fp16: str = "autocast"  # "autocast" or "half" (see fusion_edge.bench.config.TORCH_FP16_MODES)
    compile_mode: str = "default"
    compile_scope: str = "blocks"
    compile_backend: str = "inductor"
    compile_freeze: bool = True
    compile_combo: bool = True
    compile_autotune_pointwise: bool = False  # inductor times elementwise kernel configurations (GPU)
    compile_autotune_reductions: bool = False  # inductor times reduction kernel configurations (GPU)
    cross_stream: bool = True  # torch backends on a GPU: the cross-modal blocks on a second stream
    compile_timeout: float = 600.0
    deadline: float | None = None  # time.monotonic() after which nothing new starts
    # What backends build once and share (a float16 model copy, a compiled model); see backends_compile.
    cache: dict = field(default_factory=dict)

    @property
    def on_gpu(self) -> bool:
        return self.device.startswith("cuda")

    def seconds_left(self) -> float | None:
        """Seconds until the run's deadline (None: no budget)."""
        return None if self.deadline is None else self.deadline - time.monotonic()


def no_memory_on_cpu() -> tuple[float | None, str]:
    return None, "n/a (CPU)"
