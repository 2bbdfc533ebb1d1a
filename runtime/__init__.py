"""The streaming runtime: engines, sources, pairing, pre/post-processing, pipeline, sinks.

Never imports torch: it must run on a device that only has engines. Names are imported on
first use, so ``import fusion_edge.runtime`` is cheap.

    from fusion_edge.runtime import FusionEngine, FusionPipeline
"""

from __future__ import annotations

import importlib

_LAZY = {
    "FusionEngine": "fusion_edge.runtime.fusion_engine",
    "FusionPipeline": "fusion_edge.runtime.pipeline",
    "FusedFrame": "fusion_edge.runtime.pipeline",
    "ReconnectPolicy": "fusion_edge.runtime.pipeline",
    "PipelineStats": "fusion_edge.runtime.stats",
    "Calibration": "fusion_edge.runtime.calibration",
    "open_backend": "fusion_edge.runtime.engines",
    "available_backends": "fusion_edge.runtime.engines",
    "open_source": "fusion_edge.runtime.sources",
    "Frame": "fusion_edge.runtime.sources",
    "Source": "fusion_edge.runtime.sources",
    "CaptureSource": "fusion_edge.runtime.sources",
    "ImageFolderSource": "fusion_edge.runtime.sources",
    "ArraySource": "fusion_edge.runtime.sources",
    "SyntheticSource": "fusion_edge.runtime.sources",
    "TimestampPairer": "fusion_edge.runtime.pairing",
    "WindowSink": "fusion_edge.runtime.sinks",
    "VideoFileSink": "fusion_edge.runtime.sinks",
    "ImageFolderSink": "fusion_edge.runtime.sinks",
    "CallbackSink": "fusion_edge.runtime.sinks",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fusion_edge.runtime' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = list(_LAZY)
