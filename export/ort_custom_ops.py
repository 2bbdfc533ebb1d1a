"""Run plugin-flavour graphs in ONNX Runtime on a CPU, through onnxruntime-extensions.

The custom nodes get NumPy implementations written independently of the PyTorch ops (same
maths as MODEL.md sections 2.9 and 3.2-3.3, computed in float64), so a parity check of the
plugin graph tests the node wiring, the attribute contract and the maths, not PyTorch twice.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .contract import ES2D_OP, LDC_OP, SCAN_OP

ROUTES = 4
_REGISTERED = False
MISSING_HINT = (
    "running plugin-flavour graphs in ONNX Runtime needs onnxruntime-extensions: pip install onnxruntime-extensions"
)


# ---------------------------------------------------------------------------- maths
def softplus(x: np.ndarray) -> np.ndarray:
    """log(1 + e^x), returning x itself above 20 (PyTorch's threshold)."""
    return np.where(x > 20.0, x, np.log1p(np.exp(np.minimum(x, 20.0))))


def gather_routes(x: np.ndarray) -> np.ndarray:
    """(B, D, h, w) -> (B, 4, D, L'): zero-pad odd sizes, then the four stride-2 routes."""
    b, d, h, w = x.shape
    x = np.pad(x, ((0, 0), (0, 0), (0, h % 2), (0, w % 2)))
    h2, w2 = x.shape[2] // 2, x.shape[3] // 2
    routes = (
        x[:, :, 0::2, 0::2],  # even rows, even cols, row-major
        x[:, :, 1::2, 0::2].transpose(0, 1, 3, 2),  # odd rows, even cols, column-major
        x[:, :, 0::2, 1::2],  # even rows, odd cols, row-major
        x[:, :, 1::2, 1::2].transpose(0, 1, 3, 2),  # odd rows, odd cols, column-major
    )
    return np.stack([r.reshape(b, d, h2 * w2) for r in routes], axis=1)


def scatter_routes(ys: np.ndarray, h: int, w: int) -> np.ndarray:
    """Inverse of :func:`gather_routes`, cropping the padding: (B, 4, D, L') -> (B, D, h, w)."""
    b, _, d, _ = ys.shape
    h2, w2 = (h + h % 2) // 2, (w + w % 2) // 2
    full = np.zeros((b, d, 2 * h2, 2 * w2), dtype=ys.dtype)
    full[:, :, 0::2, 0::2] = ys[:, 0].reshape(b, d, h2, w2)
    full[:, :, 1::2, 0::2] = ys[:, 1].reshape(b, d, w2, h2).transpose(0, 1, 3, 2)
    full[:, :, 0::2, 1::2] = ys[:, 2].reshape(b, d, h2, w2)
    full[:, :, 1::2, 1::2] = ys[:, 3].reshape(b, d, w2, h2).transpose(0, 1, 3, 2)
    return full[:, :, :h, :w]


def es2d_scan_numpy(x, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds) -> np.ndarray:
    """ES2D core: route gather, per-route projections, selective scan, scatter. float64 inside."""
    x = np.asarray(x, dtype=np.float64)
    b, d, h, w = x.shape
    rank = dt_projs_weight.shape[2]
    n = A_logs.shape[1]
    xs = gather_routes(x)  # (b, k, d, l)
    proj = np.einsum("bkdl,kcd->bkcl", xs, x_proj_weight.astype(np.float64))
    dts, Bs, Cs = proj[:, :, :rank], proj[:, :, rank : rank + n], proj[:, :, rank + n :]
    delta = np.einsum("bkrl,kdr->bkdl", dts, dt_projs_weight.astype(np.float64))
    delta = softplus(delta + dt_projs_bias.astype(np.float64).reshape(ROUTES, d)[None, :, :, None])
    A = -np.exp(A_logs.astype(np.float64)).reshape(ROUTES, d, n)
    D = Ds.astype(np.float64).reshape(ROUTES, d)
    state = np.zeros((b, ROUTES, d, n))
    ys = np.empty_like(xs)
    for t in range(xs.shape[-1]):
        dt = delta[..., t, None]  # (b, k, d, 1)
        state = np.exp(dt * A) * state + dt * Bs[:, :, None, :, t] * xs[..., t, None]
        ys[..., t] = np.einsum("bkdn,bkn->bkd", state, Cs[..., t]) + D * xs[..., t]
    return scatter_routes(ys, h, w).astype(np.float32)


def selective_scan_numpy(u, delta, A, B, C, D, delta_bias, delta_softplus: bool = True) -> np.ndarray:
    """Selective scan (mamba_ssm semantics, no z) in float64: u, delta (b, d, l); A (d, n); B, C (b, g, n, l)."""
    u = np.asarray(u, dtype=np.float64)
    b, d, length = u.shape
    groups = B.shape[1]
    if d % groups:
        raise ValueError(f"{SCAN_OP}: B has {groups} groups, which must divide {d} channels")
    delta = np.asarray(delta, dtype=np.float64) + np.asarray(delta_bias, dtype=np.float64)[None, :, None]
    if delta_softplus:
        delta = softplus(delta)
    A = np.asarray(A, dtype=np.float64)
    D = np.asarray(D, dtype=np.float64)
    B, C = np.asarray(B, dtype=np.float64), np.asarray(C, dtype=np.float64)
    per_group = d // groups
    state = np.zeros((b, d, A.shape[1]))
    y = np.empty((b, d, length))
    for t in range(length):
        dt = delta[:, :, t, None]  # (b, d, 1)
        b_t = np.repeat(B[..., t], per_group, axis=1)  # (b, d, n)
        c_t = np.repeat(C[..., t], per_group, axis=1)
        state = np.exp(dt * A[None]) * state + dt * b_t * u[:, :, t, None]
        y[:, :, t] = np.einsum("bdn,bdn->bd", state, c_t) + D[None] * u[:, :, t]
    return y.astype(np.float32)


def ldc_effective_weight_numpy(weight, base_mask, learnable_mask, theta) -> np.ndarray:
    weight = weight.astype(np.float64)
    centre = np.zeros((3, 3))
    centre[1, 1] = 1.0
    kernel_sum = weight.sum(axis=(2, 3), keepdims=True)
    mask = base_mask - float(np.ravel(theta)[0]) * learnable_mask[:, :, None, None] * centre * kernel_sum
    return weight * mask


def conv3x3_numpy(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """3x3 convolution, stride 1, zero padding 1, no bias (cross-correlation, as conv2d)."""
    b, cin, h, w = x.shape
    padded = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((b, weight.shape[0], h, w))
    for a in range(3):
        for c in range(3):
            out += np.einsum("bihw,oi->bohw", padded[:, :, a : a + h, c : c + w], weight[:, :, a, c])
    return out


def ldc_numpy(x, weight, base_mask, learnable_mask, theta) -> np.ndarray:
    w_eff = ldc_effective_weight_numpy(weight, base_mask, learnable_mask, theta)
    return conv3x3_numpy(np.asarray(x), w_eff).astype(np.float32)


# ---------------------------------------------------------------------- registration
def _import_extensions():
    try:
        import onnxruntime_extensions
    except ImportError as exc:
        raise ImportError(MISSING_HINT) from exc
    return onnxruntime_extensions


def register() -> None:
    """Declare the custom nodes to onnxruntime-extensions (once per process)."""
    global _REGISTERED
    if _REGISTERED:
        return
    ext = _import_extensions()
    onnx_op, dt = ext.onnx_op, ext.PyCustomOpDef
    plugin_attrs = {"plugin_version": dt.dt_string, "plugin_namespace": dt.dt_string}

    @onnx_op(
        op_type=ES2D_OP,
        inputs=[dt.dt_float] * 6,
        outputs=[dt.dt_float],
        attrs={**plugin_attrs, "d_state": dt.dt_int64, "dt_rank": dt.dt_int64},
    )
    def fusion_edge_es2d_scan(x, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds, **attrs):
        if A_logs.shape[1] != attrs.get("d_state", A_logs.shape[1]):
            raise ValueError(f"{ES2D_OP}: d_state attribute {attrs['d_state']} != A_logs width {A_logs.shape[1]}")
        return es2d_scan_numpy(x, x_proj_weight, dt_projs_weight, dt_projs_bias, A_logs, Ds)

    @onnx_op(
        op_type=SCAN_OP,
        inputs=[dt.dt_float] * 7,
        outputs=[dt.dt_float],
        attrs={**plugin_attrs, "d_state": dt.dt_int64, "delta_softplus": dt.dt_int64},
    )
    def fusion_edge_selective_scan(u, delta, A, B, C, D, delta_bias, **attrs):
        if A.shape[1] != attrs.get("d_state", A.shape[1]):
            raise ValueError(f"{SCAN_OP}: d_state attribute {attrs['d_state']} != A width {A.shape[1]}")
        return selective_scan_numpy(u, delta, A, B, C, D, delta_bias, bool(attrs.get("delta_softplus", 1)))

    @onnx_op(op_type=LDC_OP, inputs=[dt.dt_float] * 5, outputs=[dt.dt_float], attrs=plugin_attrs)
    def fusion_edge_ldc(x, weight, base_mask, learnable_mask, theta, **attrs):
        return ldc_numpy(x, weight, base_mask, learnable_mask, theta)

    _REGISTERED = True


def session(path: str | Path, *, threads: int | None = None):
    """An ONNX Runtime CPU session that can run plugin-flavour (and portable) graphs."""
    import onnxruntime as ort

    ext = _import_extensions()
    register()
    options = ort.SessionOptions()
    options.register_custom_ops_library(ext.get_library_path())
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
