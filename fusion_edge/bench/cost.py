"""FLOPs and bytes moved per frame, counted on a shape-only (meta-device) copy of the model.

What is counted (see docs/bench.md):

* ``matmul_conv``: every matrix product and convolution, counted by
  ``torch.utils.flop_counter.FlopCounterMode`` (2 FLOPs per multiply-add).
* ``scan``: the selective scan, analytically from its recurrence (below). While counting, the
  scan is replaced by a stand-in that only produces the output shape, because the chunked
  form's intra-chunk matrix products are an artefact of that algorithm, not work the model needs.
* ``other``: all remaining compute ops (normalisation, activations, additions, pooling, ...),
  1 FLOP per element of the op's largest tensor. Copies and layout changes count 0 FLOPs.

Bytes moved: each op of the eager (unfused) graph reads its tensor inputs (weights included)
and writes its outputs once; views cost nothing; the scan reads u, delta, B, C, A, D,
delta_bias and writes y (its state stays on chip). A fusing compiler (TensorRT) moves less:
this is the traffic of running the graph op by op.
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import asdict, dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from fusion_edge.ops import available_impls, register_impl, use_impl

COUNT_IMPL = "shape-only"

# FLOPs per (batch, channel, token, state) and per (batch, channel, token) of the recurrence
# h = exp(delta*A) * h + (delta*u) * B ;  y = <C, h> + D*u  (optionally * silu(z)):
SCAN_FLOPS_PER_STATE = 7  # delta*A, exp, (delta*u)*B, state multiply-add (2), C*h multiply-add (2)
SCAN_FLOPS_PER_TOKEN = 1  # delta*u
SOFTPLUS_FLOPS, BIAS_FLOPS, D_FLOPS, GATE_FLOPS = 3, 1, 2, 4

# Ops that only copy or re-lay out data: they move bytes but compute nothing.
_COPY_OPS = {
    "aten::clone", "aten::_to_copy", "aten::copy_", "aten::cat", "aten::stack", "aten::constant_pad_nd",
    "aten::reflection_pad2d", "aten::replication_pad2d", "aten::contiguous", "aten::repeat",
    "aten::repeat_interleave", "aten::index", "aten::index_select", "aten::gather", "aten::pixel_shuffle",
    "aten::new_zeros", "aten::zeros", "aten::zeros_like", "aten::fill_",
}
# Allocations that write nothing, and views whose schema does not say so: no bytes, no FLOPs.
_FREE_OPS = {
    "aten::empty", "aten::new_empty", "aten::empty_like", "aten::empty_strided", "aten::new_empty_strided",
    "aten::_unsafe_view", "aten::lift_fresh",
}


@dataclass
class FrameCost:
    """Work of one frame (batch 1) at one input size and precision."""

    height: int
    width: int
    dtype: str
    gflops: float
    gflops_matmul_conv: float
    gflops_scan: float
    gflops_other: float
    mbytes: float
    mbytes_weights: float

    def to_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


class _ScanTally(threading.local):
    def __init__(self) -> None:
        self.active = False
        self.flops = 0
        self.bytes = 0


_TALLY = _ScanTally()


def _nbytes(t: torch.Tensor | None) -> int:
    return 0 if t is None else t.numel() * t.element_size()


def _shape_only_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """Stand-in scan for counting: records the recurrence's FLOPs and bytes, returns an empty output."""
    batch, dim, length = u.shape
    d_state = A.shape[1]
    per_token = SCAN_FLOPS_PER_TOKEN + SOFTPLUS_FLOPS * delta_softplus + BIAS_FLOPS * (delta_bias is not None)
    per_token += D_FLOPS * (D is not None) + GATE_FLOPS * (z is not None)
    out = torch.empty_like(u)
    if _TALLY.active:
        _TALLY.flops += batch * dim * length * (SCAN_FLOPS_PER_STATE * d_state + per_token)
        _TALLY.bytes += sum(_nbytes(t) for t in (u, delta, A, B, C, D, z, delta_bias)) + _nbytes(out)
    return out


def _ensure_count_impl() -> None:
    if COUNT_IMPL not in available_impls():
        # Only for meta tensors: "auto" never picks it, and it refuses to run on real data.
        register_impl(COUNT_IMPL, _shape_only_scan, available=lambda u: u.is_meta)


def _is_view(func) -> bool:
    returns = func._schema.returns
    return bool(returns) and all(r.alias_info is not None and not r.alias_info.is_write for r in returns)


class _TrafficMode(TorchDispatchMode):
    """Sums bytes read + written per op, and 1 FLOP per element for ops the FLOP counter skips."""

    def __init__(self, counted_ops: set) -> None:
        super().__init__()
        self.counted_ops = counted_ops
        self.bytes = 0
        self.other_flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = func._schema.name
        if _is_view(func) or name in _FREE_OPS:
            return out
        tensors_in = {id(t): t for t in _tensors((args, kwargs))}
        tensors_out = list(_tensors(out))
        self.bytes += sum(_nbytes(t) for t in tensors_in.values()) + sum(_nbytes(t) for t in tensors_out)
        if func.overloadpacket not in self.counted_ops and name not in _COPY_OPS:
            self.other_flops += max((t.numel() for t in [*tensors_in.values(), *tensors_out]), default=0)
        return out


def _tensors(tree):
    if isinstance(tree, torch.Tensor):
        yield tree
    elif isinstance(tree, (list, tuple)):
        for item in tree:
            yield from _tensors(item)
    elif isinstance(tree, dict):
        for item in tree.values():
            yield from _tensors(item)


def meta_model(config: dict) -> torch.nn.Module:
    """An inference-ready model of this config whose tensors have shapes but no data."""
    fusion_mamba = importlib.import_module("fusion_edge.models.fusion_mamba")
    with torch.device("meta"):
        model = fusion_mamba.FusionMamba(**config).for_inference()
    model.check_inputs = False  # the input check reads values, which meta tensors do not have
    return model


def frame_cost(config: dict, height: int, width: int, fp16: bool = False) -> FrameCost:
    """Count the work of one (batch 1) frame of a model built from ``config`` at height x width."""
    _ensure_count_impl()
    dtype = torch.float16 if fp16 else torch.float32
    model = meta_model(config).to(dtype)
    x = torch.empty(1, model.in_chans, height, width, device="meta", dtype=dtype)
    flop_counter = FlopCounterMode(display=False)
    with torch.no_grad(), use_impl(COUNT_IMPL):
        with flop_counter:
            model(x, x)
        _TALLY.active, _TALLY.flops, _TALLY.bytes = True, 0, 0
        traffic = _TrafficMode(set(flop_counter.flop_registry))
        try:
            with traffic:
                model(x, x)
        finally:
            _TALLY.active = False
    matmul = flop_counter.get_total_flops()
    weights = sum(_nbytes(p) for p in model.parameters())
    total_bytes = traffic.bytes + _TALLY.bytes
    return FrameCost(
        height=height, width=width, dtype=str(dtype).replace("torch.", ""),
        gflops=(matmul + _TALLY.flops + traffic.other_flops) / 1e9,
        gflops_matmul_conv=matmul / 1e9, gflops_scan=_TALLY.flops / 1e9, gflops_other=traffic.other_flops / 1e9,
        mbytes=total_bytes / 1e6, mbytes_weights=weights / 1e6,
    )
