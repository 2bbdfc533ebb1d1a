"""One entry point for the selective scan, with interchangeable implementations.

The signature and semantics are mamba_ssm's ``selective_scan_fn``:
u, delta (batch, dim, L); A (dim, N); B, C (batch, groups, N, L); D, delta_bias (dim).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch

from fusion_edge.ops.selective_scan_chunked import selective_scan_chunked
from fusion_edge.ops.selective_scan_mamba import (
    mamba_ssm_available,
    mamba_ssm_unavailable_reason,
    selective_scan_mamba,
)
from fusion_edge.ops.selective_scan_ref import selective_scan_ref

ScanFn = Callable[..., torch.Tensor]

_IMPLS: dict[str, ScanFn] = {"reference": selective_scan_ref}
_AVAILABLE: dict[str, Callable[[torch.Tensor], bool]] = {"reference": lambda u: True}
_REASONS: dict[str, Callable[[torch.Tensor], str]] = {}
_default_impl = "auto"


def register_impl(
    name: str,
    fn: ScanFn,
    available: Callable[[torch.Tensor], bool] | None = None,
    unavailable_reason: Callable[[torch.Tensor], str] | None = None,
) -> None:
    """Add an implementation; ``available(u)`` says whether it can run on that input.

    ``unavailable_reason(u)``, if given, explains a False in the error raised when the
    implementation is asked for by name.
    """
    _IMPLS[name] = fn
    _AVAILABLE[name] = available or (lambda u: True)
    _REASONS.pop(name, None)
    if unavailable_reason is not None:
        _REASONS[name] = unavailable_reason


def available_impls() -> list[str]:
    return list(_IMPLS)


def set_default_impl(name: str) -> None:
    """Choose the implementation used when ``impl`` is not given ("auto" picks the fastest)."""
    global _default_impl
    if name != "auto" and name not in _IMPLS:
        raise ValueError(f"unknown selective-scan implementation {name!r}; known: auto, {', '.join(_IMPLS)}")
    _default_impl = name


@contextlib.contextmanager
def use_impl(name: str) -> Iterator[None]:
    """Temporarily switch the default implementation (for tests, export and benchmarks)."""
    previous = _default_impl
    set_default_impl(name)
    try:
        yield
    finally:
        set_default_impl(previous)


def get_default_impl() -> str:
    return _default_impl


# Order in which "auto" tries implementations: our kernel, mamba_ssm, then the portable ones.
AUTO_ORDER = ("cuda", "mamba_ssm", "chunked", "reference")


def resolve_impl(u: torch.Tensor, impl: str | None = None) -> str:
    name = impl or _default_impl
    if name != "auto":
        if name not in _IMPLS:
            raise ValueError(f"unknown selective-scan implementation {name!r}; known: {', '.join(_IMPLS)}")
        if not _AVAILABLE[name](u):
            why = _REASONS[name](u) if name in _REASONS else f"not on a {u.device} tensor here"
            raise RuntimeError(f"selective-scan implementation {name!r} cannot run: {why}")
        return name
    for candidate in AUTO_ORDER:
        if candidate in _IMPLS and _AVAILABLE[candidate](u):
            return candidate
    return "reference"


def selective_scan(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
    *,
    impl: str | None = None,
) -> torch.Tensor:
    """Selective scan y = SSM(A, B, C, delta)(u) (+ D*u, * silu(z)); see module docstring for shapes."""
    fn = _IMPLS[resolve_impl(u, impl)]
    return fn(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus)


register_impl("chunked", selective_scan_chunked)
register_impl("mamba_ssm", selective_scan_mamba, mamba_ssm_available, mamba_ssm_unavailable_reason)
