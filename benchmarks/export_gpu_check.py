"""Export checks that need a GPU: the plugins' enqueue on CuPy buffers against the PyTorch ops,
and portable ONNX graphs under onnxruntime-gpu against PyTorch fp32, timed with I/O binding.

    python3 benchmarks/export_gpu_check.py --parts plugins --out DIR
    python3 benchmarks/export_gpu_check.py --parts export --presets paper --precisions fp32 --work W
    python3 benchmarks/export_gpu_check.py --parts ort --presets edge --precisions fp32 fp16 --work W --out DIR

Parts (a part that cannot run reports "skipped: why"; one that breaks reports "failed: why"):
  plugins  FusionEdgeES2DScan / FusionEdgeSelectiveScan / FusionEdgeLDC enqueue (through the IPluginV3
           classes when a TensorRT module imports, else through the same enqueue functions), and the
           ahead-of-time PTX entries launched the way TensorRT launches them (argument order, grid),
           each against the float64 PyTorch reference
  export   portable graphs of --presets x --precisions at --size into --work (edge: the packaged
           weights; other presets: random weights, seed 0), written atomically, with a sidecar JSON
  ort      each graph (exported first if --work lacks it) in ONNX Runtime (--provider cuda: the CUDA
           provider, TF32 off): max |ORT - PyTorch fp32| on real pairs (PyTorch on the GPU with the
           chunked scan and TF32 off, independent of our kernels), where the nodes ran (ORT profiler),
           latency with I/O binding (p50/p90), and the same with ORT's CUDA graph capture
Writes DIR/export_gpu_check_<parts>.{json,md}; prints the markdown last, with the device named.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import json
import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
PRESET_WEIGHTS = {"edge": "packaged"}  # others: random (no trained weights ship for them)


def data_root() -> Path:
    """$DATA_DIR, else a copy carried into the checkout (.carry_data), else ../shared/data."""
    if os.environ.get("DATA_DIR"):
        return Path(os.environ["DATA_DIR"])
    carried = REPO / ".carry_data"
    return carried if carried.is_dir() else REPO.parent / "shared" / "data"


def device_name() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda}, torch {torch.__version__})"
    return f"CPU only (torch {torch.__version__})"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


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


def _scan_case(batch, dim, length, n, groups, seed):
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randn(batch, dim, length, generator=g),
        torch.randn(batch, dim, length, generator=g) * 0.5 - 1.0,
        -torch.exp(torch.rand(dim, n, generator=g) * 2.0),
        torch.randn(batch, groups, n, length, generator=g),
        torch.randn(batch, groups, n, length, generator=g),
        torch.randn(dim, generator=g),
        torch.rand(dim, generator=g) * 0.5,
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


def _row(op, shape, got, ref, via):
    scale = max(1.0, float(ref.abs().max()))
    diff = float((got - ref).abs().max())
    nan = bool(torch.isnan(got).any())
    return {"op": op, "shape": list(shape), "max_abs_diff": diff, "ref_max": scale,
            "passed": (not nan) and diff <= 1e-4 * scale, "via": via}


def check_plugins() -> list[dict]:
    import cupy
    from fusion_edge.export import plugins, plugins_aot

    from fusion_edge.ops.es2d import es2d_scan_unfused
    from fusion_edge.ops.ldc import ldc_conv2d_ref
    from fusion_edge.ops.selective_scan import selective_scan

    trt = _trt_module()
    via = f"IPluginV3 classes on {trt.__name__} {trt.__version__}" if trt else "enqueue functions (no TensorRT)"
    rows = []
    stream = cupy.cuda.Stream(non_blocking=True)

    def upload(tensors):
        arrays = [cupy.asarray(t.numpy()) for t in tensors]
        # Uploads and fills run on the legacy stream; the enqueue runs on a non-blocking one.
        cupy.cuda.runtime.deviceSynchronize()
        return arrays

    def poisoned(shape):
        out = cupy.full(shape, cupy.nan, dtype=cupy.float32)
        cupy.cuda.runtime.deviceSynchronize()
        return out

    def run_plugin(op, fields, dims, ptrs, out, ws_ptr, fallback):
        if trt is None:
            fallback()
            return
        _, creator_cls = plugins.plugin_classes(trt.__name__)[op]
        fc = trt.PluginFieldCollection([trt.PluginField(k, np.array([v], np.int32), trt.PluginFieldType.INT32)
                                        for k, v in fields.items()])
        plugin = creator_cls().create_plugin("check", fc, trt.TensorRTPhase.RUNTIME)
        plugin.enqueue([_desc(trt, s) for s in dims], [_desc(trt, out.shape)], ptrs, [out.data.ptr], ws_ptr,
                       stream.ptr)

    n = 16
    for batch, d, h, w in [(1, 32, 64, 64), (2, 64, 33, 47), (1, 128, 16, 16), (1, 256, 8, 8)]:
        rank = max(1, -(-d // 32))  # the model's dt_rank: ceil(d_model / 16) with D = 2 * d_model
        args = _es2d_case(batch, d, h, w, rank, n, seed=h * w)
        ref = es2d_scan_unfused(*[a.double() for a in args], impl="reference").float()
        fields = {"d_state": n, "dt_rank": rank}
        ws = cupy.empty(max(plugins.es2d_workspace(fields, (batch, d, h, w)), 1), dtype=cupy.uint8)
        dev, out = upload(args), poisoned((batch, d, h, w))
        dims, ptrs = [tuple(a.shape) for a in args], [a.data.ptr for a in dev]
        run_plugin(plugins.ES2D_OP, fields, dims, ptrs, out, ws.data.ptr,
                   functools.partial(plugins.enqueue_es2d, fields, dims, ptrs, out.data.ptr, ws.data.ptr, stream.ptr))
        stream.synchronize()
        rows.append(_row(plugins.ES2D_OP, (batch, d, h, w), torch.from_numpy(cupy.asnumpy(out)), ref, via))

    scan_shapes = [(1, 128, 1024, 16, 4), (2, 64, 777, 16, 4), (1, 96, 5120, 16, 4), (1, 64, 300, 32, 2)]
    for batch, dim, length, n_states, groups in scan_shapes:
        args = _scan_case(batch, dim, length, n_states, groups, seed=length)
        ref = selective_scan(*[a.double() for a in args[:5]], D=args[5].double(), delta_bias=args[6].double(),
                             delta_softplus=True, impl="reference").float()
        fields = {"d_state": n_states, "delta_softplus": 1}
        ws = cupy.empty(max(plugins.scan_workspace(fields, (batch, dim, length)), 1), dtype=cupy.uint8)
        dev, out = upload(args), poisoned((batch, dim, length))
        dims, ptrs = [tuple(a.shape) for a in args], [a.data.ptr for a in dev]
        run_plugin(plugins.SCAN_OP, fields, dims, ptrs, out, ws.data.ptr,
                   functools.partial(plugins.enqueue_scan, fields, dims, ptrs, out.data.ptr, ws.data.ptr, stream.ptr))
        stream.synchronize()
        rows.append(_row(plugins.SCAN_OP, (batch, dim, length), torch.from_numpy(cupy.asnumpy(out)), ref, via))
        # The ahead-of-time entry, launched as TensorRT launches an AOT plugin: (inputs, scalars, outputs).
        arch = int(cupy.cuda.Device().compute_capability)  # CuPy gives "90", "120"
        ptx = plugins_aot.scan_aot_ptx(n_states, arch=arch)
        kernel = _ptx_kernel(cupy, ptx, plugins_aot.scan_aot_kernel_name(n_states))
        grid, block, scalars = plugins_aot.scan_launch_geometry(batch, dim, length, groups, n_states)
        out = poisoned((batch, dim, length))
        with stream:
            kernel(grid, block, (*[np.uint64(p) for p in ptrs], *[np.int32(v) for v in scalars],
                                 np.uint64(out.data.ptr)))
        stream.synchronize()
        rows.append(_row(f"{plugins.SCAN_OP} (AOT PTX)", (batch, dim, length), torch.from_numpy(cupy.asnumpy(out)),
                         ref, f"PTX for sm_{arch}, TensorRT's AOT argument order"))

    for batch, c, h, w in [(1, 16, 64, 64), (2, 32, 33, 47)]:
        g = torch.Generator().manual_seed(c)
        x, weight = torch.randn(batch, c, h, w, generator=g), torch.randn(c, c, 3, 3, generator=g) * 0.2
        mask, lmask, theta = torch.ones(c, c, 3, 3), torch.rand(c, c, generator=g), torch.tensor([0.3])
        tensors = (x, weight, mask, lmask, theta)
        ref = ldc_conv2d_ref(*[t.double() for t in tensors]).float()
        dev, out = upload(tensors), poisoned((batch, c, h, w))
        dims, ptrs = [tuple(t.shape) for t in tensors], [a.data.ptr for a in dev]
        run_plugin(plugins.LDC_OP, {}, dims, ptrs, out, 0,
                   functools.partial(plugins.enqueue_ldc, dims, ptrs, out.data.ptr, stream.ptr))
        stream.synchronize()
        rows.append(_row(plugins.LDC_OP, (batch, c, h, w), torch.from_numpy(cupy.asnumpy(out)), ref, via))
        arch = int(cupy.cuda.Device().compute_capability)
        kernel = _ptx_kernel(cupy, plugins_aot.compile_aot_ptx(plugins_aot.ldc_aot_source(), arch),
                             plugins_aot.LDC_AOT_KERNEL)
        (gx, gy, gz), block = plugins_aot.ldc_launch_geometry(batch, c, h, w)
        out = poisoned((batch, c, h, w))
        with stream:
            kernel((gx, gy, gz), block, (*[np.uint64(p) for p in ptrs], *[np.int32(v) for v in (batch, c, c, h, w)],
                                         np.uint64(out.data.ptr)))
        stream.synchronize()
        rows.append(_row(f"{plugins.LDC_OP} (AOT PTX)", (batch, c, h, w), torch.from_numpy(cupy.asnumpy(out)), ref,
                         f"PTX for sm_{arch}, TensorRT's AOT argument order"))
    return rows


def _ptx_kernel(cupy, ptx: str, name: str):
    """Load PTX the way TensorRT does with an AOT plugin's kernel (the driver JIT-compiles it)."""
    module = cupy.cuda.function.Module()
    module.load(ptx.encode())
    return module.get_function(name)


