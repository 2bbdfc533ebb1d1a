"""Where one configuration's time goes: ``fusion-edge bench --profile N``.

After a configuration is timed, N more calls run under ``torch.profiler``. On a GPU the device
kernels (and copies/memsets) are summed by name, compiler-generated kernels by family (Triton
kernels that differ only by their numeric suffix): how many launches a frame costs, how long the
GPU is busy against the measured p50, and the kernels that take the most time. A small model
whose busy time is far below its latency is bound by launches or the host, not by the GPU; many
short kernels point at fusion. On the CPU the operators are summed by their own (self) time.
Only the PyTorch backends can be profiled this way (ONNX Runtime and TensorRT have their own
profilers).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

TOP = 12  # kernels / operators listed per profile
_SUFFIX = re.compile(r"_\d+$")


def kernel_family(name: str) -> str:
    """Inductor names its Triton kernels by the ops they fuse plus a counter (``triton_poi_fused_add_3``,
    ``_4``, ...): one family (``triton_poi_fused_add_N``), so that a model's many copies of one fusion
    show up as what they cost together. Other kernel names are kept."""
    return _SUFFIX.sub("_N", name) if name.startswith("triton_") else name


@dataclass
class OpShare:
    name: str
    calls_per_call: float
    ms_per_call: float
    share: float  # of the busy time


@dataclass
class Profile:
    device: str  # "cuda" (device kernels) or "cpu" (operators' self time)
    calls: int
    wall_ms_per_call: float
    busy_ms_per_call: float  # GPU: kernel time summed; CPU: operators' self time summed
    launches_per_call: float  # GPU kernels (and copies) per call; CPU: operator calls
    top: list[OpShare] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self, p50_ms: float | None) -> str:
        what = "GPU kernels" if self.device == "cuda" else "operator calls"
        busy = "GPU busy" if self.device == "cuda" else "operators' own time"
        against = f" of a {p50_ms:.3g} ms p50" if p50_ms else ""
        if p50_ms and self.device == "cuda" and self.busy_ms_per_call > p50_ms:
            against += " (more than the p50: kernels on several streams overlap)"
        head = self.top[0] if self.top else None
        top = f"; top: {head.name[:60]} {100 * head.share:.0f}%" if head else ""
        return (f"profile: {self.launches_per_call:.0f} {what} per call, {busy} {self.busy_ms_per_call:.3g} ms"
                f"{against}{top} (bench.md, Profiles)")


def profile_calls(run: Callable[[], object], calls: int, on_gpu: bool) -> Profile:
    """Run ``run`` ``calls`` times under torch.profiler and sum its GPU kernels or CPU operators."""
    import torch
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    if calls < 1:
        raise ValueError(f"calls must be at least 1, got {calls}")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
    if on_gpu:
        torch.cuda.synchronize()
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        for _ in range(calls):
            run()
        if on_gpu:
            torch.cuda.synchronize()
        wall_ms = (time.perf_counter() - start) * 1e3 / calls
    totals: dict[str, list[float]] = {}  # name -> [count, microseconds]
    if on_gpu:
        for event in prof.events():
            if event.device_type == DeviceType.CUDA:
                entry = totals.setdefault(kernel_family(event.name), [0, 0.0])
                entry[0] += 1
                entry[1] += event.time_range.elapsed_us()
    else:
        for avg in prof.key_averages():
            if avg.self_cpu_time_total > 0 and not avg.key.startswith("ProfilerStep"):
                totals[avg.key] = [avg.count, avg.self_cpu_time_total]
    busy_us = sum(us for _, us in totals.values())
    ranked = sorted(totals.items(), key=lambda item: -item[1][1])[:TOP]
    top = [OpShare(name, count / calls, us / 1e3 / calls, us / busy_us if busy_us else 0.0)
           for name, (count, us) in ranked]
    return Profile("cuda" if on_gpu else "cpu", calls, wall_ms, busy_us / 1e3 / calls,
                   sum(count for count, _ in totals.values()) / calls, top)


def profile_section(rows) -> list[str]:
    """Markdown: one table per profiled row (rows carry ``profile`` as a dict)."""
    lines: list[str] = []
    for row in rows:
        if not row.profile:
            continue
        p = Profile(**{**row.profile, "top": [OpShare(**t) for t in row.profile["top"]]})
        unit = "kernel" if p.device == "cuda" else "operator (self time)"
        lines += ["", f"### {row.backend} {row.size} {row.precision}", "",
                  f"{p.calls} profiled calls: {p.wall_ms_per_call:.3g} ms per call (profiler on), "
                  f"{p.launches_per_call:.0f} {'GPU kernels' if p.device == 'cuda' else 'operator calls'} per call, "
                  f"busy {p.busy_ms_per_call:.3g} ms per call.", "",
                  f"| {unit} | launches per call | ms per call | share of busy time |", "|---|---|---|---|"]
        lines += [f"| {op.name[:90].replace('|', '/')} | {op.calls_per_call:g} | {op.ms_per_call:.4f} | "
                  f"{100 * op.share:.1f}% |" for op in p.top]
    return (["", "## Profiles"] + lines) if lines else []
