"""Time the selective-scan launch plans side by side on the model's shapes (one GPU run, many variants).

    python benchmarks/scan_variants.py --out DIR [--sections scan,es2d] [--budget SECONDS] [--lanes 8,16]
        [--batches 1,8]

For every stage shape of the `paper` and `edge` presets (256x256 and 512x640, batch 1 and 8 unless given,
float16, N=16, 4 groups) it times: the split core with its own chunking ("split", the kernel
before the lane-major core), the plan that kernels/launch_params.py picks ("plan"), and forced
plans (lanes a channel x number of chunks). Each variant is checked against the split core's
output first. ES2D: the fused op under the same plans, and its projection + delta kernels alone.
Writes variants.md (tables) and variants.json (every timing, to fit the cost model) to DIR.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fusion_edge.kernels import launch, launch_params  # noqa: E402

import kernels as kbench  # noqa: E402  (benchmarks/kernels.py: timing helpers and shapes)
from fusion_edge import kernels  # noqa: E402

CHUNK_CANDIDATES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128)


@contextlib.contextmanager
def override(plan):
    saved = launch_params.SCAN_OVERRIDE
    launch_params.SCAN_OVERRIDE = plan
    try:
        yield
    finally:
        launch_params.SCAN_OVERRIDE = saved


@contextlib.contextmanager
def only_projection():
    """Launch the ES2D projection and delta kernels but not the scan (to time them alone)."""
    run = launch.run

    def filtered(family, name, *args, **kwargs):
        if "scan" in name or "states" in name:
            return None
        return run(family, name, *args, **kwargs)

    launch.run = filtered
    try:
        yield
    finally:
        launch.run = run


QUICK = False  # --quick: per layout only the chunk count the cost model prefers
PLANS_ONLY = False  # --plans-only: the split core and the chosen plan, no forced plans
LANES: tuple[int, ...] | None = None  # --lanes: force only these layouts (None: every allowed one)
BATCHES: tuple[int, ...] = kbench.BATCHES  # --batches


def candidates(channels: int, length: int, per_group: int, sms: int, routes: bool = False) -> list[tuple[int, int]]:
    """Forced plans worth timing: every allowed layout (the time-parallel core's for plain scans too), chunk
    counts from 1 to ~16 warps a scheduler."""
    out: list[tuple[int, int]] = []
    if PLANS_ONLY:
        return out
    layouts = (*launch_params.scan_lanes_allowed(channels, per_group, 16, routes), launch_params.SCAN_TIME_LANES)
    for lanes in layouts:
        if LANES is not None and lanes not in LANES:
            continue
        if QUICK and lanes != launch_params.SCAN_TIME_LANES:  # no cost model for it yet: every count
            with override(None):
                out.append((lanes, launch_params._best_plan(channels, length, (lanes,), sms).n_chunks))
            continue
        tile = launch_params.SCAN_LANES_TILE[lanes]
        warps = math.ceil(channels * lanes / 32)
        for chunks in CHUNK_CANDIDATES:
            if chunks > 1 and (length < 2 * tile * chunks or warps * chunks > 16 * 4 * sms):
                continue
            out.append((lanes, chunks))
    return out


def scan_call(args: tuple, sms: int, stream: int, ws: list) -> None:
    """One scan with a workspace that grows to what the current plan needs."""
    batch, dim, length = args[0].shape
    groups, n_states = args[3].shape[1], args[3].shape[2]
    need = kernels.selective_scan_workspace_bytes(batch, dim, length, n_states, sms, groups=groups)
    if not ws or ws[0].numel() < need:
        ws[:] = [torch.empty(max(need, 1), device="cuda", dtype=torch.uint8)]
    kernels.launch_selective_scan(*args, delta_softplus=True, workspace=ws[0], stream=stream)


def es2d_call(args: tuple, sms: int, stream: int, ws: list) -> None:
    batch, d, h, w = args[0].shape
    need = kernels.es2d_workspace_bytes(batch, d, h, w, args[2].shape[2], args[4].shape[1], sm_count=sms)
    if not ws or ws[0].numel() < need:
        ws[:] = [torch.empty(need, device="cuda", dtype=torch.uint8)]
    kernels.launch_es2d_scan(*args, workspace=ws[0], stream=stream)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.float(), b.float()
    if not torch.isfinite(a).all():
        return float("inf")
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def scan_section(sms: int, deadline: float, records: list, lines: list) -> None:
    gen = torch.Generator(device="cuda").manual_seed(0)
    stream = torch.cuda.current_stream().cuda_stream
    lines += ["## Selective scan plans (float16, N=16, 4 groups, softplus, D, delta_bias), ms", "",
              "| preset | HxW | stage | batch | u shape | split | plan | plan (lanes, chunks) | best forced | "
              "best (lanes, chunks) | all forced (lanes x chunks: ms) |", "|---" * 11 + "|"]
    for preset, res, s, d_inner, h, w in kbench.stage_shapes():
        channels1, length = 4 * d_inner, math.ceil(h / 2) * math.ceil(w / 2)
        for batch in BATCHES:
            if time.time() > deadline:
                lines.append(f"| (time budget spent before {preset} {res} stage {s + 1} batch {batch}) |")
                return
            u, delta, A, B, C, D, bias = kbench.scan_inputs(batch, channels1, length, gen)
            out = torch.empty_like(u)
            channels, per_group = batch * channels1, channels1 // 4
            run = functools.partial(scan_call, (u, delta, A, B, C, D, None, bias, out), sms, stream, [])

            with override((0, 2)):
                run()
                ref = out.clone()
                t_split = kbench.bench(run, rounds=5, reps=10)
            plan = launch_params.scan_plan(channels, length, 16, sms, per_group)
            t_plan = kbench.bench(run, rounds=5, reps=10)
            out.fill_(float("nan"))
            run()
            err_plan = rel(out, ref)
            forced = {}
            for cand in candidates(channels, length, per_group, sms):
                with override(cand):
                    out.fill_(float("nan"))
                    run()
                    err = rel(out, ref)
                    t = kbench.bench(run, rounds=5, reps=10) if err <= 5e-3 else float("nan")
                    real = launch_params.scan_plan(channels, length, 16, sms, per_group)
                forced[(cand[0], real.n_chunks)] = (t, err)
            good = {k: v[0] for k, v in forced.items() if v[1] <= 5e-3}
            if not good:
                good[(plan.lanes, plan.n_chunks)] = t_plan
            best = min(good, key=good.get)
            records.append(dict(kind="scan", preset=preset, res=list(res), stage=s + 1, batch=batch, channels=channels,
                                length=length, per_group=per_group, split=t_split, plan=[plan.lanes, plan.n_chunks],
                                plan_ms=t_plan, plan_err=err_plan,
                                forced=[[k[0], k[1], v[0], v[1]] for k, v in forced.items()]))
            bad = [f"{k}: err {v[1]:.1e}" for k, v in forced.items() if not v[1] <= 5e-3]
            lines.append(
                f"| {preset} | {res[0]}x{res[1]} | {s + 1} | {batch} | ({batch}, {channels1}, {length}) "
                f"| {t_split:.4f} | {t_plan:.4f}{'' if err_plan <= 5e-3 else f' ERR {err_plan:.1e}'} "
                f"| {plan.lanes}, {plan.n_chunks} | {good[best]:.4f} | {best[0]}, {best[1]} "
                f"| {' '.join(f'{k[0]}x{k[1]}:{v:.4f}' for k, v in sorted(good.items()))}"
                f"{' BAD ' + '; '.join(bad) if bad else ''} |" if best else f"| {preset} | no valid variant {bad} |")
            print(lines[-1], flush=True)


def es2d_section(sms: int, deadline: float, records: list, lines: list) -> None:
    gen = torch.Generator(device="cuda").manual_seed(1)
    stream = torch.cuda.current_stream().cuda_stream
    lines += ["", "## Fused ES2D plans (x float16, output float32), ms", "",
              "| preset | HxW | stage | batch | x shape | proj+delta | split | plan | plan (lanes, chunks) "
              "| best forced | best (lanes, chunks) | all forced |", "|---" * 12 + "|"]
    for preset, res, s, d, h, w in kbench.stage_shapes():
        for batch in BATCHES:
            if time.time() > deadline:
                lines.append(f"| (time budget spent before {preset} {res} stage {s + 1} batch {batch}) |")
                return
            x = torch.randn(batch, d, h, w, generator=gen, device="cuda").half()
            xw, dtw, dtb, A_logs, Ds = kbench.es2d_params(d, gen)
            out = torch.empty((batch, d, h, w), device="cuda")
            length = math.ceil(h / 2) * math.ceil(w / 2)
            channels = batch * 4 * d
            run = functools.partial(es2d_call, (x, xw, dtw, dtb, A_logs, Ds, out), sms, stream, [])
            with only_projection():
                run()
                t_proj = kbench.bench(run, rounds=5, reps=10)
            with override((0, 2)):
                run()
                ref = out.clone()
                t_split = kbench.bench(run, rounds=5, reps=10)
            plan = launch_params.scan_plan(channels, length, 16, sms, d, routes=True)
            run()
            t_plan = kbench.bench(run, rounds=5, reps=10)
            out.fill_(float("nan"))
            run()
            err_plan = rel(out, ref)
            forced = {}
            for cand in candidates(channels, length, d, sms, routes=True):
                with override(cand):
                    out.fill_(float("nan"))
                    run()
                    err = rel(out, ref)
                    t = kbench.bench(run, rounds=5, reps=10) if err <= 1e-4 else float("nan")
                    real = launch_params.scan_plan(channels, length, 16, sms, d, routes=True)
                forced[(cand[0], real.n_chunks)] = (t, err)
            good = {k: v[0] for k, v in forced.items() if v[1] <= 1e-4}
            if not good:
                good[(plan.lanes, plan.n_chunks)] = t_plan
            best = min(good, key=good.get)
            records.append(dict(kind="es2d", preset=preset, res=list(res), stage=s + 1, batch=batch, channels=channels,
                                length=length, per_group=d, proj_delta=t_proj, split=t_split,
                                plan=[plan.lanes, plan.n_chunks], plan_ms=t_plan, plan_err=err_plan,
                                forced=[[k[0], k[1], v[0], v[1]] for k, v in forced.items()]))
            bad = [f"{k}: err {v[1]:.1e}" for k, v in forced.items() if not v[1] <= 1e-4]
            lines.append(
                f"| {preset} | {res[0]}x{res[1]} | {s + 1} | {batch} | {tuple(x.shape)} | {t_proj:.4f} | {t_split:.4f} "
                f"| {t_plan:.4f}{'' if err_plan <= 1e-4 else f' ERR {err_plan:.1e}'} | {plan.lanes}, {plan.n_chunks} "
                f"| {good[best]:.4f} | {best[0]}, {best[1]} "
                f"| {' '.join(f'{k[0]}x{k[1]}:{v:.4f}' for k, v in sorted(good.items()))}"
                f"{' BAD ' + '; '.join(bad) if bad else ''} |" if best else f"| {preset} | no valid variant {bad} |")
            print(lines[-1], flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for variants.md and variants.json")
    parser.add_argument("--sections", default="scan,es2d")
    parser.add_argument("--budget", type=float, default=60.0, help="seconds for all sections together")
    parser.add_argument("--quick", action="store_true", help="per layout only the chunk count the model prefers")
    parser.add_argument("--plans-only", action="store_true", help="only the split core and the chosen plan")
    parser.add_argument("--lanes", type=lambda text: tuple(int(v) for v in text.split(",")),
                        help="force only these layouts (lanes a channel, comma-separated)")
    parser.add_argument("--batches", type=lambda text: tuple(int(v) for v in text.split(",")),
                        default=kbench.BATCHES, help="batch sizes (comma-separated; default 1,8)")
    args = parser.parse_args()
    global QUICK, PLANS_ONLY, LANES, BATCHES
    QUICK, PLANS_ONLY = args.quick, args.plans_only
    LANES, BATCHES = args.lanes, args.batches
    os.makedirs(args.out, exist_ok=True)
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    deadline = time.time() + args.budget
    records: list = []
    lines = [f"Device: {torch.cuda.get_device_name()} ({sms} SMs), torch {torch.__version__}", ""]
    sections = {"scan": scan_section, "es2d": es2d_section}
    try:
        for name in args.sections.split(","):
            sections[name](sms, deadline, records, lines)
    finally:
        with open(os.path.join(args.out, "variants.md"), "w") as f:
            f.write("\n".join(lines) + "\n")
        with open(os.path.join(args.out, "variants.json"), "w") as f:
            json.dump(dict(device=torch.cuda.get_device_name(), sms=sms, records=records), f)


if __name__ == "__main__":
    main()
