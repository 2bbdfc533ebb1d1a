"""Which form should scan a compiled ES2D layer: the fused op, or the plain scan on gathered routes.

    python benchmarks/es2d_forms.py [--presets paper,edge] [--sizes 512x640 ...] [--batches 1,2] [--stages 1,2,3,4]
        [--profile] [--out FILE.md]

For every stage of each preset it compiles one layer as the model has it (SiLU producing the float16
channels-last map, the ES2D core, the LayerNorm over channels after it) twice: (a) ``fused``, the fused op
reading and writing the map (given the library GEMM's projections and deltas where the model gives them),
(b) ``routes``, ``es2d.es2d_scan_routes``: our gather kernel into route-major rows, float16 products for
the projections and deltas, our plain selective scan on those rows, and our merge kernel back into the
channels-last map. Each compiled layer is captured in a CUDA graph and its replays timed. The
last column is what ``fusion_edge.ops.es2d.scans_routes`` picks, so the table checks that rule shape by
shape, free of the noise whole compiled models carry from one compilation to the next. Batch 2 is the
shared encoder's (both modalities stacked), batch 1 the decoder's. ``--profile`` lists each form's
kernels after its row (torch.profiler over the replays): where a layer's time goes.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kernels as kbench  # noqa: E402  (benchmarks/kernels.py: timing helpers, shapes, layer parameters)
from fusion_edge.bench.config import format_size, parse_size  # noqa: E402
from fusion_edge.bench.profile import profile_calls  # noqa: E402
from fusion_edge.models.presets import PRESETS  # noqa: E402
from fusion_edge.ops import es2d  # noqa: E402

FORMS = ("fused", "routes")


def compiled_layer(form: str, params: tuple, norm: tuple):
    """One ES2D layer (SiLU, ES2D core, LayerNorm over channels) compiled with the routes scanned by ``form``."""
    es2d.set_scan_form(form)
    torch._dynamo.reset()

    def layer(a: torch.Tensor) -> torch.Tensor:
        x = F.silu(a)
        y = es2d.es2d_scan(x, *params)
        return F.layer_norm(y.permute(0, 2, 3, 1).to(x.dtype), norm[0].shape, *norm)

    return torch.compile(layer, fullgraph=True, dynamic=False)


def rule_picks(x: torch.Tensor) -> str:
    """The form ``es2d.scans_routes`` picks for a compiled layer over the map x."""
    es2d.set_scan_form("auto")
    return "routes" if es2d.scans_routes(x, compiling=True) else "fused"


def kernel_lines(form: str, replay, calls: int = 20) -> list[str]:
    """The kernels of one replay of a form, costliest first, as table rows under the layer's."""
    profile = profile_calls(replay, calls, on_gpu=True)
    return [f"| | {form} | {op.calls_per_call:.0f}x `{op.name[:90]}` | {1e3 * op.ms_per_call:.1f} us |"
            for op in profile.top]


def row(preset: str, size: tuple[int, int], stage: int, d: int, h: int, w: int, batch: int,
        gen: torch.Generator, profile: bool = False) -> list[str]:
    a = torch.randn(batch, d, h, w, generator=gen, device="cuda").half().contiguous(memory_format=torch.channels_last)
    params = kbench.es2d_params(d, gen)
    norm = (1 + 0.1 * torch.randn(d, generator=gen, device="cuda").half(),
            0.1 * torch.randn(d, generator=gen, device="cuda").half())
    replays, outs = {}, {}
    for form in FORMS:
        replays[form], outs[form] = kbench.capture(functools.partial(compiled_layer(form, params, norm), a))
    times = {form: kbench.bench(replays[form]) for form in FORMS}
    diff = kbench.rel_diff(outs["routes"], outs["fused"])
    faster = min(times, key=times.get)
    kernels = [line for form in FORMS for line in kernel_lines(form, replays[form])] if profile else []
    return [(f"| {preset} | {format_size(size)} | {stage + 1} | {batch} | {d} | {es2d.route_length(h, w)} | "
            f"{times['fused']:.4f} | {times['routes']:.4f} | {times['fused'] / times['routes']:.2f}x | {faster} | "
            f"{rule_picks(a)} | {diff:.1e} |"), *kernels]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", default="paper,edge", help="comma-separated presets (default paper,edge)")
    parser.add_argument("--sizes", nargs="+", type=parse_size, default=[(512, 640)])
    parser.add_argument("--batches", default="1,2", help="comma-separated batch sizes (default 1,2)")
    parser.add_argument("--stages", default="1,2,3,4", help="comma-separated stages (default all four)")
    parser.add_argument("--profile", action="store_true", help="list each form's kernels under its row")
    parser.add_argument("--out", help="also write the table to this markdown file")
    args = parser.parse_args(argv)
    presets = [p for p in args.presets.split(",") if p]
    unknown = [p for p in presets if p not in PRESETS]
    if unknown:
        parser.error(f"unknown presets {unknown}; choose from {', '.join(PRESETS)}")
    if not torch.cuda.is_available():
        parser.error("needs a CUDA GPU")
    batches = [int(b) for b in args.batches.split(",") if b]
    stages = [int(s) - 1 for s in args.stages.split(",") if s]
    gen = torch.Generator(device="cuda").manual_seed(0)
    lines = [f"# ES2D layers: fused op or plain scan on gathered routes ({torch.cuda.get_device_name()}, "
             f"torch {torch.__version__})", "",
             "float16, one compiled layer (SiLU, ES2D, LayerNorm) replayed as a CUDA graph; ms per layer (medians).",
             "", "| preset | HxW | stage | batch | D | L' | fused | routes | routes speed-up | faster | rule picks "
             "| max rel diff |", "|---" * 12 + "|"]
    print("\n".join(lines), flush=True)
    with torch.no_grad():
        for preset in presets:
            dims = PRESETS[preset]["dims"]
            for size in args.sizes:
                for stage in stages:
                    h, w = size[0] // 4 // 2**stage, size[1] // 4 // 2**stage
                    for batch in batches:
                        rows = row(preset, size, stage, 2 * dims[stage], h, w, batch, gen, args.profile)
                        lines += rows
                        print("\n".join(rows), flush=True)
    es2d.set_scan_form("auto")
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
