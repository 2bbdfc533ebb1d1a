"""Adapter for the optional ``mamba_ssm`` package's CUDA selective scan.

mamba_ssm is not a dependency: it is imported the first time it is asked for, and the
dispatch only offers it for CUDA tensors when the import works.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

INSTALL_HINT = "pip install mamba-ssm (needs a CUDA build of torch and a CUDA toolkit)"
# Input dtypes its kernel is compiled for (no fp64).
KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@functools.lru_cache(maxsize=1)
def _load() -> tuple[Callable[..., torch.Tensor] | None, str]:
    """(selective_scan_fn, "") when mamba_ssm imports, else (None, why not)."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except ImportError as exc:  # absent, or its compiled extension does not load here
        return None, f"mamba_ssm is not importable ({exc}); {INSTALL_HINT}"
    except Exception as exc:  # a broken install (missing CUDA libraries, ABI mismatch) must not break "auto"
        return None, f"mamba_ssm failed to import ({type(exc).__name__}: {exc})"
    return selective_scan_fn, ""


def mamba_ssm_available(u: torch.Tensor) -> bool:
    """True when mamba_ssm imports and ``u`` is a CUDA tensor of a dtype its kernel takes."""
    return u.is_cuda and u.dtype in KERNEL_DTYPES and _load()[0] is not None


def mamba_ssm_unavailable_reason(u: torch.Tensor) -> str:
    """Why ``mamba_ssm_available(u)`` is False, in words a user can act on."""
    fn, why = _load()
    if fn is None:
        return why
    if not u.is_cuda:
        return f"mamba_ssm's selective scan runs on CUDA tensors only, got a {u.device} tensor"
    if u.dtype not in KERNEL_DTYPES:
        return f"mamba_ssm's selective scan takes float32, float16 or bfloat16 input, got {u.dtype}"
    return ""


def selective_scan_mamba(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
) -> torch.Tensor:
    """mamba_ssm's ``selective_scan_fn`` with our signature; raises RuntimeError when it cannot run."""
    if not mamba_ssm_available(u):
        raise RuntimeError(f"selective-scan implementation 'mamba_ssm' cannot run: {mamba_ssm_unavailable_reason(u)}")
    fn, _ = _load()
    # Its kernel wants delta, B, C, z in u's dtype and A, D, delta_bias in fp32.
    dtype = u.dtype
    return fn(
        u,
        delta.to(dtype),
        A.float(),
        B.to(dtype),
        C.to(dtype),
        D=None if D is None else D.float(),
        z=None if z is None else z.to(dtype),
        delta_bias=None if delta_bias is None else delta_bias.float(),
        delta_softplus=delta_softplus,
    )