# ------------------------------------------------------------------- export
def graph_path(work: Path, preset: str, precision: str, h: int, w: int) -> Path:
    return work / f"{preset}_{precision}_{h}x{w}.onnx"


def source_model(preset: str):
    from fusion_edge.export.source_model import from_preset

    return from_preset(preset, random_weights=PRESET_WEIGHTS.get(preset) != "packaged", seed=0)


def _no_tf32() -> None:
    """fp32 on the GPU in full precision: PyTorch's cuDNN convolutions use TF32 by default."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def export_graph(preset: str, precision: str, h: int, w: int, work: Path, trace_device: str,
                 scan_chunk: int) -> dict:
    """The portable graph (reused when already in ``work``), written atomically, with its facts."""
    from fusion_edge.export.model_prep import pad_mode_for, prepare
    from fusion_edge.export.onnx_export import export_onnx

    path = graph_path(work, preset, precision, h, w)
    facts_path = path.with_suffix(".json")
    if path.is_file() and facts_path.is_file():
        return json.loads(facts_path.read_text())
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    source = source_model(preset)
    module = prepare(source.model, fp16=precision == "fp16", pad_mode=pad_mode_for(h, w))
    partial = path.with_name(f".{path.stem}.{os.getpid()}.partial.onnx")
    devices = [trace_device] if trace_device == "cpu" or not torch.cuda.is_available() else [trace_device, "cpu"]
    for i, device in enumerate(devices):
        try:
            if device != "cpu":
                _no_tf32()
            graph = export_onnx(module.to(device), partial, height=h, width=w, flavour="portable",
                                scan_chunk=scan_chunk)
            break
        except Exception as exc:
            partial.unlink(missing_ok=True)
            if i == len(devices) - 1:
                raise
            log(f"export of {path.name} traced on {device} failed ({type(exc).__name__}: {exc}); tracing on the CPU")
            module = prepare(source.model, fp16=precision == "fp16", pad_mode=pad_mode_for(h, w))
    os.replace(partial, path)
    weights = source.description["weights"]
    del module, source
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # traced activations of a big model: free them for the next export
    facts = {"preset": preset, "weights": weights, "precision": precision,
             "size": f"{w}x{h}", "nodes": len(graph.graph.node), "export_s": round(time.perf_counter() - start, 1),
             "traced_on": device, "file_mb": round(path.stat().st_size / 1e6, 1)}
    facts_path.write_text(json.dumps(facts))
    log(f"exported {path.name}: {facts}")
    return facts


# ---------------------------------------------------------------------- ORT
def load_pairs(data: Path, h: int, w: int, count: int):
    from fusion_edge.export import parity

    folder = data / "tno21"
    files = parity.pair_files(folder) if folder.is_dir() else parity.bundled_pair_files()
    return parity.load_pairs(files, h, w, count), (folder.name if folder.is_dir() else "bundled sample pair")


@torch.no_grad()
def reference_outputs(preset: str, pairs) -> tuple[list[np.ndarray], str]:
    """PyTorch fp32 of the model as loaded, with the chunked scan and the reference LDC (standard
    torch ops, not our kernels), TF32 off; clamped to [0, 1] like the graph."""
    from fusion_edge.export.model_prep import swapped_ops

    from fusion_edge.ops.es2d import es2d_scan_unfused
    from fusion_edge.ops.ldc import ldc_conv2d_ref

    device = "cuda" if torch.cuda.is_available() else "cpu"
    _no_tf32()
    model = source_model(preset).model.float().eval().to(device)
    es2d = functools.partial(es2d_scan_unfused, impl="chunked")

    def ldc(x, weight, base_mask, learnable_mask, theta, *, impl=None):
        return ldc_conv2d_ref(x, weight, base_mask, learnable_mask, theta)

    outputs = []
    with swapped_ops(es2d=es2d, ldc=ldc):
        for pair in pairs:
            vis = torch.from_numpy(pair.vis[None, None]).to(device)
            ir = torch.from_numpy(pair.ir[None, None]).to(device)
            outputs.append(model(vis, ir).clamp(0.0, 1.0).float().cpu().numpy())
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return outputs, f"PyTorch {torch.__version__} fp32 on {device} (chunked scan, reference LDC, TF32 off)"


def node_placement(profile_file: str) -> tuple[dict[str, int], dict[str, int]]:
    """From an ORT profile: nodes per execution provider, and op types of nodes not on a GPU provider."""
    events = json.loads(Path(profile_file).read_text())
    where: dict[str, tuple[str, str]] = {}
    for event in events:
        args = event.get("args") or {}
        if event.get("cat") == "Node" and "provider" in args:
            name = event.get("name", "").removesuffix("_kernel_time").removesuffix("_fence_before")
            where[name] = (args["provider"], args.get("op_name", "?"))
    by_provider = collections.Counter(p.replace("ExecutionProvider", "") for p, _ in where.values())
    off_gpu = collections.Counter(op for p, op in where.values() if p not in ("CUDAExecutionProvider",
                                                                              "TensorrtExecutionProvider"))
    return dict(by_provider), dict(off_gpu.most_common(8))


def timed(fn, warmup: int, iters: int, max_s: float) -> dict:
    for _ in range(warmup):
        fn()
    times, start = [], time.perf_counter()
    while len(times) < iters and (time.perf_counter() - start < max_s or len(times) < 3):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return {"p50_ms": round(float(np.percentile(times, 50)), 3), "p90_ms": round(float(np.percentile(times, 90)), 3),
            "runs": len(times)}


def _cuda_options(extra: dict | None = None) -> dict:
    return {"device_id": "0", "use_tf32": "0", **(extra or {})}


def open_session(ort, path: Path, options, provider: str, extra: dict | None = None, with_cpu: bool = True):
    """A session on the provider asked for, or RuntimeError: ORT's Python API falls back to the CPU
    when a provider fails to start, which would time the CPU under a CUDA label. An older ORT that
    does not know ``use_tf32`` is retried without it (its default TF32 setting then applies)."""
    if provider != "cuda":
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]), ""
    note = ""
    for cuda_options in (_cuda_options(extra), {k: v for k, v in _cuda_options(extra).items() if k != "use_tf32"}):
        eps = [("CUDAExecutionProvider", cuda_options)] + (["CPUExecutionProvider"] if with_cpu else [])
        try:
            session = ort.InferenceSession(str(path), options, providers=eps)
        except Exception as exc:
            if "use_tf32" in str(exc) and "use_tf32" in cuda_options:
                note = "use_tf32 unknown to this ORT: its default applies"
                continue
            raise
        if session.get_providers()[0] == "CUDAExecutionProvider":
            return session, note
        if "use_tf32" not in cuda_options:
            break
        note = "retried without use_tf32"
    raise RuntimeError(f"ONNX Runtime did not start its CUDA provider (session runs on {session.get_providers()}); "
                       "see the log for ORT's own message")


def _bound_run(ort, session, vis, ir, device: str):
    """I/O binding with inputs and output in device memory (kept referenced), and the run."""
    values = {"vis": ort.OrtValue.ortvalue_from_numpy(vis, device, 0),
              "ir": ort.OrtValue.ortvalue_from_numpy(ir, device, 0),
              "fused": ort.OrtValue.ortvalue_from_shape_and_type(list(vis.shape), np.float32, device, 0)}
    binding = session.io_binding()
    binding.bind_ortvalue_input("vis", values["vis"])
    binding.bind_ortvalue_input("ir", values["ir"])
    binding.bind_ortvalue_output("fused", values["fused"])

    def run():
        session.run_with_iobinding(binding)
        return values

    return run, values


def ort_rows(presets, precisions, h, w, data: Path, work: Path, provider: str, cuda_graph: bool, pairs_n: int,
             warmup: int, iters: int, max_s: float, trace_device: str, scan_chunk: int,
             save=lambda rows: None) -> list[dict]:
    """One row per graph; ``save(rows)`` after each, so that a run stopped by a time limit keeps them."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if provider == "cuda" and "CUDAExecutionProvider" not in available:
        raise RuntimeError(f"onnxruntime {ort.__version__} has no CUDAExecutionProvider (has {available}); "
                           "put onnxruntime-gpu first on PYTHONPATH")
    device = "cuda" if provider == "cuda" else "cpu"
    pairs, pairs_from = load_pairs(data, h, w, pairs_n)
    rows = []
    for preset in presets:
        expected, reference = reference_outputs(preset, pairs)
        for precision in precisions:
            from fusion_edge.export.parity import TOLERANCE

            row = {"preset": preset, "precision": precision, "size": f"{w}x{h}", "provider": provider,
                   "pairs": f"{len(pairs)} from {pairs_from}", "reference": reference,
                   "tolerance": TOLERANCE[precision], "onnxruntime": ort.__version__}
            rows.append(row)
            try:
                row.update(export_graph(preset, precision, h, w, work, trace_device, scan_chunk))
                path = graph_path(work, preset, precision, h, w)
                options = ort.SessionOptions()
                options.enable_profiling = True
                options.profile_file_prefix = str(work / f"profile_{path.stem}")
                start = time.perf_counter()
                session, note = open_session(ort, path, options, provider)
                if note:
                    row["note"] = note
                row["session_s"] = round(time.perf_counter() - start, 1)
                row["session_providers"] = [p.replace("ExecutionProvider", "") for p in session.get_providers()]
                diffs = []
                for pair, want in zip(pairs, expected):
                    got = session.run(["fused"], {"vis": pair.vis[None, None], "ir": pair.ir[None, None]})[0]
                    diffs.append(float(np.abs(got.astype(np.float64) - want).max()))
                profile = session.end_profiling()  # profiling stops here: the timed runs are not profiled
                row["nodes_by_provider"], row["off_gpu_ops"] = node_placement(profile)
                Path(profile).unlink(missing_ok=True)
                row["max_abs_diff"] = max(diffs)
                row["passed"] = row["max_abs_diff"] <= row["tolerance"]
                run, _ = _bound_run(ort, session, pairs[0].vis[None, None], pairs[0].ir[None, None], device)
                row.update({f"iobinding_{k}": v for k, v in timed(run, warmup, iters, max_s).items()})
                del session
                save(rows)  # the CUDA-graph session is the slowest part: keep what is measured
                if cuda_graph:
                    row.update(cuda_graph_row(ort, path, pairs[0], expected[0], provider, warmup, iters, max_s))
            except Exception as exc:
                row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
                traceback.print_exc()
            log(f"ort {json.dumps(row)}")
            save(rows)
    return rows


