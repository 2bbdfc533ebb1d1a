"""fusion-edge: FusionMamba infrared/visible fusion from training to a live camera feed.

Importing this package is cheap: torch is only imported when a model symbol is used, so
``fusion_edge.runtime`` works on machines without torch.
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "FusionMamba": "fusion_edge.models",
    "create_model": "fusion_edge.models",
    "PRESETS": "fusion_edge.models",
    "load_checkpoint": "fusion_edge.models.checkpoint",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fusion_edge' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
