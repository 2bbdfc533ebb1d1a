"""Small ops of the blocks in two forms: the library call (eager, export) and elementwise math for torch.compile.

Compiled, each library call is its own cuBLAS/cuDNN launch that inductor cannot fuse with anything: a
depthwise 3x3 conv on a few dozen channels, a linear on one pooled vector, ECA's 3-tap conv along the
channels. Those are a few microseconds of launch for nanoseconds of work, and there are about a hundred of
them per frame in the small presets. Written as shifted multiply-adds and broadcast sums they become
Triton code that inductor fuses with the neighbouring layout change, bias, activation and gating. Eager
PyTorch and the ONNX exporter keep the library calls, which are faster there and map to single graph nodes.

``impl`` picks a form: ``"auto"`` (elementwise while compiling, library otherwise), ``"library"``,
``"elementwise"``; ``None`` follows :func:`set_default_impl` (``"auto"`` unless changed), which is how a
benchmark compiles the model both ways.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IMPLS = ("auto", "library", "elementwise")
_default_impl = "auto"


def set_default_impl(impl: str) -> None:
    """The form every op of this module uses when called without ``impl``."""
    global _default_impl
    _check(impl)
    _default_impl = impl


def get_default_impl() -> str:
    return _default_impl


def _check(impl: str) -> None:
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")


def _elementwise(impl: str | None) -> bool:
    impl = _default_impl if impl is None else impl
    _check(impl)
    return impl == "elementwise" or (impl == "auto" and torch.compiler.is_compiling())


def depthwise_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, impl: str | None = None,
                     channels_last: bool = False) -> torch.Tensor:
    """Depthwise 'same' conv, stride 1, odd square kernel: (B, C, H, W) of any strides -> dense (B, C, H, W),
    stored channels-last with ``channels_last`` (the ES2D scan reads either layout), else contiguous.

    The library form makes ``x`` dense in that layout first, so cuDNN writes the dense map directly (a
    strided view would cost cuDNN its own copy). The elementwise form computes in (B, H, W, C) order, each
    output pixel's channels one run of the channels-last input a linear layer wrote, so with
    ``channels_last`` the compiled kernel reads and writes rows instead of transposing.
    """
    channels, _, k, k2 = weight.shape
    if weight.shape[1] != 1 or k != k2 or k % 2 == 0 or x.shape[1] != channels:
        raise ValueError(f"depthwise_conv2d needs a (C, 1, k, k) weight, k odd, C = x's channels; "
                         f"got weight {tuple(weight.shape)} for x {tuple(x.shape)}")
    layout = torch.channels_last if channels_last else torch.contiguous_format
    if not _elementwise(impl):
        out = F.conv2d(x.contiguous(memory_format=layout), weight, bias, padding=k // 2, groups=channels)
        return out.contiguous(memory_format=layout)
    rows = x.permute(0, 2, 3, 1)
    h, w = rows.shape[1:3]
    padded = F.pad(rows, (0, 0, k // 2, k // 2, k // 2, k // 2))
    taps = weight.reshape(channels, k * k).t()
    out = None
    for i in range(k):
        for j in range(k):
            term = padded[:, i : i + h, j : j + w, :] * taps[i * k + j]
            out = term if out is None else out + term
    if bias is not None:
        out = out + bias
    return out.permute(0, 3, 1, 2).contiguous(memory_format=layout)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, impl: str | None = None) -> torch.Tensor:
    """``F.linear``; the elementwise form is a broadcast multiply and a sum over the input features, meant
    for a pooled vector (a handful of rows), where a GEMM launch costs far more than the arithmetic."""
    if not _elementwise(impl):
        return F.linear(x, weight, bias)
    out = (x.unsqueeze(-2) * weight).sum(-1)
    return out if bias is None else out + bias


def channel_conv1d(x: torch.Tensor, weight: torch.Tensor, impl: str | None = None) -> torch.Tensor:
    """ECA's conv along the channel axis of a pooled (B, C) vector: one input and output channel, an odd
    kernel, zero 'same' padding, no bias; weight (1, 1, k)."""
    if weight.dim() != 3 or weight.shape[:2] != (1, 1) or weight.shape[2] % 2 == 0:
        raise ValueError(f"channel_conv1d needs a (1, 1, k) weight with k odd, got {tuple(weight.shape)}")
    k = weight.shape[2]
    if not _elementwise(impl):
        return F.conv1d(x.unsqueeze(1), weight, padding=k // 2).squeeze(1)
    channels = x.shape[-1]
    padded = F.pad(x, (k // 2, k // 2))
    taps = weight.reshape(k)
    out = padded[:, 0:channels] * taps[0]
    for i in range(1, k):
        out = out + padded[:, i : i + channels] * taps[i]
    return out
