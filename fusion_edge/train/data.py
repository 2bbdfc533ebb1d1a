"""Training data: a folder of ``ir/`` and ``vis/`` images paired by file stem.

Images are read once as 8-bit grey (visible through OpenCV's BGR2GRAY, as the reference reads
it; infrared as grey) and kept in memory, on the training GPU where there is one: fusion sets
are small (RoadScene is 9 MB of JPEGs) and decoding or copying images every step would starve
a GPU. Training samples are random crops with random flips, cut a batch at a time on the
device; images smaller than the crop are padded by reflection.
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


def to_unit(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 -> float32 in [0, 1] (on the tensor's device)."""
    return pixels.float().div_(255.0)


class RandomCropPairs:
    """Random ``crop`` x ``crop`` windows of the pairs with random horizontal/vertical flips,
    cut a whole batch at a time.

    Every pair is kept as 8-bit grey in one flat buffer on ``device`` (the training GPU: the 221
    RoadScene pairs take 70 MB), so a batch is a handful of index computations and one gather,
    with no worker processes, no host-to-device copies and nothing that waits for the GPU.
    Images smaller than the crop are reflect-padded once, at load. One epoch draws ``repeats``
    crops from every pair (:meth:`epoch_order`); crop positions and flips come from the
    generator passed to :meth:`batch`, so runs are reproducible.
    """

    def __init__(self, pairs: list[ImagePair], crop: int, repeats: int = 1, flips: bool = True,
                 device: str | torch.device = "cpu") -> None:
        if not pairs:
            raise ValueError("no training pairs")
        if crop < 16:
            raise ValueError(f"crop must be at least 16 pixels (MS-SSIM has 5 levels), got {crop}")
        self.names = [p.name for p in pairs]
        self.images = [load_pair(p) for p in pairs]  # (vis, ir) uint8, as read
        self.crop, self.repeats, self.flips = crop, max(1, repeats), flips
        self._pack()
        self.to(device)

    def __len__(self) -> int:
        return len(self.images) * self.repeats

    @property
    def nbytes(self) -> int:
        """Bytes the flat buffer takes."""
        return self.pixels.numel()

    def _pack(self) -> None:
        """The flat buffer (pairs padded to at least the crop; each pair's vis plane then its ir
        plane) and the (offset, height, width) table, on the host."""
        c = self.crop
        planes, table = [], []
        offset = 0
        for vis, ir in self.images:
            vis, ir = pad_to(vis, c, c), pad_to(ir, c, c)
            planes += [vis.ravel(), ir.ravel()]
            table.append((offset, vis.shape[0], vis.shape[1]))
            offset += 2 * vis.size
        self.pixels = torch.from_numpy(np.concatenate(planes))
        self.offsets, self.heights, self.widths = torch.tensor(table, dtype=torch.int64).T.contiguous()
        self.steps = torch.arange(c)
        self.device = torch.device("cpu")

    def to(self, device: str | torch.device) -> RandomCropPairs:
        """Move the buffer and its table to ``device``."""
        self.device = torch.device(device)
        for name in ("pixels", "offsets", "heights", "widths", "steps"):
            setattr(self, name, getattr(self, name).to(self.device))
        return self

    def epoch_order(self, seed: int, epoch: int, rank: int = 0, world_size: int = 1) -> torch.Tensor:
        """Pair indices of one epoch for one process, on the buffer's device.

        Every pair appears ``repeats`` times in a permutation that depends on (seed, epoch) only,
        so all processes of a distributed run agree on it and each takes every ``world_size``-th
        entry (the same share a DistributedSampler gives).
        """
        gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch * 1_009)
        order = torch.randperm(len(self), generator=gen) % len(self.images)
        return order[rank::world_size].to(self.device)

    def batch(self, index: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """uint8 crops of the pairs ``index`` (on the buffer's device): (2, B, 1, crop, crop), vis
        first. Both modalities share each window and flip. ``generator`` lives on the same device."""
        c, b = self.crop, index.numel()
        heights, widths = self.heights[index], self.widths[index]
        draw = torch.rand((4, b), generator=generator, device=self.device)
        # floor(u * (n + 1)) for u in [0, 1); the clamp guards against rounding up to n + 1
        top = torch.minimum((draw[0] * (heights - c + 1)).long(), heights - c)
        left = torch.minimum((draw[1] * (widths - c + 1)).long(), widths - c)
        rows = self.steps.expand(b, c)
        cols = rows
        if self.flips:  # a flip reads the window's pixels in reverse order
            rows = torch.where(draw[2, :, None] < 0.5, (c - 1) - rows, rows)
            cols = torch.where(draw[3, :, None] < 0.5, (c - 1) - cols, cols)
        rows, cols = rows + top[:, None], cols + left[:, None]
        linear = (self.offsets[index, None, None] + rows[:, :, None] * widths[:, None, None] + cols[:, None, :])
        plane = (heights * widths)[:, None, None]
        return torch.take(self.pixels, torch.stack([linear, linear + plane])).unsqueeze(2)


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
