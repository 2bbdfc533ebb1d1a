"""LDC launcher: 3x3 convolution with the LDC weight transform applied inside the kernel."""

from __future__ import annotations

from typing import Any

from fusion_edge.kernels import launch, launch_params
from fusion_edge.kernels.arrays import TYPE_CODE, as_device_array, check
from fusion_edge.kernels.scan_launch import FLOAT_TYPES


def launch_ldc_conv2d(
    x: Any,
    weight: Any,
    base_mask: Any,
    learnable_mask: Any,
    theta: Any,
    out: Any = None,
    *,
    stream: Any = None,
) -> Any:
    """out (batch, Cout, H, W) = conv3x3(x, ldc_effective_weight(...)), stride 1, padding 1."""
    arrs = {
        "x": as_device_array(x, "x"),
        "weight": as_device_array(weight, "weight"),
        "base_mask": as_device_array(base_mask, "base_mask"),
        "learnable_mask": as_device_array(learnable_mask, "learnable_mask"),
        "theta": as_device_array(theta, "theta"),
    }
    xa, wa = arrs["x"], arrs["weight"]
    if len(xa.shape) != 4 or xa.dtype not in FLOAT_TYPES:
        raise ValueError(f"x must be (batch, Cin, H, W) float32/float16/bfloat16, got {xa.shape} {xa.dtype}")
    batch, cin, height, width = xa.shape
    if len(wa.shape) != 4 or wa.shape[1:] != (cin, 3, 3):
        raise ValueError(f"weight must be (Cout, Cin={cin}, 3, 3), got shape {wa.shape}")
    cout = wa.shape[0]
    check(wa, "weight", (cout, cin, 3, 3), ("float32",))
    check(arrs["base_mask"], "base_mask", (cout, cin, 3, 3), ("float32",))
    check(arrs["learnable_mask"], "learnable_mask", (cout, cin), ("float32",))
    if arrs["theta"].shape not in ((1,), ()) or arrs["theta"].dtype != "float32":
        raise ValueError(f"theta must be one float32, got {arrs['theta'].shape} {arrs['theta'].dtype}")
    result, device = launch.checked_out(arrs, out, (batch, cout, height, width), xa.dtype, stream)
    if batch * cout * height * width == 0:
        return result
    grid, block = launch_params.ldc_grid(batch, cout, height, width)
    p, i = launch.ptr, launch.i32
    args = (p(xa), p(wa), p(arrs["base_mask"]), p(arrs["learnable_mask"]), p(arrs["theta"]), p(arrs["out"]),
            i(batch), i(cin), i(cout), i(height), i(width))
    launch.run("ldc", f"fe_ldc_conv2d_{TYPE_CODE[xa.dtype]}", grid, block, args, device=device, stream=stream)
    return result
