"""Export pieces that need no full export: the custom-node maths, the plugin classes (called
directly through the TensorRT-RTX bindings), graph checks, atomic writes and user errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from fusion_edge.export import atomic, ort_custom_ops, portable
from fusion_edge.export.contract import DOMAIN, ES2D_OP, LDC_OP, PLUGIN_NAMESPACE, PLUGIN_VERSION, SCAN_OP
from fusion_edge.export.pipeline import ExportOptions, run_export
from onnx import TensorProto, helper

from fusion_edge.cli import main as cli_main
from fusion_edge.ops.es2d import es2d_gather, es2d_scan_unfused
from fusion_edge.ops.ldc import ldc_conv2d_ref
from fusion_edge.ops.selective_scan import selective_scan

REPO = Path(__file__).resolve().parents[1]


def es2d_inputs(d: int, h: int, w: int, batch: int = 2, rank: int = 1, n: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(batch, d, h, w, generator=g),
        torch.randn(4, rank + 2 * n, d, generator=g) * 0.3,
        torch.randn(4, d, rank, generator=g),
        torch.randn(4, d, generator=g) * 0.5 - 2.0,
        torch.log(torch.arange(1, n + 1, dtype=torch.float32)).repeat(4 * d, 1),
        torch.randn(4 * d, generator=g),
    )


# ----------------------------------------------------------------- node maths
@pytest.mark.parametrize("size", [(8, 8), (7, 5), (6, 9), (1, 1)])
def test_numpy_es2d_matches_the_pytorch_reference(size):
    args = es2d_inputs(8, *size)
    expected = es2d_scan_unfused(*args, impl="reference").numpy()
    got = ort_custom_ops.es2d_scan_numpy(*(a.numpy() for a in args))
    assert got.shape == expected.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=2e-5, rtol=0)


def test_numpy_ldc_matches_the_pytorch_reference():
    g = torch.Generator().manual_seed(1)
    x, weight = torch.randn(1, 6, 9, 7, generator=g), torch.randn(6, 6, 3, 3, generator=g)
    mask, lmask, theta = torch.ones(6, 6, 3, 3), torch.rand(6, 6, generator=g), torch.tensor([0.4])
    expected = ldc_conv2d_ref(x, weight, mask, lmask, theta).numpy()
    got = ort_custom_ops.ldc_numpy(*(t.numpy() for t in (x, weight, mask, lmask, theta)))
    np.testing.assert_allclose(got, expected, atol=2e-5, rtol=0)


@pytest.mark.parametrize("groups", [1, 2])
def test_numpy_selective_scan_matches_the_pytorch_reference(groups):
    g = torch.Generator().manual_seed(groups)
    u, delta = torch.randn(2, 6, 37, generator=g), torch.randn(2, 6, 37, generator=g)
    A = -torch.exp(torch.randn(6, 5, generator=g))
    B, C = torch.randn(2, groups, 5, 37, generator=g), torch.randn(2, groups, 5, 37, generator=g)
    D, bias = torch.randn(6, generator=g), torch.randn(6, generator=g)
    expected = selective_scan(u, delta, A, B, C, D=D, delta_bias=bias, delta_softplus=True, impl="reference")
    got = ort_custom_ops.selective_scan_numpy(*(t.numpy() for t in (u, delta, A, B, C, D, bias)))
    np.testing.assert_allclose(got, expected.numpy(), atol=2e-5, rtol=0)
    if groups == 2:  # 5 channels cannot share 2 groups of B/C
        with pytest.raises(ValueError, match="divide"):
            ort_custom_ops.selective_scan_numpy(*(t.numpy() for t in (u[:, :5], delta[:, :5], A[:5], B, C, D[:5],
                                                                       bias[:5])))


def test_es2d_through_the_scan_node_equals_the_op():
    """The plain-scan plugin route (gather/projections/scatter as torch ops around the scan node) computes ES2D."""
    from fusion_edge.export.symbolic import es2d_scan_unfused_node

    for size in [(8, 6), (7, 5)]:
        args = es2d_inputs(4, *size, batch=1)
        torch.testing.assert_close(es2d_scan_unfused_node(*args), es2d_scan_unfused(*args, impl="reference"),
                                   atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("size", [(8, 6), (7, 5), (5, 8)])
def test_portable_es2d_matches_the_op_at_odd_sizes(size):
    args = es2d_inputs(4, *size, batch=1)
    assert torch.equal(es2d_gather(args[0], pad_always=True), es2d_gather(args[0]))
    expected = es2d_scan_unfused(*args, impl="reference")
    got = portable.es2d_scan_portable(*args, chunk_len=3)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_static_carry_covers_the_longest_route():
    assert portable.longest_route(64, 64) == 64  # 16x16 stage 0 -> 8x8 per route
    assert portable.longest_route(70, 50) == 12 * 8  # padded to 96x64: 24x16 at stage 0
    assert portable.carry_doublings(64, 8) == 3 and portable.carry_doublings(8, 8) == 0
    assert portable.carry_doublings(65, 8) == 4


# ------------------------------------------------------------- graph checks
def _graph(nodes, opsets=(("", 17),), functions=()):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph(nodes, "g", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets], functions=functions)


def test_portability_checker_flags_what_it_must():
    assert portable.portability_problems(_graph([helper.make_node("Relu", ["x"], ["y"])])) == []
    custom = _graph([helper.make_node(ES2D_OP, ["x"], ["y"], domain=DOMAIN)], opsets=(("", 17), (DOMAIN, 1)))
    assert any("domain" in p for p in portable.portability_problems(custom))
    body = helper.make_graph([], "body", [], [])
    loop = _graph([helper.make_node("Loop", ["", ""], ["y"], body=body)])
    assert any("control flow" in p for p in portable.portability_problems(loop))
    old = _graph([helper.make_node("Relu", ["x"], ["y"])], opsets=(("", 13),))
    assert any("opset 13" in p for p in portable.portability_problems(old))
    with pytest.raises(ValueError, match="not portable"):
        portable.check_portable(custom)


# ---------------------------------------------------- plugins (TensorRT-RTX)
@pytest.fixture(scope="module")
def trt():
    return pytest.importorskip("tensorrt_rtx", reason="needs tensorrt-rtx-cu13 (in the export extra)")


def _desc(trt, dims, dtype=None, fmt=None):
    d = trt.DynamicPluginTensorDesc()
    pd = trt.PluginTensorDesc()
    pd.dims, pd.type = trt.Dims(dims), dtype or trt.DataType.FLOAT
    pd.format = fmt or trt.TensorFormat.LINEAR
    d.desc, d.min, d.opt, d.max = pd, trt.Dims(dims), trt.Dims(dims), trt.Dims(dims)
    return d


def _fields(trt, **values):
    return trt.PluginFieldCollection(
        [trt.PluginField(k, np.array([v], np.int32), trt.PluginFieldType.INT32) for k, v in values.items()]
    )


def test_es2d_plugin_methods(trt):
    from fusion_edge.export.plugins import plugin_classes

    plugin_cls, creator_cls = plugin_classes(trt.__name__)[ES2D_OP]
    creator = creator_cls()
    assert (creator.name, creator.plugin_version) == (ES2D_OP, PLUGIN_VERSION)
    assert creator.plugin_namespace == PLUGIN_NAMESPACE
    assert [f.name for f in creator.field_names] == ["d_state", "dt_rank"]
    plugin = creator.create_plugin("n", _fields(trt, d_state=16, dt_rank=2), trt.TensorRTPhase.BUILD)
    assert plugin.fields == {"d_state": 16, "dt_rank": 2} and plugin.num_outputs == 1

    # field serialisation round trip, as an engine load does it
    again = creator.create_plugin("n", plugin.get_fields_to_serialize(), trt.TensorRTPhase.RUNTIME)
    assert again.fields == plugin.fields and plugin.clone().fields == plugin.fields

    assert plugin.get_output_data_types([trt.DataType.FLOAT] * 6) == [trt.DataType.FLOAT]
    assert len(plugin.get_output_shapes([trt.DimsExprs(4)] * 6, [], None)) == 1
    d = 32
    inputs = [_desc(trt, s) for s in ([1, d, 8, 8], [4, 34, d], [4, d, 2], [4, d], [4 * d, 16], [4 * d])]
    io = [*inputs, _desc(trt, [1, d, 8, 8])]
    assert all(plugin.supports_format_combination(i, io, 6) for i in range(7))
    half = [_desc(trt, [1, d, 8, 8], trt.DataType.HALF), *io[1:]]
    assert not plugin.supports_format_combination(0, half, 6)
    vectorised = [_desc(trt, [1, d, 8, 8], fmt=trt.TensorFormat.CHW32), *io[1:]]
    assert not plugin.supports_format_combination(0, vectorised, 6)
    plugin.configure_plugin(inputs, io[-1:])
    wrong = list(inputs)
    wrong[4] = _desc(trt, [4 * d, 8])  # A_logs of another d_state
    with pytest.raises(ValueError, match="A_logs"):
        plugin.configure_plugin(wrong, io[-1:])
    with pytest.raises(ValueError, match="d_state"):
        creator.create_plugin("n", _fields(trt, dt_rank=2), trt.TensorRTPhase.BUILD)


def test_scan_plugin_methods(trt):
    from fusion_edge.export.plugins import plugin_classes

    _, creator_cls = plugin_classes(trt.__name__)[SCAN_OP]
    creator = creator_cls()
    assert creator.name == SCAN_OP and [f.name for f in creator.field_names] == ["d_state", "delta_softplus"]
    plugin = creator.create_plugin("n", _fields(trt, d_state=16, delta_softplus=1), trt.TensorRTPhase.BUILD)
    again = creator.create_plugin("n", plugin.get_fields_to_serialize(), trt.TensorRTPhase.RUNTIME)
    assert again.fields == plugin.fields == {"d_state": 16, "delta_softplus": 1}
    assert plugin.get_output_data_types([trt.DataType.FLOAT] * 7) == [trt.DataType.FLOAT]
    d, length = 64, 100
    shapes = ([1, d, length], [1, d, length], [d, 16], [1, 4, 16, length], [1, 4, 16, length], [d], [d])
    inputs = [_desc(trt, s) for s in shapes]
    io = [*inputs, _desc(trt, [1, d, length])]
    assert all(plugin.supports_format_combination(i, io, 7) for i in range(8))
    assert not plugin.supports_format_combination(0, [_desc(trt, shapes[0], trt.DataType.HALF), *io[1:]], 7)
    plugin.configure_plugin(inputs, io[-1:])
    for index, bad, match in ((2, [d, 8], "A has dims"), (3, [1, 3, 16, length], "G dividing"),
                              (6, [d + 1], "delta_bias"), (1, [1, d, length + 1], "delta alike")):
        wrong = list(inputs)
        wrong[index] = _desc(trt, bad)
        with pytest.raises(ValueError, match=match):
            plugin.configure_plugin(wrong, io[-1:])


def test_ldc_plugin_methods(trt):
    from fusion_edge.export.plugins import plugin_classes

    plugin_cls, creator_cls = plugin_classes(trt.__name__)[LDC_OP]
    plugin = creator_cls().create_plugin("n", trt.PluginFieldCollection([]), trt.TensorRTPhase.BUILD)
    assert len(plugin.get_fields_to_serialize()) == 0
    inputs = [_desc(trt, s) for s in ([1, 8, 5, 7], [8, 8, 3, 3], [8, 8, 3, 3], [8, 8], [1])]
    plugin.configure_plugin(inputs, [_desc(trt, [1, 8, 5, 7])])
    with pytest.raises(ValueError, match="base_mask"):
        plugin.configure_plugin([inputs[0], inputs[1], _desc(trt, [8, 8, 1, 1]), *inputs[3:]], inputs[:1])


def test_register_is_idempotent_and_visible_in_the_registry(trt):
    from fusion_edge.export.plugins import register

    assert register(trt) == [ES2D_OP, SCAN_OP, LDC_OP]
    assert register(trt) == [ES2D_OP, SCAN_OP, LDC_OP]
    registry = trt.get_plugin_registry()
    for name in (ES2D_OP, SCAN_OP, LDC_OP):
        assert registry.get_creator(name, PLUGIN_VERSION, PLUGIN_NAMESPACE) is not None


def test_plugins_import_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import fusion_edge.export.plugins as p, fusion_edge.export.contract as c\n"
        "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
        "print(c.ES2D_OP)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ES2D_OP


def test_missing_tensorrt_names_what_to_install(monkeypatch):
    from fusion_edge.export import trt_loader

    monkeypatch.setattr(trt_loader, "CANDIDATES", ("no_such_tensorrt", "no_such_tensorrt_rtx"))
    with pytest.raises(ImportError, match="tensorrt-rtx-cu13"):
        trt_loader.import_tensorrt()
    with pytest.raises(ValueError, match="unknown TensorRT module"):
        trt_loader.import_tensorrt(prefer="tensorrt_nope")


# ----------------------------------------------------------- atomic writes
def test_atomic_write_leaves_old_file_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "model.onnx"
    atomic.atomic_write_bytes(target, b"old")
    monkeypatch.setattr(atomic.os, "replace", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        atomic.atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_unwritable_output_folder_is_reported(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError, match="cannot write|not a folder"):
        atomic.check_writable(blocker)
    with pytest.raises(OSError, match="cannot write"):
        atomic.check_writable(blocker / "sub")


# ---------------------------------------------------------------- user errors
def _cli(args, capsys):
    code = cli_main(["export", *args])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--preset", "huge", "--height", "64", "--width", "64"], "unknown preset 'huge'"),
        (["--preset", "edge", "--random-weights", "--height", "0", "--width", "64"], "--height must be a positive"),
        (["--preset", "edge", "--random-weights", "--height", "64", "--width", "-3"], "--width must be a positive"),
        (["--checkpoint", "/nonexistent/x.pt", "--height", "64", "--width", "64"], "checkpoint not found"),
        (["--preset", "edge", "--random-weights", "--height", "64", "--width", "64", "--dynamic",
          "--min-size", "16", "16"], "minimum size of at least 32"),
    ],
)
def test_cli_errors_are_clear(args, message, tmp_path, capsys):
    code, err = _cli([*args, "-o", str(tmp_path / "out")], capsys)
    assert code == 2 and message in err
    assert not (tmp_path / "out" / "model.onnx").exists()


def test_api_needs_a_checkpoint_or_a_preset(tmp_path):
    # the CLI defaults to the packaged edge weights (test_export.py); the API asks for one of the two
    from fusion_edge.export.pipeline import ExportOptions, validate

    with pytest.raises(ValueError, match="--checkpoint PATH or --preset NAME"):
        validate(ExportOptions(output=tmp_path / "out", height=64, width=64))


def test_cli_unwritable_output(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, err = _cli(["--preset", "edge", "--random-weights", "--height", "64", "--width", "64",
                      "--parity-pairs", "0", "-o", str(blocker / "out")], capsys)
    assert code == 2 and "cannot write to output folder" in err


def test_checkpoint_of_another_preset_lists_mismatched_shapes(tmp_path):
    from fusion_edge.models import FusionMamba

    path = tmp_path / "small.pt"
    torch.save(FusionMamba(dims=[8, 16, 32, 64], depths=[2, 2, 2, 1], depths_decoder=[1, 2, 2, 2]).state_dict(), path)
    options = ExportOptions(output=tmp_path / "out", height=64, width=64, preset="edge", checkpoint=path,
                            parity_pairs=0)
    with pytest.raises(ValueError) as info:
        run_export(options)
    message = str(info.value)
    assert "does not match preset 'edge'" in message
    assert "patch_embed1.proj.weight: checkpoint (8, 1, 4, 4) vs preset (16, 1, 4, 4)" in message
    assert not (tmp_path / "out" / "model.onnx").exists()


def test_packaged_weights_export_by_name(tmp_path):
    options = ExportOptions(output=tmp_path / "out", height=64, width=64, checkpoint=Path("edge-sum"),
                            parity_pairs=0)
    run_export(options)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["model"]["checkpoint"]["file"] == "edge_sum.pt"
    assert manifest["model"]["config"].get("residual", "sum") == "sum"


def test_missing_packages_are_named(tmp_path, monkeypatch):
    import importlib.util

    from fusion_edge.export import pipeline, trt_loader

    real = importlib.util.find_spec
    monkeypatch.setattr(pipeline.importlib.util, "find_spec",
                        lambda name, *a: None if name in ("onnxruntime", "onnxruntime_extensions") else real(name, *a))
    base = dict(output=tmp_path / "o", height=64, width=64, preset="edge", random_weights=True)
    with pytest.raises(ImportError, match="pip install onnxruntime"):
        run_export(ExportOptions(**base))
    with pytest.raises(ImportError, match="onnxruntime-extensions"):
        monkeypatch.setattr(pipeline.importlib.util, "find_spec",
                            lambda name, *a: None if name == "onnxruntime_extensions" else real(name, *a))
        run_export(ExportOptions(**base, flavour="plugin"))
    monkeypatch.setattr(trt_loader, "CANDIDATES", ("no_such_tensorrt",))
    with pytest.raises(ImportError, match="pip install tensorrt"):
        run_export(ExportOptions(**base, flavour="plugin", parity_pairs=0, engine=True))


def test_plugin_engine_with_only_tensorrt_rtx_is_refused_up_front(trt, tmp_path, monkeypatch):
    from fusion_edge.export import trt_loader

    monkeypatch.setattr(trt_loader, "CANDIDATES", ("tensorrt_rtx",))
    options = ExportOptions(output=tmp_path / "o", height=64, width=64, preset="edge", random_weights=True,
                            flavour="plugin", engine=True)
    with pytest.raises(ValueError, match="cannot build plugin-flavour graphs"):
        run_export(options)


# ------------------------------------------------------ AOT (decorator API) plugin
def test_ldc_aot_entry_compiles_in_tensorrt_argument_order():
    import re

    from fusion_edge.export import plugins_aot
    from fusion_edge.kernels import loader
    from fusion_edge.kernels.launch_params import ldc_grid

    if loader.find_nvcc() is None:
        pytest.importorskip("cupy", reason="producing PTX needs nvcc or CuPy's NVRTC")
    ptx = plugins_aot.compile_aot_ptx(plugins_aot.ldc_aot_source(), 87)
    entries = re.findall(r"\.entry\s+(\w+)\s*\((.*?)\)", ptx, re.S)
    assert [name for name, _ in entries] == [plugins_aot.LDC_AOT_KERNEL]  # no other kernel in the PTX
    params = re.findall(r"\.param\s+\.(\w+)", entries[0][1])
    assert params == ["u64"] * 5 + ["u32"] * 5 + ["u64"]  # inputs, scalars, output: TensorRT's AOT order
    for shape in [(1, 16, 64, 64), (2, 20, 33, 47)]:
        assert plugins_aot.ldc_launch_geometry(*shape) == ldc_grid(*shape)


@pytest.mark.parametrize("n_states,layout", [(16, (8, 2)), (12, (8, 2)), (32, (16, 2))])
def test_scan_aot_entry_is_one_kernel_in_tensorrt_argument_order(n_states, layout):
    """PTX of the selective-scan AOT entry for the Jetson Orin (sm_87) and H100 (sm_90) targets."""
    import re

    from fusion_edge.export import plugins_aot
    from fusion_edge.kernels import launch_params, loader

    if loader.find_nvcc() is None:
        pytest.importorskip("cupy", reason="producing PTX needs nvcc or CuPy's NVRTC")
    assert launch_params.scan_layout(n_states) == layout
    for arch in (87, 90):
        ptx = plugins_aot.scan_aot_ptx(n_states, True, arch)
        assert f".target sm_{arch}" in ptx
        entries = re.findall(r"\.entry\s+(\w+)\s*\((.*?)\)", ptx, re.S)
        assert [name for name, _ in entries] == [plugins_aot.scan_aot_kernel_name(n_states)]  # nothing else
        params = re.findall(r"\.param\s+\.(\w+)", entries[0][1])
        assert params == ["u64"] * 7 + ["u32"] * 5 + ["u64"]  # 7 inputs, 5 scalars, the output
    # the launch is the launcher's plan for one chunk: its grid, and L rounded up to whole tiles
    for batch, dim, length, groups in [(1, 768, 5120, 4), (2, 128, 777, 4), (1, 6144, 80, 4), (1, 8, 1, 1)]:
        grid, block, scalars = plugins_aot.scan_launch_geometry(batch, dim, length, groups, n_states)
        assert (grid, block) == launch_params.scan_grid(batch * dim, n_states, 1)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(launch_params, "SCAN_SPLIT", False)
            chunk_len, n_chunks = launch_params.scan_chunks(batch * dim, length, n_states, 132)
        assert n_chunks == 1 and scalars == (batch, dim, length, groups, chunk_len)
    with pytest.raises(ValueError, match="d_state"):
        plugins_aot.scan_aot_source(65)


class _FakeShape(list):
    """tensorrt.plugin's shape expressions, as plain ints (their arithmetic is the same)."""


