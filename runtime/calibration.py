"""IR -> VIS registration: a homography estimated once, saved, and loaded by the runtime.

The two cameras of a fusion rig sit side by side, so the IR image must be warped onto the
visible image's pixel grid before fusing. For a scene much farther away than the camera
baseline a homography is exact enough; we estimate it from matched points or from a
chessboard both cameras see (heated boards look inverted in IR: both polarities are tried).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


@dataclass
class Calibration:
    """``homography`` maps IR pixel coordinates to VIS pixel coordinates at the sizes given.

    Sizes are (width, height) as cameras report them. ``rms_px`` is the reprojection error
    of the inliers in VIS pixels.
    """

    homography: np.ndarray
    ir_size: tuple[int, int]
    vis_size: tuple[int, int]
    method: str = "points"
    rms_px: float | None = None
    inliers: int | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        h = np.asarray(self.homography, dtype=np.float64)
        if h.shape != (3, 3) or not np.all(np.isfinite(h)):
            raise ValueError(f"homography must be a finite 3x3 matrix, got shape {h.shape}")
        if abs(np.linalg.det(h)) < 1e-12:
            raise ValueError("homography is singular (points on a line, or a degenerate estimate)")
        self.homography = h / h[2, 2] if abs(h[2, 2]) > 1e-12 else h
        self.ir_size = _size(self.ir_size, "ir_size")
        self.vis_size = _size(self.vis_size, "vis_size")

    def for_sizes(self, ir_hw: tuple[int, int], vis_hw: tuple[int, int]) -> np.ndarray:
        """The IR -> VIS matrix for frames of other resolutions than the calibration's
        (the same cameras set to another mode): scale in, apply, scale out."""
        s_ir = np.diag([self.ir_size[0] / ir_hw[1], self.ir_size[1] / ir_hw[0], 1.0])
        s_vis = np.diag([vis_hw[1] / self.vis_size[0], vis_hw[0] / self.vis_size[1], 1.0])
        return s_vis @ self.homography @ s_ir

    def ir_to_vis(self, points: np.ndarray) -> np.ndarray:
        """Map (N, 2) IR pixel coordinates into the VIS image."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 1, 2)
        return cv2.perspectiveTransform(pts, self.homography).reshape(-1, 2)

    # ----------------------------------------------------------------- files
    def to_dict(self) -> dict:
        return {
            "format": "fusion-edge-calibration",
            "version": FORMAT_VERSION,
            "homography": self.homography.tolist(),
            "ir_size": list(self.ir_size),
            "vis_size": list(self.vis_size),
            "method": self.method,
            "rms_px": self.rms_px,
            "inliers": self.inliers,
            **({"extra": self.extra} if self.extra else {}),
        }

    def save(self, path: str | Path) -> Path:
        """Write JSON (``.json``) or YAML (``.yaml``/``.yml``, OpenCV FileStorage) atomically."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in (".json", ".yaml", ".yml"):
            raise ValueError(f"calibration file must end in .json, .yaml or .yml, got {path.name!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{suffix}")
        if suffix == ".json":
            tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        else:
            fs = cv2.FileStorage(str(tmp), cv2.FILE_STORAGE_WRITE)
            try:
                fs.write("format", "fusion-edge-calibration")
                fs.write("version", FORMAT_VERSION)
                fs.write("homography", self.homography)
                fs.write("ir_size", np.array(self.ir_size, dtype=np.int32))
                fs.write("vis_size", np.array(self.vis_size, dtype=np.int32))
                fs.write("method", self.method)
                if self.rms_px is not None:
                    fs.write("rms_px", float(self.rms_px))
                if self.inliers is not None:
                    fs.write("inliers", int(self.inliers))
            finally:
                fs.release()
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Calibration:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"calibration file not found: {path}")
        suffix = path.suffix.lower()
        if suffix == ".json":
            try:
                data = json.loads(path.read_text())
            except json.JSONDecodeError as exc:
                raise ValueError(f"calibration file {path} is not valid JSON: {exc}") from exc
        elif suffix in (".yaml", ".yml"):
            data = _read_yaml(path)
        else:
            raise ValueError(f"calibration file must end in .json, .yaml or .yml, got {path.name!r}")
        if not isinstance(data, dict) or "homography" not in data:
            raise ValueError(f"calibration file {path} has no 'homography'")
        for key in ("ir_size", "vis_size"):
            if key not in data:
                raise ValueError(f"calibration file {path} has no {key!r} ([width, height])")
        try:
            return cls(
                homography=np.asarray(data["homography"], dtype=np.float64),
                ir_size=data["ir_size"],
                vis_size=data["vis_size"],
                method=str(data.get("method", "points")),
                rms_px=None if data.get("rms_px") is None else float(data["rms_px"]),
                inliers=None if data.get("inliers") is None else int(data["inliers"]),
                extra=dict(data.get("extra") or {}),
            )
        except ValueError as exc:
            raise ValueError(f"calibration file {path}: {exc}") from exc


def _read_yaml(path: Path) -> dict:
    fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
    if not fs.isOpened():
        raise ValueError(f"cannot parse {path} as an OpenCV YAML file")
    try:
        data = {}
        for key in ("homography", "ir_size", "vis_size"):
            node = fs.getNode(key)
            if not node.empty():
                data[key] = node.mat().reshape(-1).tolist() if key != "homography" else node.mat()
        for key in ("method",):
            node = fs.getNode(key)
            if not node.empty():
                data[key] = node.string()
        for key in ("rms_px", "inliers"):
            node = fs.getNode(key)
            if not node.empty():
                data[key] = node.real()
        return data
    finally:
        fs.release()


def _size(value, name: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be [width, height], got {value!r}") from None
    if w <= 0 or h <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return w, h


# ---------------------------------------------------------------- estimation
def estimate_from_points(
    ir_points: np.ndarray,
    vis_points: np.ndarray,
    ir_size: tuple[int, int],
    vis_size: tuple[int, int],
    *,
    ransac_px: float | None = 3.0,
    method: str = "points",
) -> Calibration:
    """Fit the IR -> VIS homography to matched points ((N, 2) each, N >= 4).

    With ``ransac_px`` outliers farther than that many VIS pixels are ignored; None fits
    all points by least squares.
    """
    src = np.asarray(ir_points, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(vis_points, dtype=np.float64).reshape(-1, 2)
    if src.shape != dst.shape:
        raise ValueError(f"need as many IR as VIS points, got {len(src)} and {len(dst)}")
    if len(src) < 4:
        raise ValueError(f"a homography needs at least 4 matched points, got {len(src)}")
    if not (np.all(np.isfinite(src)) and np.all(np.isfinite(dst))):
        raise ValueError("points contain NaN or Inf")
    if ransac_px is None:
        h, mask = cv2.findHomography(src, dst, 0)
    else:
        h, mask = cv2.findHomography(src, dst, cv2.RANSAC, float(ransac_px))
    if h is None:
        raise ValueError("could not fit a homography (points collinear or too few inliers)")
    inl = mask.reshape(-1).astype(bool) if mask is not None else np.ones(len(src), bool)
    proj = cv2.perspectiveTransform(src[inl].reshape(-1, 1, 2), h).reshape(-1, 2)
    rms = float(np.sqrt(np.mean(np.sum((proj - dst[inl]) ** 2, axis=1))))
    return Calibration(h, ir_size, vis_size, method=method, rms_px=rms, inliers=int(inl.sum()))


def find_chessboard(image: np.ndarray, pattern: tuple[int, int]) -> np.ndarray | None:
    """Inner corners (N, 2) of a chessboard with ``pattern`` = (columns, rows), trying the
    image and its negative (a heated board is bright where the printed one is dark)."""
    grey = _as_grey_u8(image)
    flags = cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 40, 0.01)
    for candidate in (grey, 255 - grey):
        found, corners = cv2.findChessboardCorners(candidate, pattern, flags=flags)
        if found:
            corners = cv2.cornerSubPix(candidate, corners, (5, 5), (-1, -1), criteria)
            return corners.reshape(-1, 2).astype(np.float64)
    return None


def estimate_from_chessboards(
    ir_images: Sequence[np.ndarray],
    vis_images: Sequence[np.ndarray],
    pattern: tuple[int, int],
    *,
    ransac_px: float | None = 3.0,
) -> Calibration:
    """Fit the homography to the chessboard corners found in every IR/VIS image pair.

    Pairs where either camera misses the board are skipped (and logged); at least one
    pair must show it in both.
    """
    if len(ir_images) != len(vis_images):
        raise ValueError(f"need as many IR as VIS images, got {len(ir_images)} and {len(vis_images)}")
    if not ir_images:
        raise ValueError("no chessboard images given")
    ir_pts, vis_pts, used = [], [], 0
    for i, (ir, vis) in enumerate(zip(ir_images, vis_images)):
        a, b = find_chessboard(ir, pattern), find_chessboard(vis, pattern)
        if a is None or b is None:
            log.warning("pair %d: chessboard %dx%d not found in %s", i, *pattern,
                        "both images" if a is None and b is None else ("IR" if a is None else "VIS"))
            continue
        ir_pts.append(_match_corner_order(a, b))
        vis_pts.append(b)
        used += 1
    if not used:
        raise ValueError(f"chessboard {pattern[0]}x{pattern[1]} (inner corners) not found in any IR/VIS pair")
    ir_size = (ir_images[0].shape[1], ir_images[0].shape[0])
    vis_size = (vis_images[0].shape[1], vis_images[0].shape[0])
    calib = estimate_from_points(
        np.concatenate(ir_pts), np.concatenate(vis_pts), ir_size, vis_size, ransac_px=ransac_px, method="chessboard"
    )
    calib.extra = {"pattern": list(pattern), "pairs_used": used, "pairs_given": len(ir_images)}
    return calib


def _match_corner_order(ir: np.ndarray, vis: np.ndarray) -> np.ndarray:
    """OpenCV may list a board's corners from either end; flip IR's order when its first-to-last
    corner direction opposes the VIS one (the cameras see the board the same way up)."""
    d_ir, d_vis = ir[-1] - ir[0], vis[-1] - vis[0]
    return ir[::-1].copy() if float(np.dot(d_ir, d_vis)) < 0 else ir


def _as_grey_u8(image: np.ndarray) -> np.ndarray:
    if image is None or not isinstance(image, np.ndarray) or image.size == 0:
        raise ValueError("chessboard image is empty")
    if image.ndim == 3:
        image = cv2.cvtColor(image[:, :, :3], cv2.COLOR_BGR2GRAY)
    if image.dtype != np.uint8:
        lo, hi = float(image.min()), float(image.max())
        image = ((image.astype(np.float32) - lo) * (255.0 / max(hi - lo, 1e-6))).astype(np.uint8)
    return image


def read_point_pairs(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Matched points from a file: JSON ``{"ir": [[x, y], ...], "vis": [[x, y], ...]}`` or CSV
    rows ``ir_x, ir_y, vis_x, vis_y`` (a header line is allowed)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"points file not found: {path}")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text())
            return np.asarray(data["ir"], dtype=np.float64), np.asarray(data["vis"], dtype=np.float64)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"points file {path}: expected {{'ir': [[x, y], ...], 'vis': [...]}} ({exc})") from exc
    rows = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = [p.strip() for p in line.replace(";", ",").split(",")]
        try:
            values = [float(p) for p in parts]
        except ValueError:
            if not rows:  # a header
                continue
            raise ValueError(f"points file {path} line {lineno}: not four numbers: {line!r}") from None
        if len(values) != 4:
            raise ValueError(f"points file {path} line {lineno}: expected ir_x, ir_y, vis_x, vis_y, got {line!r}")
        rows.append(values)
    if not rows:
        raise ValueError(f"points file {path} holds no point rows")
    arr = np.asarray(rows)
    return arr[:, :2], arr[:, 2:]
