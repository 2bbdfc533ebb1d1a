"""The CUDA sources build for every GPU we ship to, and the loader fails clearly without one (no GPU needed).

Targets: sm_72 / sm_87 (Jetson Xavier / Orin), sm_86, sm_89, sm_120 (RTX), sm_90 (H100).
CUDA 13's nvcc no longer targets sm_72; that target is then built with NVRTC 12 (the
compiler the loader uses on a Jetson), from `pip install nvidia-cuda-nvrtc-cu12`.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import math
import subprocess
import sys
import types
from pathlib import Path

import pytest
from fusion_edge.kernels import loader

from fusion_edge import kernels

ARCHS = ("sm_72", "sm_87", "sm_86", "sm_89", "sm_90", "sm_120")
# Per family, the entry points built for every target in the fast test: the model's
# configuration and the largest one (most states, bfloat16).
REPRESENTATIVE = {
    "selective_scan": ("fe_selective_scan_fwd_f16_f16_n16", "fe_selective_scan_states_f16_f16_n16",
                       "fe_selective_scan_fwd_bf16_f32_n64", "fe_selective_scan_lanes_fwd_f16_f16_l4",
                       "fe_selective_scan_lanes_states_f16_f16_l1", "fe_selective_scan_lanes_fwd_bf16_f32_l8",
                       "fe_selective_scan_time_fwd_f16_f16", "fe_selective_scan_time_states_bf16_f32"),
    "selective_scan_bwd": ("fe_selective_scan_bwd_prep_f16_f16_n16", "fe_selective_scan_bwd_f16_f16_n16",
                           "fe_selective_scan_bwd_f32_f32_n16", "fe_selective_scan_bwd_bf16_f32_n64"),
    "es2d": ("fe_es2d_project_f16", "fe_es2d_scan_f16_n16", "fe_es2d_states_f16_n16", "fe_es2d_scan_bf16_n64",
             "fe_es2d_lanes_scan_f16_l4", "fe_es2d_lanes_states_f32_l2", "fe_es2d_lanes_scan_bf16_l8",
             "fe_es2d_time_scan_f16", "fe_es2d_time_states_bf16", "fe_es2d_merge_f16", "fe_es2d_merge_bf16",
             "fe_es2d_split_f32", "fe_es2d_conv_split_f16_t16", "fe_es2d_conv_split_cross_bf16_t8"),
    "ldc": ("fe_ldc_conv2d_f16", "fe_ldc_conv2d_bf16"),
    "norm": ("fe_ln_pool_f32_k4", "fe_ln_pool_f16_k1", "fe_ln_pool_bf16_k2", "fe_ln_pool_sum_bf16"),
}


@functools.cache
def nvcc_archs(nvcc: str) -> frozenset[int]:
    out = subprocess.run([nvcc, "--list-gpu-arch"], capture_output=True, text=True).stdout
    return frozenset(int(a.split("_")[1]) for a in out.split() if a.startswith("compute_"))


@functools.cache
def nvrtc12() -> ctypes.CDLL | None:
    try:
        import nvidia.cuda_nvrtc as pkg
    except ImportError:
        return None
    for folder in pkg.__path__:
        for lib in sorted(glob.glob(str(Path(folder) / "lib" / "libnvrtc.so.12*"))):
            return ctypes.CDLL(lib)
    return None


def nvrtc_cubin(lib: ctypes.CDLL, source: str, cc: int, defines: list[str]) -> bytes:
    """Compile with NVRTC straight to a cubin (what the loader does on the device)."""
    prog = ctypes.c_void_p()
    assert lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), b"k.cu", 0, None, None) == 0
    opts = [b"--std=c++17", f"--gpu-architecture=sm_{cc}".encode(), *(d.encode() for d in defines)]
    arr = (ctypes.c_char_p * len(opts))(*opts)
    status = lib.nvrtcCompileProgram(prog, len(opts), arr)
    size = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetProgramLog(prog, log)
    assert status == 0, log.value.decode()
    lib.nvrtcGetCUBINSize(prog, ctypes.byref(size))
    cubin = ctypes.create_string_buffer(size.value)
    assert lib.nvrtcGetCUBIN(prog, cubin) == 0
    lib.nvrtcDestroyProgram(ctypes.byref(prog))
    return cubin.raw


def build(family: str, arch: str, defines: list[str], tmp_path: Path) -> bytes:
    cc = loader.normalize_arch(arch)
    nvcc = loader.find_nvcc()
    if nvcc is None:
        pytest.skip("nvcc is not installed (the CUDA toolkit's compiler); cannot test the kernel builds")
    if cc not in nvcc_archs(nvcc):
        lib = nvrtc12()
        if lib is None:
            pytest.skip(f"this nvcc cannot target {arch} (CUDA 13 dropped it) and NVRTC 12 is absent "
                        "(pip install nvidia-cuda-nvrtc-cu12)")
        return nvrtc_cubin(lib, kernels.kernel_source(family), cc, defines)
    out = tmp_path / f"{family}_{arch}.cubin"
    cmd = [nvcc, "-cubin", "-std=c++17", f"-arch={arch}", *defines, "-o", str(out), str(loader.family_path(family))]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return out.read_bytes()


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("family", sorted(kernels.FAMILIES))
def test_kernels_build_for_every_target(family, arch, tmp_path):
    cubin = build(family, arch, [f"-DFE_ONLY_{name}" for name in REPRESENTATIVE[family]], tmp_path)
    assert cubin[:4] == b"\x7fELF"
    for name in REPRESENTATIVE[family]:
        assert name.encode() in cubin


@pytest.mark.slow
@pytest.mark.parametrize("arch", ("sm_72", "sm_87", "sm_90"))
@pytest.mark.parametrize("family", sorted(kernels.FAMILIES))
def test_all_entry_points_build(family, arch, tmp_path):
    cubin = build(family, arch, ["-DFE_ALL_KERNELS"], tmp_path)
    for name in kernels.kernel_names(family):
        assert name.encode() in cubin


def test_sources_are_self_contained_and_list_their_entry_points():
    assert set(REPRESENTATIVE) == set(kernels.FAMILIES)
    for family in kernels.FAMILIES:
        source = kernels.kernel_source(family)
        assert "#include" not in source
        names = kernels.kernel_names(family)
        assert set(REPRESENTATIVE[family]) <= set(names)
        for name in names:
            assert 'extern "C" __global__' in source and name in source
    # 5 type pairs x 2 passes x (4 state counts of the split core + 4 layouts of the lane-major core + the
    # time-parallel core)
    assert len(kernels.kernel_names("selective_scan")) == 90
    # 3 dtypes x (2 projection widths + 2 passes x (4 split-core + 4 lane-major + 1 time-parallel scans)
    # + the merge of route rows and its inverse, the split, and the conv split for one input or two in two
    # tile sizes, and the merge-norm for the SS2D gate or the CMFM's)
    assert len(kernels.kernel_names("es2d")) == 3 * 2 + 3 * 2 * (4 + 4 + 1) + 3 * 2 + 3 * 2 * 2 + 3 * 2
    assert "fe_es2d_delta" not in kernels.kernel_names("es2d")
    assert len(kernels.kernel_names("selective_scan_bwd")) == 30  # 5 type pairs x 3 state counts x 2 passes


def test_compile_ptx_has_every_entry_point():
    if loader.find_nvcc() is None:
        pytest.skip("nvcc is not installed and CuPy's NVRTC is not either")
    ptx = kernels.compile_ptx("ldc", "sm_87")
    assert ".target sm_87" in ptx
    for name in kernels.kernel_names("ldc"):
        assert f".entry {name}" in ptx


def test_normalize_arch():
    assert loader.normalize_arch("sm_87") == loader.normalize_arch("compute_87") == loader.normalize_arch(87) == 87
    assert loader.normalize_arch("8.7") == 87
    with pytest.raises(ValueError, match="architecture"):
        loader.normalize_arch("turing")
    with pytest.raises(ValueError, match="unknown kernel family"):
        kernels.kernel_source("conv")


@pytest.fixture
def no_cupy(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy -> ImportError
    loader._check_device.cache_clear()
    yield
    loader._check_device.cache_clear()


def test_missing_cupy_is_a_clear_error(no_cupy):
    assert not kernels.is_available()
    with pytest.raises(kernels.KernelError, match="CuPy is not installed.*pip install cupy"):
        kernels.ensure_available()


def test_missing_gpu_is_a_clear_error(monkeypatch):
    class NoDevice(RuntimeError):
        pass

    def get_device_count():
        raise NoDevice("cudaErrorNoDevice: no CUDA-capable device is detected")

    fake = types.ModuleType("cupy")
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=get_device_count))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    loader._check_device.cache_clear()
    try:
        with pytest.raises(kernels.KernelError, match="no usable CUDA GPU.*no CUDA-capable device"):
            kernels.ensure_available()
        fake.cuda.runtime.getDeviceCount = lambda: 0
        with pytest.raises(kernels.KernelError, match="no CUDA GPU is visible"):
            kernels.ensure_available()
    finally:
        loader._check_device.cache_clear()


def test_launch_without_cupy_raises_kernel_error(no_cupy):
    u = kernels.DeviceArray(1 << 20, (1, 4, 8), "float32")
    A = kernels.DeviceArray(1 << 21, (4, 16), "float32")
    BC = kernels.DeviceArray(1 << 22, (1, 1, 16, 8), "float32")
    out = kernels.DeviceArray(1 << 23, (1, 4, 8), "float32")
    with pytest.raises(kernels.KernelError, match="CuPy is not installed"):
        kernels.launch_selective_scan(u, u, A, BC, BC, out=out)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(delta=kernels.DeviceArray(1, (1, 4, 9), "float32")), r"delta must have shape \(1, 4, 8\)"),
        (dict(A=kernels.DeviceArray(1, (4, 65), "float32")), "N=65 states"),
        (dict(B=kernels.DeviceArray(1, (1, 3, 16, 8), "float32")), "3 groups, which must divide dim=4"),
        (dict(C=kernels.DeviceArray(1, (1, 1, 16, 8), "float16")), "C must be float32"),
        (dict(D=kernels.DeviceArray(1, (5,), "float32")), r"D must have shape \(4,\)"),
        (dict(u=kernels.DeviceArray(1, (1, 4, 8), "float64")), "unsupported element type"),
    ],
)
def test_launch_checks_arguments_before_touching_the_gpu(change, message):
    args = dict(
        u=kernels.DeviceArray(1, (1, 4, 8), "float32"),
        delta=kernels.DeviceArray(1, (1, 4, 8), "float32"),
        A=kernels.DeviceArray(1, (4, 16), "float32"),
        B=kernels.DeviceArray(1, (1, 1, 16, 8), "float32"),
        C=kernels.DeviceArray(1, (1, 1, 16, 8), "float32"),
        D=None,
    )
    args.update(change)
    with pytest.raises(ValueError, match=message):
        kernels.launch_selective_scan(**args, out=kernels.DeviceArray(1, (1, 4, 8), "float32"))


def test_es2d_and_ldc_check_arguments():
    f32 = "float32"
    x = kernels.DeviceArray(1, (1, 8, 5, 6), "float16")
    with pytest.raises(ValueError, match=r"x_proj_weight must have shape \(4, 34, 8\)"):
        kernels.launch_es2d_scan(x, kernels.DeviceArray(1, (4, 33, 8), f32), kernels.DeviceArray(1, (4, 8, 2), f32),
                                 kernels.DeviceArray(1, (4, 8), f32), kernels.DeviceArray(1, (32, 16), f32),
                                 kernels.DeviceArray(1, (32,), f32))
    rest = (kernels.DeviceArray(1, (4, 8, 2), f32), kernels.DeviceArray(1, (4, 8), f32),
            kernels.DeviceArray(1, (32, 16), f32), kernels.DeviceArray(1, (32,), f32))
    with pytest.raises(ValueError, match=r"proj must have shape \(1, 4, 34, 9\)"):
        kernels.launch_es2d_scan(x, None, *rest, proj=kernels.DeviceArray(1, (1, 4, 34, 8), f32))
    with pytest.raises(ValueError, match="give x_proj_weight"):
        kernels.launch_es2d_scan(x, None, *rest)
    with pytest.raises(ValueError, match=r"delta must have shape \(1, 4, 8, 9\)"):
        kernels.launch_es2d_scan(x, None, *rest, proj=kernels.DeviceArray(1, (1, 4, 34, 9), f32),
                                 delta=kernels.DeviceArray(1, (1, 4, 8, 8), f32))
    # channels-last: x (1, 5, 6, 8) is the buffer of an 8-channel 5x6 map, so the same weights fit it ...
    x_last = kernels.DeviceArray(1, (1, 5, 6, 8), "float16")
    with pytest.raises(ValueError, match=r"delta must have shape \(1, 4, 8, 9\)"):
        kernels.launch_es2d_scan(x_last, None, *rest, proj=kernels.DeviceArray(1, (1, 4, 34, 9), f32),
                                 delta=kernels.DeviceArray(1, (1, 4, 8, 8), f32), channels_last=True)
    # ... and out must be that buffer's shape too; read as planes, the same x has 5 channels
    with pytest.raises(ValueError, match=r"out must have shape \(1, 5, 6, 8\)"):
        kernels.launch_es2d_scan(x_last, None, *rest, out=kernels.DeviceArray(1, (1, 8, 5, 6), f32),
                                 proj=kernels.DeviceArray(1, (1, 4, 34, 9), f32), channels_last=True)
    with pytest.raises(ValueError, match=r"dt_projs_weight must have shape \(4, 5, 2\)"):
        kernels.launch_es2d_scan(x_last, None, *rest, proj=kernels.DeviceArray(1, (1, 4, 34, 9), f32))
    with pytest.raises(ValueError, match=r"weight must be \(Cout, Cin=8, 3, 3\)"):
        kernels.launch_ldc_conv2d(x, kernels.DeviceArray(1, (4, 8, 5, 5), f32),
                                  kernels.DeviceArray(1, (4, 8, 3, 3), f32), kernels.DeviceArray(1, (4, 8), f32),
                                  kernels.DeviceArray(1, (1,), f32))
    # route length 3*3: projections 4*34*9 floats (4896 B -> 5120); no delta array, not chunked
    assert kernels.es2d_workspace_bytes(1, 8, 5, 6, 2, 16, sm_count=132) == 5120
    # projections given by the caller: nothing left to hold for one chunk
    assert kernels.es2d_workspace_bytes(1, 8, 5, 6, 2, 16, sm_count=132, projected=True) == 0


def entry_params(family: str, macro: str) -> list[tuple[str, str]]:
    """(kind, name) of each parameter of the kernel an entry-point macro defines; kind "ptr", "int" or "float"."""
    source = kernels.kernel_source(family)
    text = source[source.index(f"#define {macro}("):]
    text = text[text.index("NAME(") + len("NAME("):text.index(") {")].replace("\\", " ")
    params = []
    for param in text.split(","):
        words = param.replace("*", " * ").split()
        assert "*" in words or words[0] in ("int", "float"), param
        params.append(("ptr" if "*" in words else words[0], words[-1]))
    return params


@pytest.mark.parametrize("dtype, cross", [("float16", False), ("float32", True), ("bfloat16", True)])
def test_es2d_merge_norm_launch_matches_the_kernel_signature(monkeypatch, dtype, cross):
    """Without a GPU: launch_es2d_merge_norm passes the kernel's parameters in order and kind (eps a float32),
    z's pixel pitch, the positions a block stages and the grid that covers the route; a z of the wrong shape
    or type, and a layer too wide for a block, are named."""
    import numpy as np
    from fusion_edge.kernels import launch
    from fusion_edge.kernels import launch_params as lp

    calls = []
    monkeypatch.setattr(launch, "run", lambda family, name, grid, block, args, **kw: calls.append((name, grid,
                                                                                                   block, args)))
    monkeypatch.setattr(launch, "sm_count", lambda device: 132)
    monkeypatch.setattr(launch, "current_device", lambda: 0)
    batch, d, h, w = 2, 768, 31, 41
    length = 16 * 21

    def arr(ptr, shape, dt=dtype):
        return kernels.DeviceArray(ptr, shape, dt, 0)

    out = kernels.launch_es2d_merge_norm(arr(1000, (batch, 4 * d, length)), arr(2000, (batch, h, w, 2 * d)),
                                         arr(3000, (d,)), arr(4000, (d,)), arr(5000, (batch, h, w, d)), h=h, w=w,
                                         eps=1e-5, cross=cross)
    assert out.ptr == 5000
    [(name, grid, block, args)] = calls
    code = {"float16": "f16", "float32": "f32", "bfloat16": "bf16"}[dtype]
    assert name == f"fe_es2d_merge_norm{'_cross' if cross else ''}_{code}" and name in kernels.kernel_names("es2d")
    params = entry_params("es2d", "FE_ES2D_MERGE_NORM_ENTRY")
    assert len(args) == len(params)
    for (kind, pname), value in zip(params, args):
        assert isinstance(value, {"ptr": np.uint64, "int": np.int32, "float": np.float32}[kind]), (pname, value)
    named = {pname: value for (_, pname), value in zip(params, args)}
    itemsize = 2 if dtype != "float32" else 4
    positions = lp.es2d_merge_norm_plan(batch, d, length, itemsize, False, 132)
    assert (named["zps"], named["P"], named["D"], named["vec"]) == (2 * d, positions, d, 0)  # 8-byte aligned
    # 16 (float32: 8) positions fit, but 8 give the GPU's 132 SMs two blocks each
    assert positions == 8 and named["eps"] == np.float32(1e-5)
    assert grid == (math.ceil(length / positions), batch * 4, 1) and block == (lp.ES2D_NORM_WARPS * 32, 1, 1)
    calls.clear()  # 16-byte aligned arrays: the 16-byte form for 16-bit types
    kernels.launch_es2d_merge_norm(arr(1024, (batch, 4 * d, length)), arr(2048, (batch, h, w, 2 * d)),
                                   arr(3072, (d,)), arr(4096, (d,)), arr(5120, (batch, h, w, d)), h=h, w=w, eps=1e-5)
    named = {pname: value for (_, pname), value in zip(params, calls[0][3])}
    assert named["vec"] == int(dtype != "float32")
    assert named["P"] == lp.es2d_merge_norm_plan(batch, d, length, itemsize, bool(named["vec"]), 132)
    for bad in (3, 64, 4 if named["vec"] else 0):
        with pytest.raises(ValueError, match=f"positions must be a power of two .* got {bad}"):
            kernels.launch_es2d_merge_norm(arr(1024, (batch, 4 * d, length)), arr(2048, (batch, h, w, 2 * d)),
                                           arr(3072, (d,)), arr(4096, (d,)), h=h, w=w, eps=1e-5, positions=bad)
    with pytest.raises(ValueError, match=r"z must be \(batch, h, w, P\) = \(2, 31, 41, >= 768\)"):
        kernels.launch_es2d_merge_norm(arr(1000, (batch, 4 * d, length)), arr(2000, (batch, h, w, d - 1)),
                                       arr(3000, (d,)), arr(4000, (d,)), h=h, w=w, eps=1e-5)
    with pytest.raises(ValueError, match="z must be"):
        other = "float32" if dtype != "float32" else "float16"
        kernels.launch_es2d_merge_norm(arr(1000, (batch, 4 * d, length)), arr(2000, (batch, h, w, d), other),
                                       arr(3000, (d,)), arr(4000, (d,)), h=h, w=w, eps=1e-5)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_ln_pool_launch_matches_the_kernel_signatures(monkeypatch, dtype):
    """Without a GPU: launch_ln_pool runs the pass (the entry point of the row's words a lane) and then the sum,
    each with its kernel's parameters in order and kind, the pass's blocks covering the rows and the sum reading
    what the pass wrote; weights of the wrong shape and a short workspace are named."""
    import numpy as np
    from fusion_edge.kernels import launch
    from fusion_edge.kernels import launch_params as lp

    calls = []
    monkeypatch.setattr(launch, "run", lambda family, name, grid, block, args, **kw: calls.append((name, grid,
                                                                                                   block, args)))
    monkeypatch.setattr(launch, "sm_count", lambda device: 132)
    monkeypatch.setattr(launch, "current_device", lambda: 0)
    itemsize = 4 if dtype == "float32" else 2
    code = {"float16": "f16", "float32": "f32", "bfloat16": "bf16"}[dtype]
    batch, h, w, c = 2, 32, 40, 384

    def arr(ptr, shape, dt=dtype):
        return kernels.DeviceArray(ptr, shape, dt, 0)

    floats = kernels.ln_pool_workspace_floats((batch, h, w, c), itemsize, 132, True)
    kernels.launch_ln_pool(arr(1024, (batch, h, w, c)), arr(2048, (batch, 2, c)), weight=arr(4096, (c,)),
                           eps=1e-5, with_raw=True, workspace=arr(8192, (floats,), "float32"))
    [(pass_name, grid, block, args), (sum_name, sum_grid, sum_block, sum_args)] = calls
    chunks = {2: 2, 4: 4}[itemsize]  # 48 (float32: 96) 16-byte words a row: 2 (4) a lane
    assert pass_name == f"fe_ln_pool_{code}_k{chunks}" and pass_name in kernels.kernel_names("norm")
    assert sum_name == f"fe_ln_pool_sum_{code}" and sum_name in kernels.kernel_names("norm")
    for entry, values in (("FE_LN_POOL_ENTRY", args), ("FE_LN_POOL_SUM_ENTRY", sum_args)):
        params = entry_params("norm", entry)
        assert len(params) == len(values)
        for (kind, pname), value in zip(params, values):
            assert isinstance(value, {"ptr": np.uint64, "int": np.int32, "float": np.float32}[kind]), (pname, value)
    named = dict(zip((p for _, p in entry_params("norm", "FE_LN_POOL_ENTRY")), args))
    summed = dict(zip((p for _, p in entry_params("norm", "FE_LN_POOL_SUM_ENTRY")), sum_args))
    blocks = grid[0]
    assert grid == (blocks, batch, 1) and block == (lp.LN_POOL_THREADS, 1, 1)
    assert named["rows_per_block"] * blocks >= h * w > named["rows_per_block"] * (blocks - 1)
    assert (named["x"], named["part"], named["P"], named["C"], named["with_raw"]) == (1024, 8192, h * w, c, 1)
    assert floats == batch * blocks * 2 * c
    assert (summed["part"], summed["weight"], summed["bias"], summed["out"]) == (8192, 4096, 0, 2048)
    assert (summed["blocks"], summed["kinds"], summed["C"]) == (blocks, 2, c)
    assert sum_grid == (math.ceil(2 * c / 32), batch, 1) and sum_block == (lp.LN_POOL_SUM_THREADS, 1, 1)
    with pytest.raises(ValueError, match="weight must have shape"):
        kernels.launch_ln_pool(arr(1024, (batch, h, w, c)), arr(2048, (batch, 1, c)), weight=arr(4096, (c - 8,)),
                               eps=1e-5)
    with pytest.raises(ValueError, match="workspace must be float32 with at least"):
        kernels.launch_ln_pool(arr(1024, (batch, h, w, c)), arr(2048, (batch, 2, c)), eps=1e-5, with_raw=True,
                               workspace=arr(8192, (floats - 1,), "float32"))


def test_ln_pool_plan_gives_small_maps_short_chains():
    """The pass's plan: the fewest words a lane that cover a row (sub-warp groups for narrow rows), whole row
    units a warp, one unit a warp where the GPU has warps to spare (small maps: the pass waits on latency), more
    on maps larger than the GPU's warps, and never fewer rows a block than LN_POOL_MIN_ROWS."""
    from fusion_edge.kernels import launch_params as lp

    assert [lp.ln_pool_chunks(c, 2) for c in (8, 16, 96, 192, 256, 384, 768, 1024)] == [
        (1, 1), (1, 2), (1, 16), (1, 32), (1, 32), (2, 32), (4, 32), (4, 32)]
    assert lp.ln_pool_chunks(512, 4) == (4, 32) and lp.ln_pool_max_channels(4) == 512
    with pytest.raises(ValueError, match="wider than 1024"):
        lp.ln_pool_chunks(1032, 2)
    warps = lp.LN_POOL_THREADS // 32
    for batch, rows, c in ((1, 320, 128), (2, 1280, 384), (1, 320, 768), (2, 20480, 96), (2, 20480, 16),
                           (1, 1, 8), (3, 7, 136)):
        _, width = lp.ln_pool_chunks(c, 2)
        unit = 32 // width
        blocks = lp.ln_pool_blocks(batch, rows, c, 2, 132)
        per_block = lp.ln_pool_rows_per_block(rows, blocks)
        assert blocks * per_block >= rows and per_block >= min(rows, lp.LN_POOL_MIN_ROWS)
        units_a_warp = math.ceil(per_block / unit / warps)
        spare = math.ceil(rows / unit) * batch <= lp.LN_POOL_WARPS_PER_SM * 132
        assert units_a_warp == max(1, math.ceil(lp.LN_POOL_MIN_ROWS / unit / warps)) if spare else units_a_warp > 1
    assert lp.ln_pool_blocks(1, 320, 128, 2, 132) == 40  # edge's stage-4 map: a unit (two rows) a warp


def test_merge_norm_tiles_fit_the_block():
    """The D x P tile of a merge-norm block (P + 2 elements a channel at 16 bits, P + 1 at 32) fits its shared
    memory, with P the largest power of two that does (at most 32), and 0 where one position does not."""
    from fusion_edge.kernels import launch_params as lp

    for itemsize, pad in ((2, 2), (4, 1)):
        for d in (1, 16, 96, 192, 384, 768, 1536, 3072, 5461, 9000):
            p = lp.es2d_merge_norm_positions(d, itemsize)
            assert p == 0 or d * (p + pad) * itemsize <= lp.ES2D_NORM_SMEM_BYTES
            assert p == lp.ES2D_NORM_MAX_POSITIONS or d * (max(2 * p, 1) + pad) * itemsize > lp.ES2D_NORM_SMEM_BYTES
    assert [lp.es2d_merge_norm_positions(d, 2) for d in (192, 384, 768, 1536)] == [32, 32, 16, 8]
    assert lp.es2d_merge_norm_positions(9000, 2) == 0
    # the 16-byte form: a P x D tile, P at least 8 (one 16-byte run of each row)
    assert [lp.es2d_merge_norm_positions(d, 2, vectorized=True) for d in (192, 384, 768, 1536, 2048, 4096)] == [
        32, 32, 16, 8, 8, 0]
    assert [lp.es2d_merge_norm_vectorized(d, 2, 5120, 2 * d) for d in (192, 1536, 1544, 100)] == [
        True, True, False, False]
    assert not lp.es2d_merge_norm_vectorized(192, 4, 5120, 384) and not lp.es2d_merge_norm_vectorized(192, 2, 30, 384)
    # every width the 16-byte form takes has a tile that fits (the launcher relies on it)
    assert all(lp.es2d_merge_norm_positions(d, 2, vectorized=True) >= 8 for d in range(8, 4096, 8)
               if lp.es2d_merge_norm_vectorized(d, 2, 5120, 2 * d))
    # fewer positions a block where the most that fit leave the GPU short of blocks (132 SMs: 264 wanted)
    plan = functools.partial(lp.es2d_merge_norm_plan, itemsize=2, vectorized=True, sm_count=132)
    assert [plan(1, 192, 5120), plan(2, 384, 1280), plan(1, 384, 1280), plan(1, 768, 320), plan(2, 1536, 80)] == [
        32, 32, 16, 8, 8]
    assert lp.es2d_merge_norm_plan(1, 1536, 80, 2, False, 132) == 1  # the other form goes down to one position


@pytest.mark.parametrize("override, chunked, given, channels_last", [
    ((4, 3), True, "", False), ((2, 1), False, "", False), ((0, 2), True, "", False), ((0, 1), False, "", False),
    ((4, 3), True, "proj", False), ((0, 1), False, "proj", False), ((4, 3), True, "delta", False),
    ((0, 2), True, "delta", False), ((4, 3), True, "", True), ((0, 1), False, "proj", True)])
def test_es2d_launches_match_the_kernel_signatures(monkeypatch, override, chunked, given, channels_last):
    """Without a GPU: the fused ES2D op launches the projection and the scan passes (no delta kernel) with
    arguments that match the kernels' C parameters, on both cores, chunked or not; with the projections
    given (``proj=``) the projection kernel is skipped and the scan reads them, and with delta given as
    well the scan gets its pointer (null otherwise: the scan forms delta itself). ``channels_last``: x and
    out are (batch, h, w, D) buffers, the sizes passed on are the same and every kernel is told so."""
    import numpy as np
    from fusion_edge.kernels import launch
    from fusion_edge.kernels import launch_params as lp

    calls = []
    monkeypatch.setattr(launch, "run", lambda family, name, grid, block, args, **kw: calls.append((name, args)))
    monkeypatch.setattr(launch, "sm_count", lambda device: 132)
    monkeypatch.setattr(launch, "current_device", lambda: 0)
    monkeypatch.setattr(launch, "memset_async", lambda *args, **kw: None)
    monkeypatch.setattr(lp, "SCAN_OVERRIDE", override)
    monkeypatch.setattr(lp, "SCAN_MIN_CHUNK", 64)  # the split core chunks this short route too
    batch, d, h, w, rank, n = 1, 16, 37, 50, 6, 16
    length = 19 * 25

    def arr(ptr, shape, dtype="float32"):
        return kernels.DeviceArray(ptr, shape, dtype, 0)

    need = kernels.es2d_workspace_bytes(batch, d, h, w, rank, n, sm_count=132, projected=bool(given))
    assert (need > 0) == (chunked or not given)
    ws, dtw = arr(1 << 32, (need,), "uint8"), arr(1 << 28, (4, d, rank))
    proj = arr(1 << 30, (batch, 4, rank + 2 * n, length)) if given else None
    delta = arr(1 << 31, (batch, 4, d, length)) if given == "delta" else None
    layout = (batch, h, w, d) if channels_last else (batch, d, h, w)
    kernels.launch_es2d_scan(arr(1 << 20, layout, "float16"),
                             None if given else arr(1 << 24, (4, rank + 2 * n, d)), dtw,
                             arr(1 << 25, (4, d)), arr(1 << 26, (4 * d, n)), arr(1 << 27, (4 * d,)),
                             arr(1 << 29, layout), workspace=ws, proj=proj, delta=delta, channels_last=channels_last)
    lanes = override[0]
    scan, states = (f"fe_es2d_lanes_scan_f16_l{lanes}", f"fe_es2d_lanes_states_f16_l{lanes}") if lanes else (
        "fe_es2d_scan_f16_n16", "fe_es2d_states_f16_n16")
    project = [] if given else ["fe_es2d_project_f16"]
    assert [name for name, _ in calls] == [*project, *([states] if chunked else []), scan]
    assert all(name in kernels.kernel_names("es2d") for name, _ in calls)
    proj_end = ws.ptr + (0 if given else 4 * batch * 4 * (rank + 2 * n) * length)
    for name, args in calls:
        macro = "FE_ES2D_PROJECT_ENTRY" if "project" in name else (
            "FE_ES2D_LANES_ENTRY" if lanes else "FE_ES2D_SCAN_ENTRY")
        params = entry_params("es2d", macro)
        assert len(args) == len(params), (name, len(args), params)
        for (kind, pname), value in zip(params, args):
            assert isinstance(value, np.uint64 if kind == "ptr" else np.int32), (name, pname, type(value))
        values = {pname: int(value) for (_, pname), value in zip(params, args)}
        assert values["channels_last"] == int(channels_last) and (values["D"], values["h"], values["w"]) == (d, h, w)
        if "project" in name:
            continue
        assert values["dt_projs_weight"] == dtw.ptr and values["proj"] == (proj.ptr if given else ws.ptr)
        assert values["delta"] == (delta.ptr if delta is not None else 0)
        assert (values["R"], values["N"], values["D"], values["h"], values["w"]) == (rank, n, d, h, w)
        assert values["n_chunks"] > 1 if chunked else values["n_chunks"] == 1
        assert (values["n_chunks"] - 1) * values["chunk_len"] < length <= values["n_chunks"] * values["chunk_len"]
        if chunked:  # chunk states and sums lie in the workspace, after the projections (when it holds them)
            assert proj_end <= values["states"] < values["dsums"] < ws.ptr + need


def test_long_scans_with_few_channels_are_chunked():
    from fusion_edge.kernels import launch_params as lp

    # the paper preset's stage 1 at 512x640, batch 1: 768 channels leave an H100 mostly idle
    plan = lp.scan_lane_plan(768, 5120, 16, sm_count=132, per_group=192)
    assert plan.lanes in lp.SCAN_LANES and plan.n_chunks > 1
    assert plan.chunk_len % lp.SCAN_LANES_TILE[plan.lanes] == 0
    assert (plan.n_chunks - 1) * plan.chunk_len < 5120 <= plan.n_chunks * plan.chunk_len
    wide = lp.scan_lane_plan(8 * 768, 5120, 16, sm_count=132, per_group=192)  # batch 8: more channels, fewer chunks
    assert wide.n_chunks <= plan.n_chunks
    assert lp.scan_plan(4, 20, 16, sm_count=132, per_group=4).n_chunks == 1  # too short to split
    # edge's stage 1 (128 channels, too few for the time-parallel core) runs chunked
    edge = lp.scan_plan(128, 5120, 16, sm_count=132, per_group=32)
    assert edge.lanes in lp.SCAN_LANES and edge.n_chunks > 1
    states, sums = lp.scan_plan_state_floats(edge, 128, 16)
    assert states == 128 * (edge.n_chunks - 1) * 16 and sums == 128 * (edge.n_chunks - 1)
    assert kernels.selective_scan_workspace_bytes(1, 128, 5120, 16, 132, groups=4) == 4 * (states + sums)
    # without the grouping: enough for any
    assert kernels.selective_scan_workspace_bytes(1, 128, 5120, 16, 132) >= 4 * (states + sums)
    assert lp.scan_plan(8 * 768, 80, 16, sm_count=132, per_group=1536).n_chunks == 1  # short: never split


def test_long_scans_take_the_time_parallel_core():
    from fusion_edge.kernels import launch_params as lp

    tile = lp.SCAN_LANES_TILE[lp.SCAN_TIME_LANES]
    assert tile == 32 * lp.SCAN_TIME_STEPS
    # paper's stage 1 at batch 1 and 8: one pass, no workspace; two warps a channel while they all fit
    for channels, split in ((768, 2), (8 * 768, 1)):
        plan = lp.scan_plan(channels, 5120, 16, sm_count=132, per_group=channels // 4)
        assert (plan.lanes, plan.n_chunks, plan.split) == (lp.SCAN_TIME_LANES, 1, split) and plan.chunk_len == 5120
        assert lp.scan_workspace_floats(channels, 5120, 16, 132, channels // 4) == 0
        grid, block = lp.scan_plan_grid(plan, channels, 16, 1)
        assert block == (32 * lp.SCAN_TIME_WARPS_PER_BLOCK, 1, 1)
        assert grid[0] * lp.SCAN_TIME_WARPS_PER_BLOCK == channels * split
    assert kernels.selective_scan_workspace_bytes(1, 768, 5120, 16, 132, groups=4) == 0
    assert lp.scan_time_split(792, 132) == 2 and lp.scan_time_split(793, 132) == 1  # 3 blocks of 4 warps an SM
    assert lp.scan_plan(128, 1024, 16, 132, 32).lanes == lp.SCAN_TIME_LANES      # few channels, two tiles
    assert lp.scan_plan(128, 5120, 16, 132, 32).lanes in lp.SCAN_LANES            # few channels, long: chunks
    assert lp.scan_plan(8 * 768, 320, 16, 132, 1536).lanes in lp.SCAN_LANES      # part of a tile, many waves
    assert lp.scan_plan(768, 200, 16, 132, 192).lanes in lp.SCAN_LANES            # too short for a tile
    assert lp.scan_plan(768, 5120, 17, 132, 192).lanes == 0                       # N > 16: the split core
    assert lp.scan_plan(768, 5120, 16, 132, 192, routes=True).lanes in lp.SCAN_LANES  # ES2D: only when forced
    saved = lp.SCAN_OVERRIDE
    try:
        lp.SCAN_OVERRIDE = (lp.SCAN_TIME_LANES, 4)  # forced, chunked: whole tiles a chunk
        forced = lp.scan_plan(128, 5120, 16, 132, 32)
        assert forced.lanes == lp.SCAN_TIME_LANES and forced.n_chunks == 4 and forced.chunk_len % tile == 0
        assert lp.scan_plan(128, 5120, 16, 132, 32, routes=True).lanes == lp.SCAN_TIME_LANES  # routes: forced
    finally:
        lp.SCAN_OVERRIDE = saved
    from fusion_edge.kernels.scan_launch import selective_scan_kernel_name

    name = selective_scan_kernel_name("float16", "float32", 16, lanes=lp.SCAN_TIME_LANES)
    assert name == "fe_selective_scan_time_fwd_f16_f32" and name in kernels.kernel_names("selective_scan")


TIME_SWEEP = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "scan_time_h200.md"


def test_time_parallel_rule_matches_the_h200_sweep():
    """On every swept shape the rule takes whichever core was faster (ties of 2% may go either way)."""
    from fusion_edge.kernels import launch_params as lp

    rows = 0
    for line in TIME_SWEEP.read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) != 9 or not cells[3].isdigit():
            continue
        batch, dim, length = (int(v) for v in cells[4].strip("()").split(","))
        lane_ms, time_ms = float(cells[5]), float(cells[7])
        preferred = lp.scan_time_preferred(batch * dim, length, 16, sm_count=132)
        if abs(time_ms / lane_ms - 1) > 0.02:  # a tie may go either way
            assert preferred == (time_ms < lane_ms), (cells, preferred)
        rows += 1
    assert rows == 32


def test_time_parallel_rule_matches_the_batch_two_sweep():
    """The shared encoder's batch of two (second table of the sweep): against the fastest lane-major
    plan of each shape, forced; ties of 2% may go either way."""
    from fusion_edge.kernels import launch_params as lp

    rows = 0
    for line in TIME_SWEEP.read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) != 10 or "x" not in cells[1] or not cells[2].isdigit():
            continue
        batch, dim, length = (int(v) for v in cells[3].strip("()").split(","))
        lane_ms, time_ms = float(cells[7]), float(cells[8].split()[0])
        preferred = lp.scan_time_preferred(batch * dim, length, 16, sm_count=132)
        if "chunks" not in cells[8] and abs(time_ms / lane_ms - 1) > 0.02:
            assert preferred == (time_ms < lane_ms), (cells, preferred)
        rows += 1
    assert rows == 16


def test_scan_plan_layouts_and_fallbacks():
    from fusion_edge.kernels import launch_params as lp

    # the lane-major core serves N <= 16 when a warp's channels span at most two B/C groups
    assert lp.scan_lanes_allowed(768, 192, 16) == lp.SCAN_LANES
    assert lp.scan_lanes_allowed(768, 192, 17) == ()                 # N > 16: the split core
    assert lp.scan_lanes_allowed(48, 8, 16) == (4, 8)                # 8 channels a group
    assert lp.scan_lanes_allowed(24, 1, 16) == ()                    # one channel a group
    assert lp.scan_lanes_allowed(2, 1, 16) == lp.SCAN_LANES          # two groups in all
    assert lp.scan_plan(24, 4099, 16, sm_count=132, per_group=1).lanes == 0
    assert lp.scan_plan(8, 100, 64, sm_count=132, per_group=8).lanes == 0
    plan = lp.scan_plan(6144, 80, 16, sm_count=132, per_group=1536)
    grid, block = lp.scan_plan_grid(plan, 6144, 16, plan.n_chunks)
    assert block[0] % 32 == 0 and block[0] <= 32 * lp.SCAN_LANES_WARPS_PER_BLOCK
    assert grid[0] * block[0] // 32 * (32 // plan.lanes) >= 6144 and grid[1] == plan.n_chunks
    saved = lp.SCAN_OVERRIDE
    try:
        lp.SCAN_OVERRIDE = (2, 5)
        forced = lp.scan_plan(64, 1000, 16, sm_count=132, per_group=32)
        assert forced.lanes == 2 and forced.n_chunks == 5 and forced.chunk_len % lp.SCAN_LANES_TILE[2] == 0
        assert lp.scan_plan(24, 1000, 16, sm_count=132, per_group=1).lanes == 0  # not allowed: split core
    finally:
        lp.SCAN_OVERRIDE = saved


def test_importing_kernels_and_ops_needs_neither_cupy_nor_a_gpu():
    code = "import sys, fusion_edge.kernels; assert 'torch' not in sys.modules, 'kernels imported torch'"
    subprocess.run([sys.executable, "-c", code], check=True)
    code = "import sys, fusion_edge.ops; assert 'cupy' not in sys.modules, 'ops imported cupy'"
    subprocess.run([sys.executable, "-c", code], check=True)


SWEEP = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "scan_plans_sweep_h100.md"


def sweep_rows(section: str):
    """(channels, length, per_group, {(lanes, chunks): ms}) of every row of one section of the H100 sweep of
    forced plans (float16, N=16, 4 groups of B/C for the plain scan; the ES2D scan's routes of ceil(H/2) x
    ceil(W/2) steps, one group a route and direction)."""
    rows, inside = [], False
    for line in SWEEP.read_text().splitlines():
        if line.startswith("## "):
            inside = line[3:].startswith(section)
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if not inside or len(cells) < 10 or not cells[2].isdigit():
            continue
        shape = tuple(int(v) for v in cells[4].strip("()").split(","))
        forced = {}
        for token in cells[-1].split():
            plan, ms = token.split(":")
            lanes, chunks = plan.split("x")
            forced[(int(lanes), int(chunks))] = float(ms)
        if section.startswith("Selective"):
            batch, dim, length = shape
            rows.append((batch * dim, length, dim // 4, forced))
        else:
            batch, dim, h, w = shape
            rows.append((batch * 4 * dim, -(-h // 2) * -(-w // 2), dim, forced))
    return rows


@pytest.mark.parametrize("section, routes", [("Selective scan", False), ("Fused ES2D", True)])
def test_scan_plans_match_the_h100_sweep(section, routes):
    """The cost model's plan for every swept shape is one the sweep timed, and about as fast as the best."""
    from fusion_edge.kernels import launch_params as lp

    rows = sweep_rows(section)
    assert len(rows) == 32
    ratios = []
    for channels, length, per_group, forced in rows:
        plan = lp.scan_lane_plan(channels, length, 16, sm_count=132, per_group=per_group, routes=routes)
        assert (plan.lanes, plan.n_chunks) in forced, (channels, length, plan)
        ratios.append(forced[(plan.lanes, plan.n_chunks)] / min(forced.values()))
        if lp.scan_plan(channels, length, 16, 132, per_group, routes) == plan:
            need = sum(lp.scan_plan_state_floats(plan, channels, 16))
            assert lp.scan_workspace_floats(channels, length, 16, 132, per_group, routes) == need
    geomean = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    assert max(ratios) < 1.15 and geomean < 1.03, (max(ratios), geomean)


def test_scan_plans_stay_sensible_off_the_sweep():
    from fusion_edge.kernels import launch_params as lp

    for sms in (8, 16, 46, 132, 170):
        for channels in (16, 96, 768, 6144, 49152):
            for length in (1, 17, 300, 4096, 65536):
                plan = lp.scan_plan(channels, length, 16, sm_count=sms, per_group=channels // 4 or 1)
                assert plan.lanes in (*lp.SCAN_LANES, lp.SCAN_TIME_LANES)
                assert 1 <= plan.n_chunks <= lp.SCAN_LANES_MAX_CHUNKS
                assert plan.chunk_len % lp.SCAN_LANES_TILE[plan.lanes] == 0
                assert (plan.n_chunks - 1) * plan.chunk_len < max(length, 1) <= plan.n_chunks * plan.chunk_len
                if plan.n_chunks > 1:  # a split never exceeds the warps a scheduler can use
                    assert length >= 2 * lp.SCAN_LANES_TILE[plan.lanes] * plan.n_chunks // 2
                    warps = -(-channels * plan.lanes // 32) * plan.n_chunks
                    assert warps <= 2 * lp.SCAN_LANES_MAX_WARPS_PER_SMSP * lp.SCAN_LANES_SMSP * sms
    # fewer SMs never call for more chunks of the same long scan
    small = lp.scan_lane_plan(768, 5120, 16, sm_count=16, per_group=192)
    big = lp.scan_lane_plan(768, 5120, 16, sm_count=132, per_group=192)
    assert small.n_chunks <= big.n_chunks


def test_projection_width_follows_the_layer():
    """Wide projection blocks where a layer's rows fit one and the grid or the channels are large (edge
    stage 1 at 512x640, paper stages 1-2); 16-row blocks for small maps and for more than 48 rows."""
    from fusion_edge.kernels import launch_params as lp

    wide, narrow = lp.ES2D_PROJ_WIDE_C, lp.ES2D_PROJ_C
    assert lp.es2d_project_rows(1, 5120, 33, 32, 132) == wide      # edge stage 1, 512x640
    assert lp.es2d_project_rows(1, 1024, 33, 32, 132) == narrow    # edge stage 1, 256x256
    assert lp.es2d_project_rows(1, 80, 40, 256, 132) == narrow     # edge stage 4
    assert lp.es2d_project_rows(1, 1280, 44, 384, 132) == wide     # paper stage 2
    assert lp.es2d_project_rows(8, 5120, 80, 1536, 132) == narrow  # more rows than a wide block holds
    for rows in (narrow, wide):
        splits = lp.es2d_project_splits(1, 80, 40, 256, 132, rows)
        grid, block = lp.es2d_project_grid(1, 80, 40, splits, rows)
        assert grid == (1, -(-40 // rows), 4 * splits) and block == (lp.ES2D_PROJ_L, 1, 1)


def test_conv_split_tile_follows_the_map():
    """32 x 32 pixel tiles where they give at least two blocks an SM and lie mostly inside the routes (paper
    stages 1-2 at 512x640, stage 3 at batch 2), 16 x 16 ones for small maps and few channels (paper stages 3-4,
    every edge stage), so those fill the GPU: the faster tile of each row of conv_gather_h200.md's H200 table."""
    from fusion_edge.kernels import launch_params as lp

    big, small = lp.ES2D_CONV_TILE, lp.ES2D_CONV_TILE // 2
    assert lp.es2d_conv_split_tile(1, 192, 128, 160, 2, 132) == big     # paper stage 1: 480 blocks
    assert lp.es2d_conv_split_tile(1, 384, 64, 80, 2, 132) == big       # paper stage 2: 288 blocks
    assert lp.es2d_conv_split_tile(1, 768, 32, 40, 2, 132) == small     # paper stage 3: 192 blocks
    assert lp.es2d_conv_split_tile(2, 768, 32, 40, 2, 132) == big       # at batch 2: 384 blocks, 62% inside
    assert lp.es2d_conv_split_tile(2, 1536, 16, 20, 2, 132) == small    # paper stage 4: 384 blocks, 31% inside
    assert lp.es2d_conv_split_tile(1, 32, 128, 160, 2, 132) == small    # edge stage 1: 80 blocks
    assert lp.es2d_conv_split_tile(8, 32, 128, 160, 2, 132) == big      # the same at batch 8
    assert lp.es2d_conv_split_tile(1, 192, 128, 160, 4, 132) == big     # float32: 4 channels a block
    grid, block = lp.es2d_conv_split_grid(2, 33, 35, 33, 2, small)      # 18 x 17 positions, 5 groups of 8
    assert grid == (5, 3 * 3, 2) and block == (lp.ES2D_CONV_THREADS, 1, 1)
