"""Chunked selective scan: parallel over chunks, built from standard ops only.

Same maths as ``selective_scan_ref`` (mamba_ssm's ``selective_scan_fn``), arranged so that
the graph has no loop over tokens and exports to plain ONNX (opset 17). The sequence is cut
into chunks of ``T`` positions (the end padded with delta = 0, which neither decays nor feeds
the state) and computed in three passes:

1. local pass: inside every chunk the recurrence runs from a zero state, all chunks at
   once: ``T`` unrolled steps, each a few element-wise ops on a (batch, dim, N, chunks)
   slice, giving each chunk's end state from the step decays ``a_t = exp(delta_t * A)``
   and inputs ``b_t = delta_t * B_t * u_t``.
2. carry pass: chunk c ends in E_c = P_c * E_{c-1} + e_c, with e_c its local end state and
   P_c = exp(A * sum of delta over the chunk). A Hillis-Steele doubling scan over the chunk
   axis (log2(chunks) steps) gives every chunk the state it starts from.
3. output pass: the ``T`` steps again, from that incoming state, contracted with C_t.

Two forms of the same passes: out-of-place ops that autograd and the ONNX tracer record,
with each step's terms computed once (``_recorded_passes``), and for plain inference in-place
ops into reused buffers that recompute the terms in pass 3 (``_inference_passes``): storing
them costs more memory traffic than recomputing, and eager mode uses exp2 (2.5x faster than
exp on a CPU; ONNX has no Exp2).

Only ever exp(delta * A) is taken, as in the sequential scan: with delta >= 0 and A <= 0
every factor is in [0, 1] and products of them only shrink, so a large |delta * A|
underflows to 0 instead of overflowing. The arithmetic is about twice the sequential
scan's, but done by a few hundred ops on slices of batch * dim * N * chunks values instead of
about ten ops per token on batch * dim * N values, so it is not bound by per-op overhead.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

# Positions per chunk (unrolled steps per pass) in a traced graph: about ten nodes per step,
# so 32 keeps an exported scan to a few hundred nodes.
EXPORT_CHUNK_LEN = 32
# A traced graph cannot follow the runtime length in its number of doubling steps, so it
# covers up to 2**13 chunks: L <= 262144 at 32 positions a chunk (a 4K frame has 129600).
TRACE_CHUNKS_LOG2 = 13
# In eager mode the chunk length is picked so that one step's slice (batch * dim * N * chunks
# values) stays near this size: small enough for the CPU caches, big enough that per-op
# overhead does not count. Measured on a 2-core EPYC: 32 at dim 128, 128 at dim 768 (L = 5120).
TARGET_SLICE = 512 * 1024
MIN_CHUNK_LEN, MAX_CHUNK_LEN = 32, 256


def eager_chunk_len(state_size: int, length: int) -> int:
    """Chunk length for a (batch, dim, N, L) state of ``state_size`` values; one chunk if L is short."""
    chunk = MIN_CHUNK_LEN
    while chunk < MAX_CHUNK_LEN and state_size > chunk * TARGET_SLICE:
        chunk *= 2
    return max(1, min(chunk, length))


def check_scan_args(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    z: torch.Tensor | None,
    delta_bias: torch.Tensor | None,
) -> None:
    """Raise ValueError naming the argument whose shape or dtype breaks mamba_ssm's contract."""
    if u.dim() != 3:
        raise ValueError(f"u must be (batch, dim, L), got shape {tuple(u.shape)}")
    batch, dim, length = u.shape
    for name, t in (
        ("u", u),
        ("delta", delta),
        ("A", A),
        ("B", B),
        ("C", C),
        ("D", D),
        ("z", z),
        ("delta_bias", delta_bias),
    ):
        if t is not None and not t.is_floating_point():
            raise ValueError(f"{name} must be a real floating-point tensor, got {t.dtype}")
    if delta.shape != u.shape:
        raise ValueError(f"delta must have u's shape {tuple(u.shape)}, got {tuple(delta.shape)}")
    if z is not None and z.shape != u.shape:
        raise ValueError(f"z must have u's shape {tuple(u.shape)}, got {tuple(z.shape)}")
    if A.dim() != 2 or A.shape[0] != dim:
        raise ValueError(f"A must be (dim={dim}, N), got shape {tuple(A.shape)}")
    n_state = A.shape[1]
    for name, t in (("B", B), ("C", C)):
        groups = t.shape[1] if t.dim() == 4 else 1
        expected = (batch, groups, n_state, length) if t.dim() == 4 else (batch, n_state, length)
        if t.dim() not in (3, 4) or tuple(t.shape) != expected:
            raise ValueError(
                f"{name} must be (batch={batch}, groups, N={n_state}, L={length}) or (batch, N, L), "
                f"got shape {tuple(t.shape)}"
            )
        if groups == 0 or dim % groups:
            raise ValueError(f"{name} has {groups} groups, which does not divide dim={dim}")
    if B.dim() == 4 and C.dim() == 4 and B.shape[1] != C.shape[1]:
        raise ValueError(f"B and C must have the same groups, got {B.shape[1]} and {C.shape[1]}")
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None and tuple(t.shape) != (dim,):
            raise ValueError(f"{name} must be (dim={dim},), got shape {tuple(t.shape)}")


