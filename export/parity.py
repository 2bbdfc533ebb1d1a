"""Parity of an exported graph against the PyTorch model, on real image pairs.

The graph runs in ONNX Runtime on the CPU (plugin graphs through our onnxruntime-extensions
ops); the reference is the PyTorch model in fp32 as loaded (LDCs unfolded, nothing dropped),
its output clamped to [0, 1] like the graph's. Both are compared as images in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import cv2
import numpy as np
import torch

from fusion_edge.imaging import read_image, split_luma, to_grey, to_unit_float

TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


@dataclass
class Pair:
    name: str
    vis: np.ndarray  # (H, W) float32 in [0, 1]: grey, or the Y (luma) of a colour image
    ir: np.ndarray


def to_luma(image: np.ndarray) -> np.ndarray:
    """The model's visible input: grey as is, colour as its YCrCb luma (the fuse command's rule)."""
    unit = to_unit_float(image)
    if unit.ndim == 3:
        return split_luma(unit)[0]
    return unit


def fit(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Centre-crop to the target aspect ratio, then resize (area filter) to (height, width)."""
    h, w = image.shape[:2]
    target = width / height
    if w / h > target:
        new_w = max(1, round(h * target))
        x0 = (w - new_w) // 2
        image = image[:, x0 : x0 + new_w]
    else:
        new_h = max(1, round(w / target))
        y0 = (h - new_h) // 2
        image = image[y0 : y0 + new_h]
    interp = cv2.INTER_AREA if image.shape[0] >= height else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interp).astype(np.float32)


def pair_files(folder: str | Path) -> list[tuple[str, Path, Path]]:
    """Pairs of a folder with ``vis/`` and ``ir/`` subfolders holding files of the same names."""
    folder = Path(folder)
    vis_dir, ir_dir = folder / "vis", folder / "ir"
    if not vis_dir.is_dir() or not ir_dir.is_dir():
        raise FileNotFoundError(f"parity data folder {folder} needs vis/ and ir/ subfolders with matching names")
    names = sorted(
        p.name for p in vis_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and (ir_dir / p.name).is_file()
    )
    if not names:
        raise FileNotFoundError(f"no matching image pairs in {vis_dir} and {ir_dir}")
    return [(Path(n).stem, vis_dir / n, ir_dir / n) for n in names]


def bundled_pair_files() -> list[tuple[str, Path, Path]]:
    """The sample pair that ships with the package (a registered 640x480 M3SVD frame)."""
    assets = Path(str(resources.files("fusion_edge") / "assets"))
    vis, ir = assets / "sample_vis.jpg", assets / "sample_ir.jpg"
    if not vis.is_file() or not ir.is_file():
        raise FileNotFoundError(f"the bundled sample pair is missing from {assets}")
    return [("sample", vis, ir)]


def load_pairs(files: list[tuple[str, Path, Path]], height: int, width: int, count: int) -> list[Pair]:
    """Read up to ``count`` pairs, spread evenly over the list, fitted to (height, width)."""
    if count <= 0:
        return []
    step = max(1, len(files) // count)
    chosen = files[::step][:count]
    pairs = []
    for name, vis, ir in chosen:
        vis_luma = to_luma(read_image(vis))
        ir_grey = to_unit_float(to_grey(read_image(ir)))
        pairs.append(Pair(name, fit(vis_luma, height, width), fit(ir_grey, height, width)))
    return pairs


@dataclass
class ParityReport:
    """What goes into the manifest's ``parity`` section."""

    runtime: str
    reference: str
    precision: str
    tolerance: float
    max_abs_diff: float = 0.0
    mean_abs_diff: float = 0.0
    cases: list[dict] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tolerance

    def as_dict(self) -> dict:
        return {
            "runtime": self.runtime,
            "reference": self.reference,
            "precision": self.precision,
            "tolerance": self.tolerance,
            "max_abs_diff": self.max_abs_diff,
            "mean_abs_diff": self.mean_abs_diff,
            "passed": self.passed,
            "cases": self.cases,
        }


def ort_session(onnx_path: str | Path, flavour: str):
    """ONNX Runtime CPU session; plugin graphs get our custom ops."""
    if flavour == "plugin":
        from .ort_custom_ops import session

        return session(onnx_path)
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ImportError("parity checks need onnxruntime: pip install onnxruntime") from exc
    return ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])


def runtime_name(flavour: str) -> str:
    import onnxruntime as ort

    name = f"onnxruntime {ort.__version__} CPUExecutionProvider"
    if flavour == "plugin":
        import onnxruntime_extensions as ext

        name += f" + onnxruntime-extensions {ext.__version__} Python custom ops (NumPy)"
    return name


@torch.no_grad()
def measure(
    model: torch.nn.Module,
    onnx_path: str | Path,
    pairs_by_size: dict[tuple[int, int], list[Pair]],
    *,
    flavour: str,
    precision: str = "fp32",
) -> ParityReport:
    """Run every pair through the graph and the PyTorch model; report the largest differences."""
    session = ort_session(onnx_path, flavour)
    report = ParityReport(
        runtime=runtime_name(flavour),
        reference=f"PyTorch {torch.__version__} fp32 model as loaded, output clamped to [0, 1]",
        precision=precision,
        tolerance=TOLERANCE[precision],
    )
    model = model.float().eval()
    total, count = 0.0, 0
    for (height, width), pairs in pairs_by_size.items():
        for pair in pairs:
            vis = pair.vis[None, None].astype(np.float32)
            ir = pair.ir[None, None].astype(np.float32)
            fused = session.run(["fused"], {"vis": vis, "ir": ir})[0]
            reference = model(torch.from_numpy(vis), torch.from_numpy(ir)).clamp(0.0, 1.0).numpy()
            if fused.shape != reference.shape:
                raise RuntimeError(f"graph output {fused.shape} differs in shape from PyTorch's {reference.shape}")
            diff = np.abs(fused.astype(np.float64) - reference.astype(np.float64))
            case = {"pair": pair.name, "height": height, "width": width,
                    "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean())}
            report.cases.append(case)
            report.max_abs_diff = max(report.max_abs_diff, case["max_abs_diff"])
            total += float(diff.sum())
            count += diff.size
    report.mean_abs_diff = total / count if count else 0.0
    return report
