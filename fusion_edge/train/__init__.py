"""Training: the reference loss, a folder dataset of IR/VIS pairs, the loop, and weight export."""

from fusion_edge.train.data import FullImagePairs, ImagePair, RandomCropPairs, find_pairs, split_pairs
from fusion_edge.train.export_weights import export_weights
from fusion_edge.train.losses import LOSS_WEIGHTS, FusionLoss, clamp_unit, msssim_reference
from fusion_edge.train.trainer import TrainConfig, Trainer, train

__all__ = [
    "LOSS_WEIGHTS",
    "FullImagePairs",
    "FusionLoss",
    "ImagePair",
    "RandomCropPairs",
    "TrainConfig",
    "Trainer",
    "clamp_unit",
    "export_weights",
    "find_pairs",
    "msssim_reference",
    "split_pairs",
    "train",
]
