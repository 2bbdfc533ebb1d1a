"""FusionMamba and its building blocks."""

from fusion_edge.models.fusion_mamba import FusionMamba
from fusion_edge.models.presets import PRESETS, create_model

__all__ = ["PRESETS", "FusionMamba", "create_model"]
