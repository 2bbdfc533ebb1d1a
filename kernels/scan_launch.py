"""Selective scan forward launcher (mamba_ssm's ``selective_scan_fn`` forward semantics)."""

from __future__ import annotations

from typing import Any

from fusion_edge.kernels import launch, launch_params
from fusion_edge.kernels.arrays import ITEMSIZE, TYPE_CODE, as_device_array, check, common_device

FLOAT_TYPES = ("float32", "float16", "bfloat16")


def selective_scan_kernel_name(u_dtype: str, bc_dtype: str, n_states: int, *, states: bool = False,
                               lanes: int = 0) -> str:
    """Entry point of the split core (``lanes`` 0), of the lane-major core with ``lanes`` lanes a channel,
    or of the time-parallel core (``lanes`` = launch_params.SCAN_TIME_LANES)."""
    kind = "states" if states else "fwd"
    types = f"{TYPE_CODE[u_dtype]}_{TYPE_CODE[bc_dtype]}"
    if lanes == launch_params.SCAN_TIME_LANES:
        return f"fe_selective_scan_time_{kind}_{types}"
    if lanes:
        return f"fe_selective_scan_lanes_{kind}_{types}_l{lanes}"
    return f"fe_selective_scan_{kind}_{types}_{launch_params.scan_suffix(n_states)}"


