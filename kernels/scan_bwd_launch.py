"""Selective scan backward launcher (gradients of mamba_ssm's ``selective_scan_fn``), two launches."""

from __future__ import annotations

from typing import Any

from fusion_edge.kernels import launch, launch_params
from fusion_edge.kernels.arrays import TYPE_CODE, DeviceArray, as_device_array, check, common_device
from fusion_edge.kernels.scan_launch import FLOAT_TYPES

FAMILY = "selective_scan_bwd"
_ALIGN = 256


def selective_scan_bwd_kernel_name(u_dtype: str, bc_dtype: str, n_states: int, *, prep: bool = False) -> str:
    kind = "bwd_prep" if prep else "bwd"
    suffix = launch_params.scan_bwd_suffix(n_states)
    return f"fe_selective_scan_{kind}_{TYPE_CODE[u_dtype]}_{TYPE_CODE[bc_dtype]}_{suffix}"


def _aligned(nbytes: int) -> int:
    return (nbytes + _ALIGN - 1) // _ALIGN * _ALIGN


def _layout(batch: int, dim: int, groups: int, length: int, n_states: int, sm_count: int):
    """Byte offsets of the five workspace arrays, the total, and the segmentation."""
    seg_len, n_segs = launch_params.scan_bwd_segments(batch, dim, groups, length, n_states, sm_count)
    floats = launch_params.scan_bwd_workspace_floats(batch * dim, length, n_states, seg_len, n_segs)
    offsets = [0]
    for n in floats[:-1]:
        offsets.append(offsets[-1] + _aligned(4 * n))
    total = offsets[-1] + _aligned(4 * floats[-1])
    return offsets, total, seg_len, n_segs


def selective_scan_bwd_workspace_bytes(batch: int, dim: int, length: int, n_states: int, sm_count: int, *,
                                       groups: int = 1) -> int:
    """Scratch bytes of the backward on a GPU with ``sm_count`` SMs: one float32 state checkpoint per
    16 steps and state of each channel, plus the segment carries when L is split."""
    if batch * dim == 0 or length == 0:
        return 0
    return _layout(batch, dim, groups, length, n_states, sm_count)[1]