SOFTPLUS_THRESHOLD = 20.0


def stable_softplus(x: torch.Tensor) -> torch.Tensor:
    """torch's softplus (x itself above 20) spelled in ops every ONNX runtime has.

    The exp is clamped so that no runtime overflows in the branch it does not take, which
    also keeps that branch's gradient finite.
    """
    return torch.where(x > SOFTPLUS_THRESHOLD, x, torch.log1p(torch.exp(x.clamp(max=SOFTPLUS_THRESHOLD))))


def _steps_first(x: torch.Tensor, groups: int, rows, chunk_len: int) -> torch.Tensor:
    """(batch, groups * rows, L padded) -> (T, batch, groups, rows, chunks), contiguous.

    Each position inside the chunks becomes one contiguous slice, which the per-step ops
    read fastest. Two copies (a small 2-D transpose per row, then moving T to the front with
    the chunks contiguous) are faster than one strided permute.
    """
    x = x.reshape(x.shape[0], groups, rows, -1, chunk_len).transpose(-1, -2).contiguous()
    return x.permute(3, 0, 1, 2, 4).contiguous()


def _multiply_add(b: torch.Tensor, a: torch.Tensor, h: torch.Tensor, tracing: bool) -> torch.Tensor:
    """b + a * h: one fused op in eager mode; a recorded addcmul would add a multiply by 1."""
    return b + a * h if tracing else torch.addcmul(b, a, h)


def _incoming_states(decay: torch.Tensor, end: torch.Tensor, doublings: int, tracing: bool) -> torch.Tensor:
    """Exclusive scan of E_c = decay_c * E_{c-1} + end_c over the last axis (Hillis-Steele).

    After step j every chunk holds the composition of itself and the 2**j - 1 chunks before
    it: its state and the decay over that span.
    """
    k = 1
    for step in range(doublings):
        end = torch.cat([end[..., :k], _multiply_add(end[..., k:], decay[..., k:], end[..., :-k], tracing)], dim=-1)
        if step + 1 < doublings:
            decay = torch.cat([decay[..., :k], decay[..., k:] * decay[..., :-k]], dim=-1)
        k *= 2
    # chunk c starts from chunk c-1's end state; the first from zero
    return torch.cat([torch.zeros_like(end[..., :1]), end[..., :-1]], dim=-1)


def _recorded_passes(
    dt: torch.Tensor,
    dtu: torch.Tensor,
    Bs: torch.Tensor,
    Cs: torch.Tensor,
    A_g: torch.Tensor,
    exp: Callable[[torch.Tensor], torch.Tensor],
    doublings: int,
    tracing: bool,
) -> torch.Tensor:
    """The three passes in out-of-place ops that autograd and the ONNX tracer can record.

    Every step's terms are computed once and used by both passes (autograd keeps them anyway,
    and a graph should not compute them twice). Returns y as (T, batch, groups, per_group, chunks).
    """
    steps = [(exp(d * A_g), x * b) for d, x, b in zip(dt.split(1), dtu.split(1), Bs.split(1))]
    state = None
    if doublings:
        end = None
        for a, b in steps:
            end = b if end is None else _multiply_add(b, a, end, tracing)
        state = _incoming_states(exp(dt.sum(0, keepdim=True) * A_g), end, doublings, tracing)
    ys = []
    for (a, b), c in zip(steps, Cs.split(1)):
        state = b if state is None else _multiply_add(b, a, state, tracing)
        ys.append((c * state).sum(-2))
    return torch.cat(ys)


