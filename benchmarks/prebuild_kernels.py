"""Compile kernel entry points into CuPy's disk cache in parallel (one process each), before tests or timings.

    python benchmarks/prebuild_kernels.py [--jobs N] [--families selective_scan,es2d,ldc] [--match TEXT]

Each entry point is compiled at its first launch anyway; doing it up front, on every core,
keeps the compile time out of later steps (and out of their timeouts).
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context


def build(job: tuple[str, str]) -> tuple[str, float, str]:
    family, name = job
    t0 = time.perf_counter()
    try:
        from fusion_edge.kernels.loader import get_kernel

        _ = get_kernel(family, name).attributes  # compiles and loads the module
        return name, time.perf_counter() - t0, ""
    except Exception as exc:  # report and go on: the step that needs it will fail with the details
        return name, time.perf_counter() - t0, f"{type(exc).__name__}: {exc}"[:400]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 4)
    parser.add_argument("--families", default="selective_scan,es2d,ldc")
    parser.add_argument("--match", default="", help="only entry points whose name contains this")
    args = parser.parse_args()
    from fusion_edge.kernels import kernel_names

    jobs = [(f, n) for f in args.families.split(",") for n in kernel_names(f) if args.match in n]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=get_context("spawn")) as pool:
        results = list(pool.map(build, jobs))
    failed = [r for r in results if r[2]]
    slowest = max(results, key=lambda r: r[1]) if results else ("-", 0.0, "")
    print(f"{len(results) - len(failed)}/{len(results)} entry points built in {time.perf_counter() - t0:.1f} s "
          f"(slowest {slowest[0]} {slowest[1]:.1f} s)")
    for name, _, err in failed:
        print(f"FAILED {name}: {err}")


if __name__ == "__main__":
    main()
