"""Fused ES2D launcher: route projections, then the scan (which forms delta from the dt rows itself
unless given it), reading and writing the map in place; and the merge of scanned route rows into the map
(the unfused form's scatter), its gather (split), the gather of a map computed on the way from an
SS2D layer's input (conv split), and the merge with the layer's LayerNorm and gate applied (merge norm)."""

from __future__ import annotations

from typing import Any

import numpy as np
from fusion_edge.kernels import launch, launch_params
from fusion_edge.kernels.arrays import ITEMSIZE, TYPE_CODE, DeviceArray, as_device_array, check, common_device
from fusion_edge.kernels.scan_launch import FLOAT_TYPES

ROUTES = 4
_ALIGN = 256


def _route_length(h: int, w: int) -> int:
    return ((h + 1) // 2) * ((w + 1) // 2)


def _aligned(nbytes: int) -> int:
    return (nbytes + _ALIGN - 1) // _ALIGN * _ALIGN


def _layout(batch: int, dim: int, h: int, w: int, dt_rank: int, d_state: int, sm_count: int,
            projected: bool = False):
    """Byte offsets of the projections, chunk states and chunk sums, the total, and the scan plan.
    No delta: the scan kernels form it from the projections' dt rows or read the caller's.
    ``projected``: the caller gives the projections, so they take no room here."""
    length = _route_length(h, w)
    proj = 0 if projected else batch * ROUTES * (dt_rank + 2 * d_state) * length * 4
    plan = launch_params.scan_plan(batch * ROUTES * dim, length, d_state, sm_count, dim, routes=True)
    n_st, n_sum = launch_params.scan_plan_state_floats(plan, batch * ROUTES * dim, d_state)
    offsets = [0, _aligned(proj)]
    offsets.append(offsets[-1] + _aligned(4 * n_st))
    total = offsets[-1] + _aligned(4 * n_sum)
    return offsets, total, plan


def es2d_workspace_bytes(batch: int, dim: int, h: int, w: int, dt_rank: int, d_state: int,
                         sm_count: int | None = None, projected: bool = False) -> int:
    """Bytes of scratch the fused ES2D op needs (route projections, chunk states), float32.

    ``sm_count``: SMs of the GPU it will run on (the current device's when None). ``projected``: the
    call passes ``proj`` (the projections then need no room; chunk states alone, often nothing).
    """
    if sm_count is None:
        sm_count = launch.sm_count(launch.current_device())
    return _layout(batch, dim, h, w, dt_rank, d_state, sm_count, projected)[1]


def launch_es2d_scan(
    x: Any,
    x_proj_weight: Any,
    dt_projs_weight: Any,
    dt_projs_bias: Any,
    A_logs: Any,
    Ds: Any,
    out: Any = None,
    *,
    workspace: Any = None,
    proj: Any = None,
    delta: Any = None,
    channels_last: bool = False,
    stream: Any = None,
) -> Any:
    """out (batch, D, h, w) float32 = the ES2D core of x (batch, D, h, w); see the package docstring.

    ``channels_last``: x and out are the (batch, h, w, D) buffers of channels-last maps instead (what a
    channels-last producer writes and a LayerNorm over channels reads, with no transposing copy).

    ``proj``: the route projections (batch, 4, R+2N, L) float32 computed elsewhere (a library GEMM on
    tensor cores, say); the projection kernel is then skipped and ``x_proj_weight`` may be None.
    ``delta``: the routes' delta before bias and softplus, (batch, 4, D, L) float32, i.e.
    dt_projs_weight[k] @ proj[b, k, :R]; the scan then reads it instead of forming it from the dt
    rows (which costs it R multiply-adds and loads a step: a GEMM does it for less in wide layers).
    """
    if x_proj_weight is None and proj is None:
        raise ValueError("give x_proj_weight (the op projects the routes) or proj (the projections)")
    arrs = {
        "x": as_device_array(x, "x"),
        "x_proj_weight": None if x_proj_weight is None else as_device_array(x_proj_weight, "x_proj_weight"),
        "proj": None if proj is None else as_device_array(proj, "proj"),
        "delta": None if delta is None else as_device_array(delta, "delta"),
        "dt_projs_weight": as_device_array(dt_projs_weight, "dt_projs_weight"),
        "dt_projs_bias": as_device_array(dt_projs_bias, "dt_projs_bias"),
        "A_logs": as_device_array(A_logs, "A_logs"),
        "Ds": as_device_array(Ds, "Ds"),
        "out": None if out is None else as_device_array(out, "out"),
        "workspace": None if workspace is None else as_device_array(workspace, "workspace"),
    }
    xa = arrs["x"]
    layout = "(batch, h, w, D)" if channels_last else "(batch, D, h, w)"
    if len(xa.shape) != 4 or xa.dtype not in FLOAT_TYPES:
        raise ValueError(f"x must be {layout} float32/float16/bfloat16, got {xa.shape} {xa.dtype}")
    if channels_last:
        batch, h, w, dim = xa.shape
    else:
        batch, dim, h, w = xa.shape
    dtw = arrs["dt_projs_weight"]
    if len(dtw.shape) != 3:
        raise ValueError(f"dt_projs_weight must be (4, D, R), got shape {dtw.shape}")
    rank = dtw.shape[2]
    check(dtw, "dt_projs_weight", (ROUTES, dim, rank), ("float32",))
    al = arrs["A_logs"]
    if len(al.shape) != 2:
        raise ValueError(f"A_logs must be (4D, N), got shape {al.shape}")
    n_states = al.shape[1]
    if not 1 <= n_states <= launch_params.SCAN_MAX_STATES:
        raise ValueError(f"A_logs has N={n_states} states; the kernel supports 1..{launch_params.SCAN_MAX_STATES}")
    check(al, "A_logs", (ROUTES * dim, n_states), ("float32",))
    proj_rows = rank + 2 * n_states
    if arrs["x_proj_weight"] is not None:
        check(arrs["x_proj_weight"], "x_proj_weight", (ROUTES, proj_rows, dim), ("float32",))
    if arrs["proj"] is not None:
        check(arrs["proj"], "proj", (batch, ROUTES, proj_rows, _route_length(h, w)), ("float32",))
    if arrs["delta"] is not None:
        check(arrs["delta"], "delta", (batch, ROUTES, dim, _route_length(h, w)), ("float32",))
    check(arrs["dt_projs_bias"], "dt_projs_bias", (ROUTES, dim), ("float32",))
    check(arrs["Ds"], "Ds", (ROUTES * dim,), ("float32",))
    device = common_device(arrs)
    result = out
    if arrs["out"] is None:
        result = launch.alloc(0, "float32", xa.shape, device=device, stream=stream)
        arrs["out"] = as_device_array(result, "out")
    check(arrs["out"], "out", xa.shape, ("float32",))  # the layout of x
    if batch * dim * h * w == 0:
        return result
    length = _route_length(h, w)
    dev = launch.current_device() if device is None else device
    sms = launch.sm_count(dev)
    offsets, need, plan = _layout(batch, dim, h, w, rank, n_states, sms, projected=arrs["proj"] is not None)
    chunk_len, n_chunks = plan.chunk_len, plan.n_chunks
    ws = arrs["workspace"]
    keep = None
    if ws is None and need:
        keep = launch.alloc(need, "uint8", (need,), device=device, stream=stream)
        ws = as_device_array(keep, "workspace")
    ws_ptr = 0 if ws is None else ws.ptr  # None: nothing to keep (given projections, one chunk)
    if need and ws.nbytes < need:
        raise ValueError(f"workspace has {ws.nbytes} bytes; this shape needs {need} (es2d_workspace_bytes)")
    if ws_ptr % 16:
        raise ValueError("workspace must be 16-byte aligned")
    proj_bytes = batch * ROUTES * proj_rows * length * 4
    states, sums = ws_ptr + offsets[1], ws_ptr + offsets[2]

    p, i = launch.ptr, launch.i32
    code = TYPE_CODE[xa.dtype]
    proj = arrs["proj"]
    if proj is None:
        proj = DeviceArray(ws_ptr, (proj_bytes // 4,), "float32", ws.device)
        rows = launch_params.es2d_project_rows(batch, length, proj_rows, dim, sms)
        splits = launch_params.es2d_project_splits(batch, length, proj_rows, dim, sms, rows)
        if splits > 1:
            launch.memset_async(proj.ptr, proj_bytes, device=device, stream=stream)
        grid, block = launch_params.es2d_project_grid(batch, length, proj_rows, splits, rows)
        wide = "wide_" if rows == launch_params.ES2D_PROJ_WIDE_C else ""
        launch.run("es2d", f"fe_es2d_project_{wide}{code}", grid, block,
                   (p(xa), p(arrs["x_proj_weight"]), p(proj), i(batch), i(dim), i(h), i(w), i(proj_rows),
                    i(splits), i(int(channels_last))), device=device, stream=stream)
    # Both scan cores take the same arguments; vec_bc: the projection rows (dt, B, C) and delta's rows
    # allow 16-byte loads.
    given = arrs["delta"]
    vec_bc = int(proj.ptr % 16 == 0 and length % 4 == 0 and (given is None or given.ptr % 16 == 0))
    args = (p(xa), p(dtw), p(al), p(proj), p(given), p(arrs["Ds"]), p(arrs["dt_projs_bias"]), p(arrs["out"]),
            launch.addr(states), launch.addr(sums), i(batch), i(dim), i(h), i(w), i(n_states), i(rank),
            i(vec_bc), i(chunk_len), i(n_chunks), i(int(channels_last)))
    channels = batch * ROUTES * dim
    if plan.lanes == launch_params.SCAN_TIME_LANES:
        args += (i(plan.split),)
        scan_name, states_name = f"fe_es2d_time_scan_{code}", f"fe_es2d_time_states_{code}"
    elif plan.lanes:
        scan_name = f"fe_es2d_lanes_scan_{code}_l{plan.lanes}"
        states_name = f"fe_es2d_lanes_states_{code}_l{plan.lanes}"
    else:
        suffix = launch_params.scan_suffix(n_states)
        scan_name, states_name = f"fe_es2d_scan_{code}_{suffix}", f"fe_es2d_states_{code}_{suffix}"
    if n_chunks > 1:
        grid, block = launch_params.scan_plan_grid(plan, channels, n_states, n_chunks - 1)
        launch.run("es2d", states_name, grid, block, args, device=device, stream=stream)
    grid, block = launch_params.scan_plan_grid(plan, channels, n_states, n_chunks)
    launch.run("es2d", scan_name, grid, block, args, device=device, stream=stream)
    del keep  # CuPy's pool is stream-ordered: the block is reused only after our launches
    return result


def launch_es2d_merge(ys: Any, out: Any = None, *, h: int, w: int, channels_last: bool = False,
                      stream: Any = None) -> Any:
    """out = the (batch, D, h, w) map whose routes are the rows of ys (batch, 4D, L'), as the plain
    selective scan writes them for gathered routes (``fusion_edge.ops.es2d.es2d_scatter`` on the GPU,
    one launch); padding positions are dropped. ``channels_last``: out is the map's (batch, h, w, D)
    buffer. out has ys's element type (allocated when None)."""
    ya = as_device_array(ys, "ys")
    if len(ya.shape) != 3 or ya.dtype not in FLOAT_TYPES or ya.shape[1] % ROUTES:
        raise ValueError(f"ys must be (batch, 4D, L') float32/float16/bfloat16, got {ya.shape} {ya.dtype}")
    batch, dim = ya.shape[0], ya.shape[1] // ROUTES
    if h < 1 or w < 1 or ya.shape[2] != _route_length(h, w):
        raise ValueError(f"ys has {ya.shape[2]} positions a route; an {h}x{w} map has {_route_length(h, w)}")
    shape = (batch, h, w, dim) if channels_last else (batch, dim, h, w)
    return _move_routes("merge", ya, out, shape, batch, dim, h, w, channels_last, stream)


def launch_es2d_merge_norm(ys: Any, z: Any, weight: Any, bias: Any, out: Any = None, *, h: int, w: int,
                           eps: float, cross: bool = False, positions: int | None = None, stream: Any = None) -> Any:
    """out (batch, h, w, D) = LayerNorm over the channels of the map whose routes are the rows of ys
    (batch, 4D, L'), with ``weight`` and ``bias`` (D), times the gate SiLU(z) (``cross``: s + SiLU(s) with
    s = SiLU(z), the CMFM's); the merge, the SS2D layer's out_norm and its gate in one launch, the map never
    stored. z: (batch, h, w, P) pixel rows whose first D channels are the gate's input (P >= D: e.g. the
    in_proj output the layer's z is the second half of, passed from that half's first element). All of
    ys's type; padding positions are dropped. ``positions``: route positions a block stages, a power of two
    whose tile fits (at least 8 in the 16-byte form); None: launch_params.es2d_merge_norm_plan."""
    arrs = {"ys": as_device_array(ys, "ys"), "z": as_device_array(z, "z"), "weight": as_device_array(weight, "weight"),
            "bias": as_device_array(bias, "bias")}
    ya, za = arrs["ys"], arrs["z"]
    if len(ya.shape) != 3 or ya.dtype not in FLOAT_TYPES or ya.shape[1] % ROUTES:
        raise ValueError(f"ys must be (batch, 4D, L') float32/float16/bfloat16, got {ya.shape} {ya.dtype}")
    batch, dim = ya.shape[0], ya.shape[1] // ROUTES
    if h < 1 or w < 1 or ya.shape[2] != _route_length(h, w):
        raise ValueError(f"ys has {ya.shape[2]} positions a route; an {h}x{w} map has {_route_length(h, w)}")
    if len(za.shape) != 4 or za.shape[:3] != (batch, h, w) or za.shape[3] < dim:
        raise ValueError(f"z must be (batch, h, w, P) = ({batch}, {h}, {w}, >= {dim}), got {za.shape}")
    check(za, "z", za.shape, (ya.dtype,))
    check(arrs["weight"], "weight", (dim,), (ya.dtype,))
    check(arrs["bias"], "bias", (dim,), (ya.dtype,))
    itemsize = ITEMSIZE[ya.dtype]
    if not launch_params.es2d_merge_norm_positions(dim, itemsize):
        raise ValueError(f"es2d merge-norm: {dim} channels of {ya.dtype} do not fit a block's "
                         f"{launch_params.ES2D_NORM_SMEM_BYTES} bytes of shared memory")
    # 16-byte form: every array 16-byte aligned (an output allocated here is)
    given_out = [] if out is None else [as_device_array(out, "out")]
    vec = (launch_params.es2d_merge_norm_vectorized(dim, itemsize, ya.shape[2], za.shape[3])
           and all(a.ptr % 16 == 0 for a in [*arrs.values(), *given_out]))
    most = launch_params.es2d_merge_norm_positions(dim, itemsize, vectorized=vec)
    if positions is not None and (positions & (positions - 1) or not (8 if vec else 1) <= positions <= most):
        raise ValueError(f"positions must be a power of two from {8 if vec else 1} to {most} for this layer, "
                         f"got {positions}")
    result, device = launch.checked_out(arrs, out, (batch, h, w, dim), ya.dtype, stream)
    if batch * dim * ya.shape[2] == 0:
        return result
    if positions is None:
        sms = launch.sm_count(launch.current_device() if device is None else device)
        positions = launch_params.es2d_merge_norm_plan(batch, dim, ya.shape[2], itemsize, vec, sms)
    grid, block = launch_params.es2d_merge_norm_grid(batch, ya.shape[2], positions)
    launch.run("es2d", f"fe_es2d_merge_norm{'_cross' if cross else ''}_{TYPE_CODE[ya.dtype]}", grid, block,
               (launch.ptr(ya), launch.ptr(za), launch.ptr(arrs["weight"]), launch.ptr(arrs["bias"]),
                launch.ptr(arrs["out"]), launch.i32(dim), launch.i32(h), launch.i32(w), launch.i32(za.shape[3]),
                launch.i32(positions), np.float32(eps), launch.i32(int(vec))), device=device, stream=stream)
    return result


def launch_es2d_split(x: Any, out: Any = None, *, channels_last: bool = False, stream: Any = None) -> Any:
    """out (batch, 4D, L') = the routes of the map x (batch, D, h, w) as route-major rows, padding as 0
    (``fusion_edge.ops.es2d.es2d_gather`` on the GPU, one launch). ``channels_last``: x is the map's
    (batch, h, w, D) buffer. out has x's element type (allocated when None)."""
    xa = as_device_array(x, "x")
    layout = "(batch, h, w, D)" if channels_last else "(batch, D, h, w)"
    if len(xa.shape) != 4 or xa.dtype not in FLOAT_TYPES:
        raise ValueError(f"x must be {layout} float32/float16/bfloat16, got {xa.shape} {xa.dtype}")
    batch, h, w, dim = xa.shape if channels_last else (xa.shape[0], *xa.shape[2:], xa.shape[1])
    shape = (batch, ROUTES * dim, _route_length(h, w))
    return _move_routes("split", xa, out, shape, batch, dim, h, w, channels_last, stream)


def launch_es2d_conv_split(a: Any, weight: Any, bias: Any, out: Any = None, *, a2: Any = None,
                           tile: int | None = None, stream: Any = None) -> Any:
    """out (batch, 4D, L') = the routes, as route-major rows (padding 0), of the map SiLU(depthwise 3x3
    conv(a) + bias), computed on the way and never stored (``fusion_edge.ops.es2d.conv_map`` and
    ``es2d_gather`` in one launch). a: a channels-last buffer (batch, h, w, P) whose first D channels are
    the conv's input (P >= D: e.g. a linear layer's output, of which the SS2D layer convolves the first
    half); weight (D, 1, 3, 3) or (D, 9), bias (D), both of a's type. a2 (batch, h, w, P2): the CMFM's second
    input through the same conv; the map is then c1 * c2 + c1 + c2 of the two SiLU(conv)s. out has a's type.
    ``tile``: route positions a side of a block's tile, 16 or 8 (None: launch_params.es2d_conv_split_tile)."""
    if tile not in (None, launch_params.ES2D_CONV_TILE, launch_params.ES2D_CONV_TILE // 2):
        raise ValueError(f"tile must be {launch_params.ES2D_CONV_TILE} or {launch_params.ES2D_CONV_TILE // 2}, "
                         f"got {tile}")
    arrs = {"a": as_device_array(a, "a"), "weight": as_device_array(weight, "weight"),
            "bias": as_device_array(bias, "bias"), "a2": None if a2 is None else as_device_array(a2, "a2")}
    aa, wa = arrs["a"], arrs["weight"]
    if len(aa.shape) != 4 or aa.dtype not in FLOAT_TYPES:
        raise ValueError(f"a must be (batch, h, w, P) float32/float16/bfloat16, got {aa.shape} {aa.dtype}")
    dim = wa.shape[0] if wa.shape else 0
    if wa.shape not in ((dim, 1, 3, 3), (dim, 9)) or not 0 < dim <= aa.shape[3]:
        raise ValueError(f"weight must be (D, 1, 3, 3) or (D, 9) with 0 < D <= a's {aa.shape[3]} channels, "
                         f"got {wa.shape}")
    check(wa, "weight", wa.shape, (aa.dtype,))
    check(arrs["bias"], "bias", (dim,), (aa.dtype,))
    batch, h, w, _ = aa.shape
    if arrs["a2"] is not None:
        a2a = arrs["a2"]
        if len(a2a.shape) != 4 or a2a.shape[:3] != aa.shape[:3] or a2a.shape[3] < dim:
            raise ValueError(f"a2 must be (batch, h, w, P2) = ({batch}, {h}, {w}, >= {dim}) like a, got {a2a.shape}")
        check(a2a, "a2", a2a.shape, (aa.dtype,))
    shape = (batch, ROUTES * dim, _route_length(h, w))
    cross = arrs["a2"] is not None
    second = arrs["a2"] if cross else aa
    result, device = launch.checked_out(arrs, out, shape, aa.dtype, stream)
    if batch * dim * shape[2] == 0:
        return result
    itemsize = ITEMSIZE[aa.dtype]
    if tile is None:
        sms = launch.sm_count(launch.current_device() if device is None else device)
        tile = launch_params.es2d_conv_split_tile(batch, dim, h, w, itemsize, sms)
    grid, block = launch_params.es2d_conv_split_grid(batch, dim, h, w, itemsize, tile)
    launch.run("es2d", f"fe_es2d_conv_split{'_cross' if cross else ''}_{TYPE_CODE[aa.dtype]}_t{tile}", grid, block,
               (launch.ptr(aa), launch.ptr(second), launch.ptr(wa), launch.ptr(arrs["bias"]),
                launch.ptr(arrs["out"]), launch.i32(dim), launch.i32(h), launch.i32(w), launch.i32(aa.shape[3]),
                launch.i32(second.shape[3])), device=device, stream=stream)
    return result


def _move_routes(kind: str, src: DeviceArray, out: Any, shape: tuple, batch: int, dim: int, h: int, w: int,
                 channels_last: bool, stream: Any) -> Any:
    """One launch of fe_es2d_{merge,split}: src checked by the caller, out allocated or checked here."""
    arrs = {"src": src}
    result, device = launch.checked_out(arrs, out, shape, src.dtype, stream)
    length = _route_length(h, w)
    if batch * dim * length == 0:
        return result
    grid, block = launch_params.es2d_merge_grid(batch, dim, length)
    launch.run("es2d", f"fe_es2d_{kind}_{TYPE_CODE[src.dtype]}", grid, block,
               (launch.ptr(src), launch.ptr(arrs["out"]), launch.i32(dim), launch.i32(h), launch.i32(w),
                launch.i32(int(channels_last))), device=device, stream=stream)
    return result