def _inference_passes(
    dt: torch.Tensor, dtu: torch.Tensor, Bs: torch.Tensor, Cs: torch.Tensor, A_g: torch.Tensor, doublings: int
) -> torch.Tensor:
    """The same passes for plain inference: in-place ops into one reused buffer, and the step
    terms recomputed in the output pass instead of stored (measured 10-20% faster on a CPU
    than the recorded form). ``A_g`` is pre-scaled by log2(e) for exp2.
    """
    T = dt.shape[0]
    buf = dt.new_empty(torch.broadcast_shapes(dt[:1].shape, A_g.shape, Bs[:1].shape))

    def advance(state: torch.Tensor | None, t: int) -> torch.Tensor:
        """state <- a_t * state + b_t, in place; None is the zero state."""
        if state is None:
            return torch.mul(dtu[t : t + 1], Bs[t : t + 1])
        torch.exp2(torch.mul(dt[t : t + 1], A_g, out=buf), out=buf)
        return state.mul_(buf).addcmul_(dtu[t : t + 1], Bs[t : t + 1])

    state = None
    if doublings:
        end = None
        for t in range(T):
            end = advance(end, t)
        state = _incoming_states(torch.exp2(dt.sum(0, keepdim=True) * A_g), end, doublings, False)
    ys = dt.new_empty((T, *buf.shape[1:-2], buf.shape[-1]))
    for t in range(T):
        state = advance(state, t)
        torch.sum(torch.mul(Cs[t : t + 1], state, out=buf), dim=-2, out=ys[t : t + 1])
    return ys


def selective_scan_chunked(
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
    chunk_len: int | None = None,
) -> torch.Tensor:
    """Selective scan with mamba_ssm's signature; fp32 accumulation (fp64 for fp64 input).

    u, delta, z (batch, dim, L); A (dim, N); B, C (batch, groups, N, L) or (batch, N, L);
    D, delta_bias (dim). Returns (batch, dim, L) in u's dtype.
    """
    tracing = torch.jit.is_tracing()
    if not tracing:
        check_scan_args(u, delta, A, B, C, D, z, delta_bias)
    dtype_in = u.dtype
    acc = torch.float64 if u.dtype == torch.float64 else torch.float32
    u, delta, A = u.to(acc), delta.to(acc), A.to(acc)
    B = (B if B.dim() == 4 else B.unsqueeze(1)).to(acc)
    C = (C if C.dim() == 4 else C.unsqueeze(1)).to(acc)
    if delta_bias is not None:
        delta = delta + delta_bias.to(acc)[:, None]
    if delta_softplus:  # the same function; the spelled-out form only where a graph is recorded
        delta = stable_softplus(delta) if tracing else F.softplus(delta)

    length = u.shape[-1]
    groups, n_state = B.shape[1], A.shape[1]
    per_group = u.shape[1] // groups
    if tracing:  # the graph's structure must not depend on the traced length
        T = chunk_len or EXPORT_CHUNK_LEN
    else:
        if length == 0:
            return torch.zeros_like(u, dtype=dtype_in)
        T = min(chunk_len, length) if chunk_len else eager_chunk_len(u.numel() * n_state, length)
    pad = (-length) % T
    # (T, batch, groups, per_group, 1, chunks): one slice per position inside the chunks.
    dt = _steps_first(F.pad(delta, (0, pad)), groups, per_group, T).unsqueeze(-2)
    dtu = _steps_first(F.pad(delta * u, (0, pad)), groups, per_group, T).unsqueeze(-2)
    # (T, batch, groups, 1, N, chunks): shared by the channels of a group.
    Bs = _steps_first(F.pad(B, (0, pad)), groups, n_state, T).unsqueeze(3)
    Cs = _steps_first(F.pad(C, (0, pad)), groups, n_state, T).unsqueeze(3)
    # exp(x) = exp2(x * log2(e)): torch's exp2 is about 2.5x faster than exp on a CPU (the scan's
    # main cost). ONNX has no Exp2, so a recorded graph keeps Exp.
    exp, A_scaled = (torch.exp, A) if tracing else (torch.exp2, A * math.log2(math.e))
    A_g = A_scaled.reshape(groups, per_group, n_state, 1)

    n_chunks = dt.shape[-1]
    doublings = TRACE_CHUNKS_LOG2 if tracing else math.ceil(math.log2(n_chunks))  # 0: one chunk, no carry
    if tracing or (torch.is_grad_enabled() and any(x.requires_grad for x in (dt, dtu, Bs, Cs, A_g))):
        ys = _recorded_passes(dt, dtu, Bs, Cs, A_g, exp, doublings, tracing)
    else:
        ys = _inference_passes(dt, dtu, Bs, Cs, A_g, doublings)
    # (T, batch, groups, per_group, chunks) -> (batch, dim, L): the inverse of _steps_first
    y = ys.permute(1, 2, 3, 0, 4).contiguous().transpose(-1, -2)
    y = y.reshape(u.shape[0], u.shape[1], -1)[..., :length]
    if D is not None:
        y = y + u * D.to(acc)[:, None]
    if z is not None:
        y = y * F.silu(z.to(acc))
    return y.to(dtype_in)
