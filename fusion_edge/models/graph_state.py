"""Whether the current call is being traced or captured: code that must stay graph-friendly asks here."""

from __future__ import annotations

import torch


def is_tracing() -> bool:
    """True while a graph is being traced (TorchScript, ONNX export, torch.compile): one stream only."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()


def is_capturing() -> bool:
    """True while the current CUDA stream is being captured into a CUDA graph."""
    return torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()


def is_exporting() -> bool:
    """True while tracing, exporting, compiling or capturing a CUDA graph: no host syncs allowed."""
    return is_tracing() or is_capturing()