class _FakeDesc:
    def __init__(self, *dims):
        self.shape_expr = _FakeShape(dims)

    def like(self):
        return _FakeDesc(*self.shape_expr)


def _fake_decorator_api():
    """A stand-in for ``tensorrt`` + ``tensorrt.plugin`` that records what register_aot declares."""
    import types

    trtp = types.ModuleType("tensorrt.plugin")
    trtp.registered, trtp.aot = {}, {}
    trtp.TensorDesc = _FakeDesc
    trtp.SymExprs = list
    trtp.KernelLaunchParams = lambda: types.SimpleNamespace(grid_x=1, grid_y=1, grid_z=1, block_x=1, block_y=1,
                                                            block_z=1, shared_mem=0)
    trtp.SymIntExprs = lambda n: [None] * n
    trtp.SymInt32 = lambda value: ("i32", value)
    trtp.register = lambda plugin_id: (lambda fn: trtp.registered.setdefault(plugin_id, fn))
    trtp.aot_impl = lambda plugin_id: (lambda fn: trtp.aot.setdefault(plugin_id, fn))
    trt = types.ModuleType("tensorrt")
    trt.__version__, trt.plugin = "10.13-stand-in", trtp
    return trt, trtp


def test_aot_plugins_through_a_stand_in_decorator_api(monkeypatch):
    """register_aot's declarations and AOT implementations, called as TensorRT calls them. (The real
    decorator API is in full TensorRT only, which cannot be installed here.)"""
    import re

    from fusion_edge.export import plugins_aot
    from fusion_edge.kernels import launch_params, loader

    if loader.find_nvcc() is None:
        pytest.importorskip("cupy", reason="producing PTX needs nvcc or CuPy's NVRTC")
    trt, trtp = _fake_decorator_api()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "tensorrt.plugin", trtp)
    monkeypatch.setattr(plugins_aot, "_REGISTERED", set())
    scan_id, ldc_id = f"{PLUGIN_NAMESPACE}::{SCAN_OP}", f"{PLUGIN_NAMESPACE}::{LDC_OP}"
    assert plugins_aot.register_aot(arch=87) == sorted([scan_id, ldc_id])
    assert plugins_aot.register_aot(arch=87) == sorted([scan_id, ldc_id])  # idempotent
    assert set(trtp.registered) == set(trtp.aot) == {scan_id, ldc_id}

    u, B = _FakeDesc(2, 256, 777), _FakeDesc(2, 4, 16, 777)
    descs = (u, _FakeDesc(2, 256, 777), _FakeDesc(256, 16), B, _FakeDesc(2, 4, 16, 777), _FakeDesc(256),
             _FakeDesc(256))
    assert trtp.registered[scan_id](*descs, 16, 1).shape_expr == [2, 256, 777]
    name, ptx, params, extra = trtp.aot[scan_id](*descs, 16, 1, (u.like(),), 0)
    assert name == plugins_aot.scan_aot_kernel_name(16, True)
    assert re.findall(r"\.entry\s+(\w+)", ptx) == [name] and ".target sm_87" in ptx
    grid, block = launch_params.scan_grid(2 * 256, 16, 1)
    assert (params.grid_x, params.grid_y, params.grid_z, params.block_x) == (*grid, block[0])
    assert params.shared_mem == 0
    assert extra == [("i32", v) for v in (2, 256, 777, 4, 832)]  # batch, dim, L, groups, L in whole tiles

    x, w = _FakeDesc(1, 8, 33, 47), _FakeDesc(8, 8, 3, 3)
    ldc_descs = (x, w, _FakeDesc(8, 8, 3, 3), _FakeDesc(8, 8), _FakeDesc(1))
    name, ptx, params, extra = trtp.aot[ldc_id](*ldc_descs, (x.like(),), 0)
    assert name == plugins_aot.LDC_AOT_KERNEL and re.findall(r"\.entry\s+(\w+)", ptx) == [name]
    assert (params.grid_x, params.grid_y, params.grid_z) == launch_params.ldc_grid(1, 8, 33, 47)[0]
    assert extra == [("i32", v) for v in (1, 8, 8, 33, 47)]


def test_aot_and_scan_node_options_are_checked_up_front(tmp_path):
    base = dict(output=tmp_path / "o", height=64, width=64, preset="edge", random_weights=True)
    with pytest.raises(ValueError, match="plugin flavour"):
        run_export(ExportOptions(**base, scan_node="selective_scan"))
    with pytest.raises(ValueError, match="unknown scan node"):
        run_export(ExportOptions(**base, flavour="plugin", scan_node="fused"))
    with pytest.raises(ValueError, match="three kernels"):
        run_export(ExportOptions(**base, flavour="plugin", engine=True, aot_plugins=True))
    with pytest.raises(ValueError, match="--engine"):
        run_export(ExportOptions(**base, flavour="plugin", scan_node="selective_scan", aot_plugins=True))
    assert not (tmp_path / "o").exists()


def test_aot_registration_needs_the_decorator_api():
    import importlib.util

    from fusion_edge.export import plugins_aot

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("full TensorRT is installed here")
    with pytest.raises(ImportError, match="TensorRT 10.9 or newer"):
        plugins_aot.register_aot()