def selective_scan_workspace_bytes(batch: int, dim: int, length: int, n_states: int, sm_count: int,
                                   groups: int | None = None) -> int:
    """Scratch bytes for the chunk states of a long scan on a GPU with ``sm_count`` SMs (0 if unsplit).

    ``groups`` (of B and C): the exact need; None gives enough for any grouping.
    """
    per_group = None if groups is None else max(1, dim // groups)
    return 4 * launch_params.scan_workspace_floats(batch * dim, length, n_states, sm_count, per_group)


def launch_selective_scan(
    u: Any,
    delta: Any,
    A: Any,
    B: Any,
    C: Any,
    D: Any = None,
    z: Any = None,
    delta_bias: Any = None,
    out: Any = None,
    *,
    delta_softplus: bool = False,
    workspace: Any = None,
    stream: Any = None,
) -> Any:
    """out = selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus); see the package docstring.

    ``workspace``: at least ``selective_scan_workspace_bytes(...)`` bytes for a long sequence that
    is scanned in chunks (allocated from CuPy's pool when None and needed).
    """
    arrs = {
        "u": as_device_array(u, "u"),
        "delta": as_device_array(delta, "delta"),
        "A": as_device_array(A, "A"),
        "B": as_device_array(B, "B"),
        "C": as_device_array(C, "C"),
        "D": None if D is None else as_device_array(D, "D"),
        "z": None if z is None else as_device_array(z, "z"),
        "delta_bias": None if delta_bias is None else as_device_array(delta_bias, "delta_bias"),
        "out": None if out is None else as_device_array(out, "out"),
    }
    ua = arrs["u"]
    if len(ua.shape) != 3:
        raise ValueError(f"u must be (batch, dim, L), got shape {ua.shape}")
    if ua.dtype not in FLOAT_TYPES:
        raise ValueError(f"u must be float32, float16 or bfloat16, got {ua.dtype}")
    batch, dim, length = ua.shape
    check(arrs["delta"], "delta", ua.shape, (ua.dtype,))
    if len(arrs["A"].shape) != 2 or arrs["A"].shape[0] != dim:
        raise ValueError(f"A must be (dim={dim}, N), got shape {arrs['A'].shape}")
    n_states = arrs["A"].shape[1]
    if not 1 <= n_states <= launch_params.SCAN_MAX_STATES:
        raise ValueError(f"A has N={n_states} states; the kernel supports 1..{launch_params.SCAN_MAX_STATES}")
    check(arrs["A"], "A", (dim, n_states), ("float32",))
    Ba, Ca = arrs["B"], arrs["C"]
    if len(Ba.shape) == 3:  # (batch, N, L): one group
        Ba = Ba._replace(shape=(Ba.shape[0], 1, *Ba.shape[1:]))
    if len(Ca.shape) == 3:
        Ca = Ca._replace(shape=(Ca.shape[0], 1, *Ca.shape[1:]))
    if len(Ba.shape) != 4:
        raise ValueError(f"B must be (batch, groups, N, L), got shape {arrs['B'].shape}")
    groups = Ba.shape[1]
    if groups < 1 or dim % groups:
        raise ValueError(f"B has {groups} groups, which must divide dim={dim}")
    check(Ba, "B", (batch, groups, n_states, length), (ua.dtype, "float32"))
    check(Ca, "C", (batch, groups, n_states, length), (Ba.dtype,))
    for name in ("D", "delta_bias"):
        if arrs[name] is not None:
            check(arrs[name], name, (dim,), ("float32",))
    if arrs["z"] is not None:
        check(arrs["z"], "z", ua.shape, (ua.dtype,))
    device = common_device(arrs)
    result = out
    if arrs["out"] is None:
        result = launch.alloc(0, ua.dtype, ua.shape, device=device, stream=stream)
        arrs["out"] = as_device_array(result, "out")
    check(arrs["out"], "out", ua.shape, (ua.dtype,))
    if batch * dim == 0 or length == 0:
        return result
    itemsize = ITEMSIZE[Ba.dtype]
    vec_bc = int(Ba.ptr % 16 == 0 and Ca.ptr % 16 == 0 and (length * itemsize) % 16 == 0)
    rows = [ua, arrs["delta"], arrs["out"]] + ([arrs["z"]] if arrs["z"] is not None else [])
    vec_u = int(all(a.ptr % 16 == 0 for a in rows) and (length * ITEMSIZE[ua.dtype]) % 16 == 0)
    dev = launch.current_device() if device is None else device
    channels = batch * dim
    plan = launch_params.scan_plan(channels, length, n_states, launch.sm_count(dev), dim // groups)
    chunk_len, n_chunks = plan.chunk_len, plan.n_chunks
    states_ptr = sums_ptr = 0
    keep = None
    if n_chunks > 1:
        n_st, n_sum = launch_params.scan_plan_state_floats(plan, channels, n_states)
        need = 4 * (n_st + n_sum)
        ws = None if workspace is None else as_device_array(workspace, "workspace")
        if ws is None:
            keep = launch.alloc(need, "uint8", (need,), device=device, stream=stream)
            ws = as_device_array(keep, "workspace")
        if ws.nbytes < need:
            raise ValueError(f"workspace has {ws.nbytes} bytes; this scan needs {need} "
                             "(selective_scan_workspace_bytes)")
        if ws.ptr % 16:
            raise ValueError("workspace must be 16-byte aligned")
        states_ptr, sums_ptr = ws.ptr, ws.ptr + 4 * n_st
    p, i = launch.ptr, launch.i32
    args = (
        p(ua), p(arrs["delta"]), p(arrs["A"]), p(Ba), p(Ca), p(arrs["D"]), p(arrs["z"]),
        p(arrs["delta_bias"]), p(arrs["out"]), launch.addr(states_ptr), launch.addr(sums_ptr),
        i(batch), i(dim), i(length), i(n_states), i(groups), i(int(bool(delta_softplus))), i(vec_bc),
        *((i(vec_u),) if plan.lanes else ()), i(chunk_len), i(n_chunks),
        *((i(plan.split),) if plan.lanes == launch_params.SCAN_TIME_LANES else ()),
    )
    if n_chunks > 1:
        grid, block = launch_params.scan_plan_grid(plan, channels, n_states, n_chunks - 1)
        name = selective_scan_kernel_name(ua.dtype, Ba.dtype, n_states, states=True, lanes=plan.lanes)
        launch.run("selective_scan", name, grid, block, args, device=device, stream=stream)
    grid, block = launch_params.scan_plan_grid(plan, channels, n_states, n_chunks)
    name = selective_scan_kernel_name(ua.dtype, Ba.dtype, n_states, lanes=plan.lanes)
    launch.run("selective_scan", name, grid, block, args, device=device, stream=stream)
    del keep  # CuPy's pool is stream-ordered: the block is reused only after our launches
    return result
