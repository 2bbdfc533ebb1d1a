"""``fusion-edge bench``: latency, throughput, memory, FLOPs and bytes of the model per backend.

Backends that cannot run on the machine are listed with the reason, never dropped. Outputs: a
markdown table, ``bench.json`` and ``bench.png`` (see docs/bench.md for every column).
"""

from __future__ import annotations

from fusion_edge.bench.config import BACKENDS, PRESET_NAMES, STANDARD_SIZES, BenchConfig, parse_size

__all__ = ["BACKENDS", "PRESET_NAMES", "STANDARD_SIZES", "BenchConfig", "parse_size", "run_bench"]


def run_bench(config: BenchConfig, progress=print):
    """Run the benchmark (imports torch); see :func:`fusion_edge.bench.runner.run_bench`."""
    from fusion_edge.bench.runner import run_bench as _run

    return _run(config, progress)
