"""ESTIMATE (not a measurement) of per-frame latency on Jetson Orin devices we cannot run here.

A roofline floor from the model's work per frame (FLOPs and bytes, counted by
``fusion_edge.bench.cost``, or read from a ``bench.json``) and each device's published peak
compute and memory bandwidth:

    t_compute = matmul/conv FLOPs / dense FP16 tensor peak + (scan + other) FLOPs / FP32 CUDA-core peak
    t_memory  = bytes moved / memory bandwidth
    floor     = max(t_compute, t_memory)

Bytes are given two ways: ``eager`` (every op reads its inputs and writes its outputs, the
counted traffic) and ``fused`` (weights + the two inputs + the output once: perfect fusion).
The real latency lies above the floor: kernels reach a fraction of peak, and launch overhead,
synchronisation and clocks under power modes add to it. Use the range to compare presets and
devices, never as a promise.

Published figures used (NVIDIA Jetson module data sheets and the "Jetson AGX Orin Series
Technical Brief" v1.2; module "AI performance" is sparse INT8 TOPS and, except on Orin Nano,
includes the DLAs, so the GPU's dense FP16 tensor rate is derived from the GPU's tensor cores
and clock):

* AGX Orin 64GB: GPU 2048 CUDA cores, 64 tensor cores, up to 1.3 GHz; the brief states
  "5.3 FP32 TFLOPs" of CUDA compute and "170 sparse INT8 TOPs" for the GPU; LPDDR5 204.8 GB/s.
  170 TOPS / (64 tensor cores x 1.3 GHz) = 2048 sparse INT8 ops per tensor core per clock, so
  512 dense FP16 FLOPs per tensor core per clock (sparse INT8 = 2 x dense INT8 = 4 x dense FP16).
* Orin NX 16GB: GPU 1024 CUDA cores, 32 tensor cores, up to 918 MHz; 100 TOPS (module);
  LPDDR5 102.4 GB/s.
* Orin Nano 8GB: GPU 1024 CUDA cores, 32 tensor cores, up to 625 MHz; 40 TOPS (GPU only, no DLA:
  32 x 2048 x 0.625 GHz = 41 TOPS, which checks the per-core rate above); LPDDR5 68 GB/s.
  "Super" mode (JetPack 6.2): 1020 MHz, 67 TOPS, 102 GB/s.
* H100 SXM5 80GB (for calibration against our measured H100 table): 989.4 dense FP16 tensor
  TFLOPS, 67 FP32 TFLOPS, HBM3 3.35 TB/s (NVIDIA H100 data sheet).

Usage:
    python benchmarks/jetson_estimate.py                       # edge/tiny/paper at 256x256, 512x640, fp16
    python benchmarks/jetson_estimate.py --preset edge --size 480x640 --fp32
    python benchmarks/jetson_estimate.py --from OUT/bench.json # the FLOPs/bytes a bench run recorded
    python benchmarks/jetson_estimate.py --out benchmarks/results/bench_jetson_estimate.md
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

DENSE_FP16_FLOPS_PER_TENSOR_CORE_CLOCK = 512  # derived above from the AGX Orin brief


@dataclass(frozen=True)
class Device:
    name: str
    tensor_fp16_tflops: float  # dense FP16 on tensor cores
    cuda_fp32_tflops: float  # FP32 on CUDA cores (the scan and element-wise work)
    bandwidth_gbs: float
    source: str


def _orin(name: str, cuda_cores: int, tensor_cores: int, ghz: float, bandwidth_gbs: float, source: str) -> Device:
    return Device(
        name=name,
        tensor_fp16_tflops=tensor_cores * DENSE_FP16_FLOPS_PER_TENSOR_CORE_CLOCK * ghz / 1000,
        cuda_fp32_tflops=cuda_cores * 2 * ghz / 1000,
        bandwidth_gbs=bandwidth_gbs,
        source=source,
    )


DEVICES = [
    _orin("Orin Nano 8GB", 1024, 32, 0.625, 68.0, "data sheet: 625 MHz GPU, 40 TOPS, 68 GB/s"),
    _orin("Orin Nano 8GB Super", 1024, 32, 1.020, 102.0, "JetPack 6.2 Super mode: 1020 MHz, 67 TOPS, 102 GB/s"),
    _orin("Orin NX 16GB", 1024, 32, 0.918, 102.4, "data sheet: 918 MHz GPU, 100 TOPS, 102.4 GB/s"),
    _orin("AGX Orin 64GB", 2048, 64, 1.3, 204.8, "technical brief: 1.3 GHz, 5.3 FP32 TFLOPs, 170 sparse INT8 TOPs"),
]
CALIBRATION = Device("H100 SXM5 (calibration)", 989.4, 67.0, 3350.0, "H100 data sheet: 989.4 TF FP16, 3.35 TB/s")


@dataclass
class Work:
    label: str
    size: str
    dtype: str
    gflops_mm: float
    gflops_other: float  # scan + element-wise
    mbytes_eager: float
    mbytes_fused: float


def work_from_cost(label: str, cost: dict) -> Work:
    elsize = 2 if cost["dtype"] == "float16" else 4
    io_mb = 3 * cost["height"] * cost["width"] * elsize / 1e6  # vis, ir in; fused out
    return Work(
        label=label, size=f"{cost['height']}x{cost['width']}", dtype=cost["dtype"],
        gflops_mm=cost["gflops_matmul_conv"], gflops_other=cost["gflops_scan"] + cost["gflops_other"],
        mbytes_eager=cost["mbytes"], mbytes_fused=cost["mbytes_weights"] + io_mb,
    )


def works_from_json(path: Path) -> list[Work]:
    data = json.loads(Path(path).read_text())
    runs = data if isinstance(data, list) else [data]
    works = []
    for run in runs:
        label = run["config"].get("preset") or run["model"]
        works += [work_from_cost(label, c) for c in run["cost_per_frame"].values() if c]
    return works


def works_from_presets(presets: list[str], sizes: list[tuple[int, int]], fp16: bool) -> list[Work]:
    from fusion_edge.bench.cost import frame_cost
    from fusion_edge.models.presets import preset_config

    return [
        work_from_cost(p, frame_cost(preset_config(p), h, w, fp16=fp16).to_dict()) for p in presets for h, w in sizes
    ]


def estimate(work: Work, device: Device) -> dict:
    t_compute = work.gflops_mm / device.tensor_fp16_tflops + work.gflops_other / device.cuda_fp32_tflops  # ms
    t_eager = work.mbytes_eager / device.bandwidth_gbs  # MB / (GB/s) = ms
    t_fused = work.mbytes_fused / device.bandwidth_gbs
    low, high = max(t_compute, t_fused), max(t_compute, t_eager)
    return {"compute_ms": t_compute, "memory_fused_ms": t_fused, "memory_eager_ms": t_eager,
            "floor_low_ms": low, "floor_high_ms": high, "bound": "memory" if t_eager > t_compute else "compute"}


def render(works: list[Work], devices: list[Device], command: str = "") -> str:
    lines = [
        "# Jetson latency ESTIMATE (roofline from published specs, NOT a measurement)",
        "",
        *([f"Generated by `{command}`.", ""] if command else []),
        "Floor per frame, batch 1: max(compute time at peak, memory time at peak bandwidth). 'fused' assumes",
        "every intermediate stays on chip (weights and I/O read once); 'eager' moves every op's inputs and",
        "outputs through memory. Real latency is higher. Work per frame counted by fusion_edge.bench.cost.",
        "",
        "| device | preset | size | dtype | GFLOPs (matmul+conv / other) | MB moved (fused / eager) "
        "| compute ms | floor ms (fused .. eager) | bound (eager) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for device in devices:
        for w in works:
            e = estimate(w, device)
            lines.append(
                f"| {device.name} | {w.label} | {w.size} | {w.dtype} | {w.gflops_mm:.2f} / {w.gflops_other:.2f} "
                f"| {w.mbytes_fused:.1f} / {w.mbytes_eager:.0f} | {e['compute_ms']:.3f} "
                f"| {e['floor_low_ms']:.3f} .. {e['floor_high_ms']:.3f} | {e['bound']} |"
            )
    lines += ["", "Device figures (published specs; dense FP16 tensor TFLOPS derived as described in the script):", ""]
    lines += ["| device | dense FP16 tensor TFLOPS | FP32 CUDA-core TFLOPS | memory GB/s | from |",
              "|---|---|---|---|---|"]
    for d in devices:
        lines.append(f"| {d.name} | {d.tensor_fp16_tflops:.1f} | {d.cuda_fp32_tflops:.2f} | {d.bandwidth_gbs:g} "
                     f"| {d.source} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Roofline ESTIMATE of latency on Jetson Orin devices.")
    parser.add_argument("--from", dest="from_json", type=Path, nargs="+", help="bench.json file(s) to take work from")
    parser.add_argument("--preset", nargs="+", default=["edge", "tiny", "paper"])
    parser.add_argument("--size", nargs="+", default=["256x256", "512x640"])
    parser.add_argument("--fp32", action="store_true", help="count fp32 bytes (default fp16, as deployed)")
    parser.add_argument("--no-calibration", action="store_true", help="leave out the H100 reference rows")
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    args = parser.parse_args(argv)
    try:
        if args.from_json:
            works = [w for path in args.from_json for w in works_from_json(path)]
        else:
            from fusion_edge.bench.config import parse_size

            works = works_from_presets(args.preset, [parse_size(s) for s in args.size], fp16=not args.fp32)
    except (OSError, ValueError, KeyError) as exc:
        print(f"jetson_estimate: error: {exc}", file=sys.stderr)
        return 2
    if not works:
        print("jetson_estimate: error: no FLOP/byte counts found", file=sys.stderr)
        return 2
    given = argv if argv is not None else sys.argv[1:]
    command = " ".join(["python benchmarks/jetson_estimate.py", *given])
    text = render(works, DEVICES + ([] if args.no_calibration else [CALIBRATION]), command)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
