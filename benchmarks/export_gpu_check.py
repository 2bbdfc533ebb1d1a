"""Export checks that need a GPU: the plugins' enqueue on CuPy buffers against the PyTorch op,
and the portable ONNX graph under onnxruntime-gpu against PyTorch, timed.

    python3 benchmarks/export_gpu_check.py --out DIR [--sizes 256x256 480x640] [--chunks 4 8 16]

Parts (each reports "skipped: why" instead of failing when its packages are missing):
  plugins   FusionEdgeES2DScan / FusionEdgeLDC enqueue (through the IPluginV3 classes when TensorRT or
            TensorRT-RTX bindings import, else through the same enqueue functions) vs the PyTorch ops
  ort       edge preset (random weights, seed 0) exported portable per size and scan chunk length,
            run with onnxruntime's CUDA provider: max |ORT - PyTorch fp32| on real pairs, median latency
            (fp16 graphs too with --fp16); PyTorch eager latency on the same GPU for reference
Writes DIR/export_gpu_check.{json,md}; the last lines printed are the summary, with the device named.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "tno21"


def device_name() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda}, torch {torch.__version__})"
    return "no CUDA device"


# ------------------------------------------------------------------ plugins
def _es2d_case(batch, d, h, w, rank, n, seed):
    from fusion_edge.ops.es2d import ROUTES

    g = torch.Generator().manual_seed(seed)
    return [
        torch.randn(batch, d, h, w, generator=g),
        torch.randn(ROUTES, rank + 2 * n, d, generator=g) * d**-0.5,
        torch.randn(ROUTES, d, rank, generator=g) * rank**-0.5,
        torch.rand(ROUTES, d, generator=g) * 3.0 - 5.0,
        torch.log(torch.arange(1, n + 1, dtype=torch.float32)).repeat(ROUTES * d, 1),
        torch.ones(ROUTES * d),
    ]


def _trt_module():
    from fusion_edge.export.trt_loader import import_tensorrt

    try:
        return import_tensorrt()
    except ImportError:
        return None


def _desc(trt, dims):
    d = trt.PluginTensorDesc()
    d.dims, d.type, d.format = trt.Dims(list(dims)), trt.DataType.FLOAT, trt.TensorFormat.LINEAR
    return d


def check_plugins() -> list[dict]:
    import cupy
    from fusion_edge.export import plugins

    from fusion_edge.ops.es2d import es2d_scan_unfused
    from fusion_edge.ops.ldc import ldc_conv2d_ref

    trt = _trt_module()
    via = f"IPluginV3 classes on {trt.__name__} {trt.__version__}" if trt else "enqueue functions (no TensorRT)"
    rows = []
    stream = cupy.cuda.Stream(non_blocking=True)
    n = 16
    for batch, d, h, w in [(1, 32, 64, 64), (2, 64, 33, 47), (1, 128, 16, 16), (1, 256, 8, 8)]:
        rank = max(1, -(-d // 32))  # the model's dt_rank: ceil(d_model / 16) with D = 2 * d_model
        args = _es2d_case(batch, d, h, w, rank, n, seed=h * w)
        ref = es2d_scan_unfused(*[a.double() for a in args], impl="reference").float()
        dev = [cupy.asarray(a.numpy()) for a in args]
        out = cupy.zeros((batch, d, h, w), dtype=cupy.float32)
        fields = {"d_state": n, "dt_rank": rank}
        ws_bytes = plugins.es2d_workspace(fields, (batch, d, h, w))
        ws = cupy.empty(max(ws_bytes, 1), dtype=cupy.uint8)
        dims = [tuple(a.shape) for a in args]
        ptrs = [a.data.ptr for a in dev]
        if trt is not None:
            plugin_cls, creator_cls = plugins.plugin_classes(trt.__name__)[plugins.ES2D_OP]
            fc = trt.PluginFieldCollection([trt.PluginField(k, np.array([v], np.int32), trt.PluginFieldType.INT32)
                                            for k, v in fields.items()])
            plugin = creator_cls().create_plugin("check", fc, trt.TensorRTPhase.RUNTIME)
            plugin.enqueue([_desc(trt, s) for s in dims], [_desc(trt, dims[0])], ptrs, [out.data.ptr],
                           ws.data.ptr, stream.ptr)
        else:
            plugins.enqueue_es2d(fields, dims, ptrs, out.data.ptr, ws.data.ptr, stream.ptr)
        stream.synchronize()
        got = torch.from_numpy(cupy.asnumpy(out))
        scale = max(1.0, float(ref.abs().max()))
        diff = float((got - ref).abs().max())
        rows.append({"op": plugins.ES2D_OP, "shape": [batch, d, h, w], "max_abs_diff": diff,
                     "ref_max": scale, "passed": diff <= 1e-4 * scale, "via": via})

    for batch, c, h, w in [(1, 16, 64, 64), (2, 32, 33, 47)]:
        g = torch.Generator().manual_seed(c)
        x, weight = torch.randn(batch, c, h, w, generator=g), torch.randn(c, c, 3, 3, generator=g) * 0.2
        mask, lmask, theta = torch.ones(c, c, 3, 3), torch.rand(c, c, generator=g), torch.tensor([0.3])
        ref = ldc_conv2d_ref(*[t.double() for t in (x, weight, mask, lmask, theta)]).float()
        dev = [cupy.asarray(t.numpy()) for t in (x, weight, mask, lmask, theta)]
        out = cupy.zeros((batch, c, h, w), dtype=cupy.float32)
        dims = [tuple(t.shape) for t in (x, weight, mask, lmask, theta)]
        ptrs = [a.data.ptr for a in dev]
        if trt is not None:
            _, creator_cls = plugins.plugin_classes(trt.__name__)[plugins.LDC_OP]
            plugin = creator_cls().create_plugin("check", trt.PluginFieldCollection([]), trt.TensorRTPhase.RUNTIME)
            plugin.enqueue([_desc(trt, s) for s in dims], [_desc(trt, (batch, c, h, w))], ptrs, [out.data.ptr],
                           0, stream.ptr)
        else:
            plugins.enqueue_ldc(dims, ptrs, out.data.ptr, stream.ptr)
        stream.synchronize()
        got = torch.from_numpy(cupy.asnumpy(out))
        scale = max(1.0, float(ref.abs().max()))
        diff = float((got - ref).abs().max())
        rows.append({"op": plugins.LDC_OP, "shape": [batch, c, h, w], "max_abs_diff": diff,
                     "ref_max": scale, "passed": diff <= 1e-4 * scale, "via": via})
    return rows


# ---------------------------------------------------------------------- ORT
def _median_ms(fn, warmup: int, iters: int, sync=None) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        if sync:
            sync()
        start = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def check_ort(sizes, chunks, fp16: bool, data: Path | None, warmup: int, iters: int, provider: str) -> list[dict]:
    import onnxruntime as ort
    from fusion_edge.export import parity
    from fusion_edge.export.model_prep import pad_mode_for, prepare
    from fusion_edge.export.onnx_export import export_onnx
    from fusion_edge.export.source_model import from_preset

    providers = ort.get_available_providers()
    if provider == "cuda" and "CUDAExecutionProvider" not in providers:
        raise RuntimeError(f"onnxruntime {ort.__version__} has no CUDAExecutionProvider (has {providers}); "
                           "install onnxruntime-gpu")
    eps = ["CUDAExecutionProvider", "CPUExecutionProvider"] if provider == "cuda" else ["CPUExecutionProvider"]
    source = from_preset("edge", random_weights=True, seed=0)
    files = parity.pair_files(data) if data is not None and data.is_dir() else parity.bundled_pair_files()
    torch_dev = "cuda" if torch.cuda.is_available() else "cpu"
    reference = copy.deepcopy(source.model).to(torch_dev).eval()
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="export_gpu_check_"))
    for h, w in sizes:
        pair = parity.load_pairs(files, h, w, 1)[0]
        vis, ir = pair.vis[None, None], pair.ir[None, None]
        tv, ti = torch.from_numpy(vis).to(torch_dev), torch.from_numpy(ir).to(torch_dev)
        with torch.no_grad():
            expected = reference(tv, ti).clamp(0, 1).float().cpu().numpy()
            sync = torch.cuda.synchronize if torch_dev == "cuda" else None
            torch_ms = _median_ms(lambda tv=tv, ti=ti: reference(tv, ti), warmup, iters, sync)
        for precision in (["fp32", "fp16"] if fp16 else ["fp32"]):
            for chunk in chunks:
                path = tmp / f"edge_{h}x{w}_{precision}_c{chunk}.onnx"
                start = time.perf_counter()
                module = prepare(source.model, fp16=precision == "fp16", pad_mode=pad_mode_for(h, w))
                graph = export_onnx(module, path, height=h, width=w, flavour="portable", scan_chunk=chunk)
                export_s = time.perf_counter() - start
                session = ort.InferenceSession(str(path), providers=eps)
                got = session.run(["fused"], {"vis": vis, "ir": ir})[0]
                diff = float(np.abs(got.astype(np.float64) - expected).max())
                feeds = {"vis": vis, "ir": ir}
                ort_ms = _median_ms(lambda s=session, f=feeds: s.run(["fused"], f), warmup, iters)
                rows.append({"size": f"{w}x{h}", "precision": precision, "scan_chunk": chunk,
                             "nodes": len(graph.graph.node), "export_s": round(export_s, 1),
                             "max_abs_diff": diff, "tolerance": parity.TOLERANCE[precision],
                             "passed": diff <= parity.TOLERANCE[precision],
                             "ort_ms": round(ort_ms, 3), "torch_eager_fp32_ms": round(torch_ms, 3),
                             "providers": session.get_providers()[:1]})
                print(f"  ort {rows[-1]}", flush=True)
    return rows


def markdown(report: dict) -> str:
    lines = [f"# Export GPU check\n\nDevice: {report['device']}\n"]
    plugins = report.get("plugins")
    if isinstance(plugins, list):
        lines += ["## Plugin enqueue vs PyTorch (float64 reference)\n", "| op | shape | max abs diff | pass | via |",
                  "|---|---|---|---|---|"]
        lines += [f"| {r['op']} | {r['shape']} | {r['max_abs_diff']:.2e} | {r['passed']} | {r['via']} |"
                  for r in plugins]
    else:
        lines.append(f"Plugins: {plugins}")
    ort_rows = report.get("ort")
    if isinstance(ort_rows, list):
        lines += ["\n## Portable ONNX in ONNX Runtime vs PyTorch fp32 (real pair)\n",
                  "| size (WxH) | precision | scan chunk | nodes | max abs diff | pass | ORT ms | torch eager ms |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['size']} | {r['precision']} | {r['scan_chunk']} | {r['nodes']} | {r['max_abs_diff']:.2e} | "
                  f"{r['passed']} | {r['ort_ms']} | {r['torch_eager_fp32_ms']} |" for r in ort_rows]
    else:
        lines.append(f"\nONNX Runtime: {ort_rows}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("export_gpu_check_out"))
    p.add_argument("--sizes", nargs="+", default=["256x256", "480x640"], help="WxH")
    p.add_argument("--chunks", nargs="+", type=int, default=[8], help="scan chunk lengths of the portable graph")
    p.add_argument("--fp16", action="store_true", help="also fp16 graphs (tolerance 1e-2)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with vis/ and ir/ pairs")
    p.add_argument("--provider", choices=("cuda", "cpu"), default="cuda", help="ONNX Runtime provider")
    p.add_argument("--parts", nargs="+", choices=("plugins", "ort"), default=["plugins", "ort"])
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--iters", type=int, default=50)
    args = p.parse_args(argv)
    sizes = [tuple(int(v) for v in s.lower().split("x"))[::-1] for s in args.sizes]  # WxH -> (H, W)
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict = {"device": device_name()}
    print(f"device: {report['device']}", flush=True)
    if "plugins" in args.parts:
        try:
            report["plugins"] = check_plugins()
        except Exception as exc:
            report["plugins"] = f"skipped: {type(exc).__name__}: {exc}"
            traceback.print_exc()
    if "ort" in args.parts:
        try:
            report["ort"] = check_ort(sizes, args.chunks, args.fp16, args.data, args.warmup, args.iters,
                                      args.provider)
        except Exception as exc:
            report["ort"] = f"skipped: {type(exc).__name__}: {exc}"
            traceback.print_exc()
    (args.out / "export_gpu_check.json").write_text(json.dumps(report, indent=2))
    (args.out / "export_gpu_check.md").write_text(markdown(report))
    print(markdown(report))
    failed = [r for part in ("plugins", "ort") if isinstance(report.get(part), list) for r in report[part]
              if not r["passed"]]
    print(f"summary on {report['device']}: {len(failed)} failing rows; "
          f"plugins: {'ran' if isinstance(report.get('plugins'), list) else report.get('plugins')}; "
          f"ort: {'ran' if isinstance(report.get('ort'), list) else report.get('ort')}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
