"""Turn a FusionMamba into the module that gets traced: folded, padded in-graph, clamped.

The exported graph follows the model I/O contract: inputs ``vis`` and ``ir`` (B, 1, H, W) float32
in [0, 1], output ``fused`` (B, 1, H, W) float32 clamped to [0, 1]. Sizes that are not multiples
of 32 are padded inside the graph (reflect, as ``FusionMamba.forward`` does) and cropped back,
with the pad amounts computed from the input shape so that a dynamic graph accepts any size.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from fusion_edge.models.fusion_mamba import SIZE_MULTIPLE, FusionMamba
from fusion_edge.models.ss2d import _ES2DParams
from fusion_edge.ops.es2d import es2d_conv_scan

# Tensors the scan reads in fp32 even in an fp16 export (A = -exp(A_logs) and the softplus of
# delta need the range; the scan itself always runs in fp32).
SCAN_PARAMS = ("x_proj_weight", "dt_projs_weight", "dt_projs_bias", "A_logs", "Ds")


def inference_copy(model: FusionMamba, fold_ldc: bool = True) -> FusionMamba:
    """``model.for_inference()``, optionally keeping every LDC unfolded (for ``--no-fold-ldc``)."""
    return model.for_inference(fold_ldc=fold_ldc)


def pad_mode_for(height: int, width: int) -> str:
    """The padding FusionMamba.forward uses at this size (reflect unless the image is tiny)."""
    pad_h, pad_w = (-height) % SIZE_MULTIPLE, (-width) % SIZE_MULTIPLE
    return "reflect" if pad_h < height and pad_w < width else "replicate"


class ExportWrapper(nn.Module):
    """pad to a multiple of 32 -> network head -> crop -> + global residual of the unpadded pair -> clamp,
    in fp32 or fp16 (as ``FusionMamba.forward``)."""

    def __init__(self, model: FusionMamba, *, fp16: bool = False, pad_mode: str = "reflect") -> None:
        super().__init__()
        self.model = model
        self.fp16 = fp16
        self.pad_mode = pad_mode

    def forward(self, vis: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        h, w = vis.shape[-2], vis.shape[-1]
        pad_h = (SIZE_MULTIPLE - h % SIZE_MULTIPLE) % SIZE_MULTIPLE
        pad_w = (SIZE_MULTIPLE - w % SIZE_MULTIPLE) % SIZE_MULTIPLE
        x1 = F.pad(vis, (0, pad_w, 0, pad_h), mode=self.pad_mode)
        x2 = F.pad(ir, (0, pad_w, 0, pad_h), mode=self.pad_mode)
        if self.fp16:
            x1, x2, vis, ir = x1.half(), x2.half(), vis.half(), ir.half()
        head = self.model.head_padded(x1, x2)[:, :, :h, :w]
        return self.model.add_residual(head, vis, ir).float().clamp(0.0, 1.0)


def to_fp16(model: FusionMamba) -> FusionMamba:
    """Half-precision copy whose scan parameters stay fp32 (the scan is computed in fp32)."""
    keep = {
        (id(m), name): getattr(m, name).detach().clone()
        for m in model.modules()
        if isinstance(m, _ES2DParams)
        for name in SCAN_PARAMS
    }
    half = model.half()
    for m in half.modules():
        if isinstance(m, _ES2DParams):
            for name in SCAN_PARAMS:
                getattr(m, name).data = keep[(id(m), name)]
    return half


def prepare(
    model: FusionMamba, *, fold_ldc: bool = True, fp16: bool = False, pad_mode: str = "reflect"
) -> ExportWrapper:
    """The module to trace: inference copy (folded unless asked), optional fp16, I/O contract."""
    prepared = inference_copy(model, fold_ldc=fold_ldc).float().cpu()
    if fp16:
        prepared = to_fp16(prepared)
    return ExportWrapper(prepared, fp16=fp16, pad_mode=pad_mode).eval()


@contextlib.contextmanager
def swapped_ops(es2d: Callable | None = None, ldc: Callable | None = None) -> Iterator[None]:
    """Route the model's ES2D and LDC calls through other functions while tracing.

    The model modules call ``es2d_conv_scan`` / ``ldc_conv2d`` through their module globals, so the
    swap reaches every block (``es2d`` takes the map ``es2d_conv_scan`` computes, in place of ``es2d_scan``).
    Not thread-safe: export one model at a time per process.
    """
    import fusion_edge.models.ldc as ldc_module
    import fusion_edge.models.ss2d as ss2d_module

    saved = ss2d_module.es2d_conv_scan, ldc_module.ldc_conv2d
    try:
        if es2d is not None:
            ss2d_module.es2d_conv_scan = functools.partial(es2d_conv_scan, scan=es2d)
        if ldc is not None:
            ldc_module.ldc_conv2d = ldc
        yield
    finally:
        ss2d_module.es2d_conv_scan, ldc_module.ldc_conv2d = saved
