"""Training data: a folder of ``ir/`` and ``vis/`` images paired by file stem.

Images are read once as 8-bit grey (visible through OpenCV's BGR2GRAY, as the reference reads
it; infrared as grey) and kept in memory: fusion sets are small (RoadScene is 9 MB) and decoding
JPEGs every step would starve a GPU. Training samples are random crops with random flips;
images smaller than the crop are padded by reflection.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


@dataclass(frozen=True)
class ImagePair:
    name: str
    ir: Path
    vis: Path


def _images_by_stem(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
            if path.stem in found:
                raise ValueError(f"two images named {path.stem!r} in {folder}: {found[path.stem].name}, {path.name}")
            found[path.stem] = path
    return found


def find_pairs(root: str | Path) -> list[ImagePair]:
    """Pairs ``root/ir/NAME.*`` with ``root/vis/NAME.*``; every image must have its partner."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder not found: {root}")
    folders = {name: root / name for name in ("ir", "vis")}
    missing = [name + "/" for name, folder in folders.items() if not folder.is_dir()]
    if missing:
        raise FileNotFoundError(f"{root} needs sub-folders ir/ and vis/; missing: {', '.join(missing)}")
    ir, vis = _images_by_stem(folders["ir"]), _images_by_stem(folders["vis"])
    if not ir and not vis:
        raise ValueError(f"no images ({', '.join(sorted(IMAGE_EXTENSIONS))}) in {folders['ir']} or {folders['vis']}")
    only_ir, only_vis = sorted(set(ir) - set(vis)), sorted(set(vis) - set(ir))
    if only_ir or only_vis:
        parts = []
        if only_ir:
            parts.append(f"{len(only_ir)} in ir/ without a vis/ partner (e.g. {', '.join(only_ir[:3])})")
        if only_vis:
            parts.append(f"{len(only_vis)} in vis/ without an ir/ partner (e.g. {', '.join(only_vis[:3])})")
        raise ValueError(f"unmatched image names in {root}: " + "; ".join(parts))
    return [ImagePair(stem, ir[stem], vis[stem]) for stem in sorted(ir)]


def split_pairs(pairs: list[ImagePair], val_fraction: float, seed: int = 0) -> tuple[list[ImagePair], list[ImagePair]]:
    """Deterministic (train, val) split; at least one training pair, and one val pair if asked for any."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    n_val = min(len(pairs) - 1, max(1, round(val_fraction * len(pairs)))) if val_fraction > 0 else 0
    val = sorted((pairs[i] for i in order[:n_val]), key=lambda p: p.name)
    train = sorted((pairs[i] for i in order[n_val:]), key=lambda p: p.name)
    return train, val


def read_grey(path: Path, visible: bool) -> np.ndarray:
    """8-bit grey image; the visible one through BGR2GRAY like the reference (grey files pass through)."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR if visible else cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise ValueError(f"cannot read image {path}")
    if visible:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    return image


def load_pair(pair: ImagePair) -> tuple[np.ndarray, np.ndarray]:
    """(vis, ir) uint8 arrays of one size."""
    vis, ir = read_grey(pair.vis, visible=True), read_grey(pair.ir, visible=False)
    if vis.shape != ir.shape:
        raise ValueError(f"pair {pair.name!r}: visible is {vis.shape[1]}x{vis.shape[0]} but infrared is "
                         f"{ir.shape[1]}x{ir.shape[0]}; register and resize the pair first")
    return vis, ir


def pad_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Reflect-pad bottom/right so the image is at least height x width."""
    ph, pw = max(0, height - image.shape[0]), max(0, width - image.shape[1])
    if not ph and not pw:
        return image
    mode = "reflect" if min(image.shape[:2]) > 1 else "edge"
    return np.pad(image, ((0, ph), (0, pw)), mode=mode)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).float().div_(255.0)[None]


class RandomCropPairs(Dataset):
    """Random ``crop`` x ``crop`` windows of the pairs with random horizontal/vertical flips.

    One epoch draws ``repeats`` crops from every pair. Randomness comes from torch's generator,
    which the DataLoader seeds per worker from the training seed, so runs are reproducible.
    Items are ``(vis, ir)``, each (1, crop, crop) float32 in [0, 1].
    """

    def __init__(self, pairs: list[ImagePair], crop: int, repeats: int = 1, flips: bool = True) -> None:
        if not pairs:
            raise ValueError("no training pairs")
        if crop < 16:
            raise ValueError(f"crop must be at least 16 pixels (MS-SSIM has 5 levels), got {crop}")
        self.names = [p.name for p in pairs]
        self.images = [load_pair(p) for p in pairs]
        self.crop, self.repeats, self.flips = crop, max(1, repeats), flips

    def __len__(self) -> int:
        return len(self.images) * self.repeats

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        vis, ir = self.images[index % len(self.images)]
        c = self.crop
        vis, ir = pad_to(vis, c, c), pad_to(ir, c, c)
        h, w = vis.shape
        top = int(torch.randint(0, h - c + 1, ()).item())
        left = int(torch.randint(0, w - c + 1, ()).item())
        vis, ir = vis[top : top + c, left : left + c], ir[top : top + c, left : left + c]
        if self.flips:
            if torch.rand(()) < 0.5:
                vis, ir = vis[:, ::-1], ir[:, ::-1]
            if torch.rand(()) < 0.5:
                vis, ir = vis[::-1], ir[::-1]
        return to_tensor(vis), to_tensor(ir)


class FullImagePairs(Dataset):
    """Whole pairs for validation, optionally centre-cropped to at most ``max_side`` per side.

    Items are ``(vis, ir)`` (1, H, W); sizes differ between pairs, so load with batch size 1.
    """

    def __init__(self, pairs: list[ImagePair], max_side: int | None = None) -> None:
        self.names = [p.name for p in pairs]
        self.images = [load_pair(p) for p in pairs]
        self.max_side = max_side

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        vis, ir = self.images[index]
        if self.max_side:
            h, w = vis.shape
            th, tw = min(h, self.max_side), min(w, self.max_side)
            top, left = (h - th) // 2, (w - tw) // 2
            vis, ir = vis[top : top + th, left : left + tw], ir[top : top + th, left : left + tw]
        # MS-SSIM needs 16 px per side; tiny images are padded like training crops
        vis, ir = pad_to(vis, 16, 16), pad_to(ir, 16, 16)
        return to_tensor(vis), to_tensor(ir)
