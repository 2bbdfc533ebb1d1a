"""Does another process touching the GPU change how fast this process's compiled graph runs?

    python benchmarks/gpu_context.py [--preset paper] [--size 512x640] [--short]

Builds the graph `fusion-edge bench` times for ``--backend torch-cuda-compile-graph`` (float16 model copy,
compiled block by block, replayed as one CUDA graph) and times 200 replays queued back to back (CUDA events,
median) after each of these events, in this order:

  A  nothing (twice)
  U  cudaGraphUpload of the instantiated graph
  G  this process ran 3000 float16 4096 x 4096 products
  H  another process started, ran one tiny kernel and exited
  C  another process ran the same 3000 products
  Z  20 s later

``--short``: A and H only. Why it exists: on the H200 machines we measure on, a process's graph ran 5% slower
until another process had run a kernel on the GPU after the capture, which is what separated `fusion-edge bench`
(one process) from `benchmarks/compile_variants.py` (worker processes side by side); see
benchmarks/results/gpu_context_h200.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch

from fusion_edge.bench import backends_compile
from fusion_edge.bench.backend_base import BenchContext
from fusion_edge.bench.config import parse_size
from fusion_edge.bench.runner import use_cudnn_benchmark
from fusion_edge.bench.sources import ModelSource
from fusion_edge.bench.timing import CudaEventTimer
from fusion_edge.ops import use_impl

TINY = "import torch; torch.ones(1, device='cuda'); torch.cuda.synchronize()"
HEAVY = ("import torch; x = torch.randn(4096, 4096, device='cuda', dtype=torch.half); "
         "[x @ x for _ in range(3000)]; torch.cuda.synchronize()")


def queued_p50(run) -> float:
    for _ in range(50):
        run()
    torch.cuda.synchronize()
    return statistics.median(CudaEventTimer().time_calls(run, 200))


def upload(graph: torch.cuda.CUDAGraph) -> None:
    import cupy

    cupy.cuda.runtime.graphUpload(graph.raw_cuda_graph_exec(), torch.cuda.current_stream().cuda_stream)
    torch.cuda.synchronize()


def heavy_here() -> None:
    x = torch.randn(4096, 4096, device="cuda", dtype=torch.half)
    for _ in range(3000):
        x @ x
    torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--size", type=parse_size, default=(512, 640))
    parser.add_argument("--short", action="store_true", help="time before and after another process's kernel only")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("gpu_context.py needs a CUDA GPU")
    use_cudnn_benchmark(True)
    ctx = BenchContext(source=ModelSource(args.preset, None), device="cuda", batch=1, fp16=True, torch_fp16="half")
    with use_impl("cuda"):
        prepared = backends_compile.prepare_cuda_compile_graph(ctx, *args.size)
        graph = next(c.cell_contents for c in prepared.run.__closure__
                     if isinstance(c.cell_contents, torch.cuda.CUDAGraph))
        steps = [("A nothing", lambda: None), ("A again", lambda: None)]
        if not args.short:
            steps += [("U cudaGraphUpload", lambda: upload(graph)), ("G this process ran products", heavy_here)]
        steps += [("H another process ran one tiny kernel", lambda: subprocess.run([sys.executable, "-c", TINY],
                                                                                  check=True)),
                  ("H again", lambda: None)]
        if not args.short:
            steps += [("C another process ran products", lambda: subprocess.run([sys.executable, "-c", HEAVY],
                                                                               check=True)),
                      ("Z 20 s later", lambda: time.sleep(20))]
        rows = []
        for label, event in steps:
            event()
            rows.append({"after": label, "p50_ms": round(queued_p50(prepared.run), 4), "at": time.strftime("%H:%M:%S")})
            print(f"{label:45s} {rows[-1]['p50_ms']:.4f} ms", flush=True)
    print(json.dumps({"device": torch.cuda.get_device_name(), "preset": args.preset, "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