def launch_selective_scan_bwd(
    u: Any,
    delta: Any,
    A: Any,
    B: Any,
    C: Any,
    D: Any = None,
    z: Any = None,
    delta_bias: Any = None,
    *,
    dout: Any,
    du: Any = None,
    ddelta: Any = None,
    dA: Any = None,
    dB: Any = None,
    dC: Any = None,
    dD: Any = None,
    dz: Any = None,
    ddelta_bias: Any = None,
    delta_softplus: bool = False,
    workspace: Any = None,
    stream: Any = None,
) -> None:
    """Gradients of ``launch_selective_scan``'s output ``dout`` into the gradient arrays given (None:
    not computed); see the package docstring. dA, dB, dC, dD, ddelta_bias are float32 and are
    zeroed here, then accumulated; du, ddelta, dz are in u's type and overwritten.
    """
    arrs: dict[str, DeviceArray | None] = {
        name: None if obj is None else as_device_array(obj, name)
        for name, obj in (("u", u), ("delta", delta), ("A", A), ("B", B), ("C", C), ("D", D), ("z", z),
                          ("delta_bias", delta_bias), ("dout", dout), ("du", du), ("ddelta", ddelta),
                          ("dA", dA), ("dB", dB), ("dC", dC), ("dD", dD), ("dz", dz),
                          ("ddelta_bias", ddelta_bias))
    }
    ua = arrs["u"]
    if len(ua.shape) != 3:
        raise ValueError(f"u must be (batch, dim, L), got shape {ua.shape}")
    if ua.dtype not in FLOAT_TYPES:
        raise ValueError(f"u must be float32, float16 or bfloat16, got {ua.dtype}")
    batch, dim, length = ua.shape
    if arrs["dout"] is None:
        raise ValueError("dout (the gradient of the scan's output) is required")
    for name in ("delta", "dout", "z", "du", "ddelta", "dz"):
        if arrs[name] is not None:
            check(arrs[name], name, ua.shape, (ua.dtype,))
    if arrs["dz"] is not None and arrs["z"] is None:
        raise ValueError("dz was asked for but the scan has no z")
    if len(arrs["A"].shape) != 2 or arrs["A"].shape[0] != dim:
        raise ValueError(f"A must be (dim={dim}, N), got shape {arrs['A'].shape}")
    n_states = arrs["A"].shape[1]
    if not 1 <= n_states <= launch_params.SCAN_MAX_STATES:
        raise ValueError(f"A has N={n_states} states; the kernel supports 1..{launch_params.SCAN_MAX_STATES}")
    check(arrs["A"], "A", (dim, n_states), ("float32",))
    for name in ("B", "C"):  # (batch, N, L): one group
        if len(arrs[name].shape) == 3:
            arrs[name] = arrs[name]._replace(shape=(arrs[name].shape[0], 1, *arrs[name].shape[1:]))
    Ba, Ca = arrs["B"], arrs["C"]
    if len(Ba.shape) != 4:
        raise ValueError(f"B must be (batch, groups, N, L), got shape {Ba.shape}")
    groups = Ba.shape[1]
    if groups < 1 or dim % groups:
        raise ValueError(f"B has {groups} groups, which must divide dim={dim}")
    bc_shape = (batch, groups, n_states, length)
    check(Ba, "B", bc_shape, (ua.dtype, "float32"))
    check(Ca, "C", bc_shape, (Ba.dtype,))
    for name in ("dB", "dC"):
        if arrs[name] is not None and len(arrs[name].shape) == 3:
            arrs[name] = arrs[name]._replace(shape=(arrs[name].shape[0], 1, *arrs[name].shape[1:]))
    for name, shape in (("D", (dim,)), ("delta_bias", (dim,)), ("dA", (dim, n_states)), ("dB", bc_shape),
                        ("dC", bc_shape), ("dD", (dim,)), ("ddelta_bias", (dim,))):
        if arrs[name] is not None:
            check(arrs[name], name, shape, ("float32",))
    device = common_device(arrs)
    accumulated = [arrs[n] for n in ("dA", "dB", "dC", "dD", "ddelta_bias") if arrs[n] is not None]
    for acc in accumulated:
        launch.memset_async(acc.ptr, acc.nbytes, device=device, stream=stream)
    wanted = [n for n in ("du", "ddelta", "dA", "dB", "dC", "dD", "dz", "ddelta_bias") if arrs[n] is not None]
    if not wanted or batch * dim == 0 or length == 0:
        return

    dev = launch.current_device() if device is None else device
    offsets, need, seg_len, n_segs = _layout(batch, dim, groups, length, n_states, launch.sm_count(dev))
    ws = None if workspace is None else as_device_array(workspace, "workspace")
    keep = None
    if ws is None:
        keep = launch.alloc(need, "uint8", (need,), device=device, stream=stream)
        ws = as_device_array(keep, "workspace")
    if ws.nbytes < need:
        raise ValueError(f"workspace has {ws.nbytes} bytes; this backward needs {need} "
                         "(selective_scan_bwd_workspace_bytes)")
    ck_h, ck_cum, seg_h, seg_g, seg_sum = (ws.ptr + o for o in offsets)
    if n_segs == 1:
        ck_cum = seg_h = seg_g = seg_sum = 0
    p, i, a = launch.ptr, launch.i32, launch.addr
    args = (
        p(ua), p(arrs["delta"]), p(arrs["A"]), p(Ba), p(Ca), p(arrs["D"]), p(arrs["z"]), p(arrs["delta_bias"]),
        p(arrs["dout"]), p(arrs["du"]), p(arrs["ddelta"]), p(arrs["dz"]), p(arrs["dA"]), p(arrs["dB"]),
        p(arrs["dC"]), p(arrs["dD"]), p(arrs["ddelta_bias"]), a(ck_h), a(ck_cum), a(seg_h), a(seg_g),
        a(seg_sum), i(batch), i(dim), i(length), i(n_states), i(groups), i(int(bool(delta_softplus))),
        i(seg_len), i(n_segs), i(seg_len // launch_params.SCAN_BWD_TILE),
    )
    grid, block = launch_params.scan_bwd_grid(batch, dim, groups, n_states, n_segs)
    for prep in (True, False):
        name = selective_scan_bwd_kernel_name(ua.dtype, Ba.dtype, n_states, prep=prep)
        launch.run(FAMILY, name, grid, block, args, device=device, stream=stream)
    del keep  # CuPy's pool is stream-ordered: the block is reused only after our launches