def cuda_graph_row(ort, path: Path, pair, expected, provider: str, warmup: int, iters: int, max_s: float) -> dict:
    """The same graph with ORT's CUDA graph capture: every node must be on the CUDA provider."""
    if provider != "cuda":
        return {"cuda_graph": "skipped: needs the CUDA provider"}
    try:
        session, _ = open_session(ort, path, ort.SessionOptions(), provider, {"enable_cuda_graph": "1"},
                                  with_cpu=False)
        run, values = _bound_run(ort, session, pair.vis[None, None], pair.ir[None, None], "cuda")
        stats = timed(run, max(warmup, 3), iters, max_s)  # ORT captures after its first runs
        run()
        diff = float(np.abs(values["fused"].numpy().astype(np.float64) - expected).max())
        return {"cuda_graph": "ok", "cuda_graph_max_abs_diff": diff,
                **{f"cuda_graph_{k}": v for k, v in stats.items()}}
    except Exception as exc:
        return {"cuda_graph": f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"}


# ------------------------------------------------------------------ report
def _fmt(value, spec=".3g"):
    return "-" if value is None else format(value, spec)


def markdown(report: dict) -> str:
    lines = [f"Device: {report['device']}\n"]
    plugins = report.get("plugins")
    if plugins is not None:
        if isinstance(plugins, list):
            lines += ["### Plugin enqueue and AOT entries vs the float64 PyTorch reference "
                      "(outputs poisoned with NaN)\n",
                      "| op | shape | max abs diff | tolerance (1e-4 x max(1, max abs ref)) | pass | via |",
                      "|---|---|---|---|---|---|"]
            lines += [f"| {r['op']} | {r['shape']} | {r['max_abs_diff']:.2e} | {1e-4 * r['ref_max']:.1e} | "
                      f"{'yes' if r['passed'] else '**NO**'} | {r['via']} |" for r in plugins]
        else:
            lines.append(f"Plugins: {plugins}")
        lines.append("")
    exports = report.get("export")
    if exports is not None:
        if isinstance(exports, list):
            lines += ["### Exports\n", "| graph | weights | nodes | MB | traced on | export s |",
                      "|---|---|---|---|---|---|"]
            lines += [f"| {r['preset']} {r['precision']} {r['size']} | {r['weights']} | {r['nodes']} | "
                      f"{r['file_mb']} | {r['traced_on']} | {r['export_s']} |" for r in exports]
        else:
            lines.append(f"Export: {exports}")
        lines.append("")
    ort_rows_ = report.get("ort")
    if ort_rows_ is not None:
        if isinstance(ort_rows_, list):
            lines += ["### Portable ONNX in ONNX Runtime vs PyTorch fp32 (real pairs), latency with I/O binding\n",
                      "| graph | weights | provider | nodes (by provider) | not on the GPU | max abs diff | tol | pass "
                      "| p50 / p90 ms | CUDA graph p50 ms | CUDA graph diff | session s |",
                      "|---|---|---|---|---|---|---|---|---|---|---|---|"]
            for r in ort_rows_:
                if "error" in r:
                    lines.append(f"| {r['preset']} {r['precision']} {r['size']} | | {r['provider']} | | | | | "
                                 f"**failed**: {r['error']} | | | | |")
                    continue
                graph_cell = (_fmt(r.get("cuda_graph_p50_ms")) if r.get("cuda_graph") == "ok"
                              else r.get("cuda_graph", "-"))
                nodes = ", ".join(f"{k} {v}" for k, v in r["nodes_by_provider"].items()) or "unknown (no node events)"
                off = (", ".join(f"{k} x{v}" for k, v in r["off_gpu_ops"].items()) or "none"
                       if r["nodes_by_provider"] else "unknown")
                lines.append(
                    f"| {r['preset']} {r['precision']} {r['size']} | {r['weights']} "
                    f"| {'+'.join(r['session_providers'])} "
                    f"| {nodes} | {off if r['provider'] == 'cuda' else 'n/a (CPU run)'} | {r['max_abs_diff']:.2e} "
                    f"| {r['tolerance']:g} | {'yes' if r['passed'] else '**NO**'} "
                    f"| {_fmt(r.get('iobinding_p50_ms'))} / {_fmt(r.get('iobinding_p90_ms'))} | {graph_cell} "
                    f"| {_fmt(r.get('cuda_graph_max_abs_diff'), '.2e')} | {r['session_s']} |")
            first = next((r for r in ort_rows_ if "reference" in r), None)
            if first:
                lines.append(f"\nReference: {first['reference']}; pairs: {first['pairs']}; "
                             f"onnxruntime {first['onnxruntime']}, CUDA provider with use_tf32=0.")
        else:
            lines.append(f"ONNX Runtime: {ort_rows_}")
    return "\n".join(lines) + "\n"


def failures(report: dict) -> int:
    bad = 0
    for part in ("plugins", "ort"):
        rows = report.get(part)
        if isinstance(rows, list):
            bad += sum(1 for r in rows if "error" in r or not r.get("passed", False))
        elif isinstance(rows, str) and rows.startswith("failed"):
            bad += 1
    return bad


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--parts", nargs="+", choices=("plugins", "export", "ort"), default=["plugins", "ort"])
    p.add_argument("--out", type=Path, default=Path("export_gpu_check_out"), help="where the .json/.md go")
    p.add_argument("--work", type=Path, default=None, help="exported graphs (reused between calls; default: --out)")
    p.add_argument("--presets", nargs="+", default=["edge"])
    p.add_argument("--precisions", nargs="+", choices=("fp32", "fp16"), default=["fp32", "fp16"])
    p.add_argument("--size", default="640x512", help="WxH of the exports (default 640x512)")
    p.add_argument("--data", type=Path, default=None, help="data folder holding tno21/ (default: $DATA_DIR, "
                   ".carry_data in the checkout, or ../shared/data)")
    p.add_argument("--pairs", type=int, default=2, help="real pairs for the parity check")
    p.add_argument("--provider", choices=("cuda", "cpu"), default="cuda", help="ONNX Runtime provider")
    p.add_argument("--no-cuda-graph", dest="cuda_graph", action="store_false", help="skip the CUDA-graph timing")
    p.add_argument("--trace-device", choices=("cpu", "cuda"), default="cpu",
                   help="where the export traces the model (cuda: much faster for big presets; falls back to cpu)")
    p.add_argument("--scan-chunk", type=int, default=None, help="portable scan chunk length (default: the export's)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--iters", type=int, default=30)
    p.add_argument("--max-seconds", type=float, default=10.0, help="time limit of one timing loop")
    args = p.parse_args(argv)
    from fusion_edge.export.portable import EXPORT_CHUNK_LEN

    w, h = (int(v) for v in args.size.lower().split("x"))
    work = args.work or args.out
    data = args.data or data_root()
    scan_chunk = args.scan_chunk or EXPORT_CHUNK_LEN
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict = {"device": device_name()}
    tag = "_".join(args.parts) + ("_" + "_".join(args.presets) if set(args.parts) & {"export", "ort"} else "")

    def save(part: str, rows) -> None:
        report[part] = rows
        (args.out / f"export_gpu_check_{tag}.json").write_text(json.dumps(report, indent=2))
        (args.out / f"export_gpu_check_{tag}.md").write_text(markdown(report))

    log(f"device: {report['device']}; parts {args.parts}; data {data}")
    for part in args.parts:
        try:
            if part == "plugins":
                report["plugins"] = check_plugins()
            elif part == "export":
                report["export"] = [export_graph(preset, precision, h, w, work, args.trace_device, scan_chunk)
                                    for preset in args.presets for precision in args.precisions]
            else:
                report["ort"] = ort_rows(args.presets, args.precisions, h, w, data, work, args.provider,
                                         args.cuda_graph, args.pairs, args.warmup, args.iters, args.max_seconds,
                                         args.trace_device, scan_chunk, save=lambda rows: save("ort", rows))
        except ImportError as exc:
            report[part] = f"skipped: {exc}"
            traceback.print_exc()
        except Exception as exc:
            report[part] = f"failed: {type(exc).__name__}: {exc}"
            traceback.print_exc()
    for part in args.parts:
        save(part, report.get(part))
    text = markdown(report)
    print(text)
    bad = failures(report)
    log(f"summary on {report['device']}: {bad} failing rows")
    return 1 if bad else 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
