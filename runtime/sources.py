"""Frame sources: cameras, GStreamer pipelines, network streams, video files, image folders
and a synthetic source for tests. Each yields ``Frame(timestamp, image)``.

A source is opened, read frame by frame and closed; the pipeline reopens it when it fails.
``read()`` returns None when no frame came: the end of a file, or a live camera that stopped
delivering (the pipeline then reconnects). Timestamps are seconds: media time for files and
folders (frame index / fps, so two recordings pair exactly), ``time.monotonic()`` at capture
for live sources.
"""

from __future__ import annotations

import logging
import math
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm", ".ppm", ".webp", ".exr")
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")
LAYOUTS = ("ir-left", "vis-left", "ir-top", "vis-top")


class Frame(NamedTuple):
    """One frame: ``timestamp`` in seconds and the image (None when the decoder gave nothing)."""

    timestamp: float
    image: Any


class SourceError(RuntimeError):
    """A source that cannot be opened or read; the message names the source."""


class Source(ABC):
    """A stream of frames. ``live`` sources run in real time (cameras, network streams):
    the pipeline drops old frames for them and reconnects them when they stop."""

    name: str = "source"
    live: bool = False
    fps: float | None = None
    # True where a live source's timestamps are ``time.monotonic()`` taken when the frame was
    # captured: the pipeline then measures latency from that moment, not from when read() returned
    stamps_capture_time: bool = False

    @abstractmethod
    def open(self) -> None: ...

    @abstractmethod
    def read(self) -> Frame | None: ...

    def close(self) -> None:  # noqa: B027 - sources without resources need nothing
        pass

    @property
    def is_open(self) -> bool:
        return getattr(self, "_open", False)

    def __iter__(self) -> Iterator[Frame]:
        """Read from open to the first missing frame (for scripts; the pipeline does more)."""
        self.open()
        try:
            while (frame := self.read()) is not None:
                yield frame
        finally:
            self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class CaptureSource(Source):
    """Anything ``cv2.VideoCapture`` opens: a camera index, ``/dev/videoN``, a GStreamer
    pipeline (Jetson CSI cameras: ``nvarguscamerasrc ! ... ! appsink``), an RTSP/HTTP URL, a file.

    ``size`` / ``fps`` ask the camera for a mode. ``raw=True`` turns off OpenCV's RGB conversion
    (16-bit thermal cameras, e.g. Y16). ``realtime=True`` plays a file at its frame rate, as a
    camera would deliver it (frames are dropped when inference falls behind).
    """

    def __init__(self, spec: int | str, *, live: bool | None = None, api: int | None = None,
                 size: tuple[int, int] | None = None, fps: float | None = None, raw: bool = False,
                 realtime: bool = False, name: str | None = None) -> None:
        self.spec = spec
        kind = classify(spec)
        self.kind = kind
        self.live = (kind != "file") if live is None else live
        self.stamps_capture_time = kind != "file"
        if api is None:
            api = cv2.CAP_GSTREAMER if kind == "gstreamer" else (cv2.CAP_V4L2 if kind == "device" else cv2.CAP_ANY)
        self.api = api
        self.size = size
        self.requested_fps = fps
        self.raw = raw
        self.realtime = realtime
        self.name = name or str(spec)
        self.fps = fps
        self._cap = None
        self._open = False
        self._index = 0  # next frame of a file: reopening resumes there
        self._t0 = 0.0

    def open(self) -> None:
        self.close()
        target = self.spec
        if self.kind == "file" and not Path(str(target)).is_file():
            raise FileNotFoundError(f"video file not found: {target}")
        if self.kind == "device" and isinstance(target, str) and target.isdigit():
            target = int(target)
        cap = cv2.VideoCapture(target, self.api)
        if not cap.isOpened() and self.api == cv2.CAP_V4L2:
            cap = cv2.VideoCapture(target)  # not Linux/V4L2: let OpenCV choose
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"cannot open {self.name} ({self.kind}); check the path/URL/pipeline and permissions")
        if self.size is not None:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.size[0])
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.size[1])
        if self.requested_fps:
            cap.set(cv2.CAP_PROP_FPS, self.requested_fps)
        if self.raw:
            cap.set(cv2.CAP_PROP_CONVERT_RGB, 0)
        reported = cap.get(cv2.CAP_PROP_FPS)
        if reported and math.isfinite(reported) and 0 < reported < 1000:
            self.fps = reported
        if self.kind == "file" and self._index:
            cap.set(cv2.CAP_PROP_POS_FRAMES, self._index)
        self._cap = cap
        self._open = True
        self._t0 = time.monotonic() - self._index / (self.fps or 30.0)

    def read(self) -> Frame | None:
        if self._cap is None:
            raise SourceError(f"{self.name} is not open")
        if self.kind == "file" and self.realtime:
            delay = self._t0 + self._index / (self.fps or 30.0) - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        if self.kind == "file":
            ok, image = self._cap.read()
            ts = self._index / (self.fps or 30.0)
        else:  # stamp when the frame arrived, before decoding it (read() is grab() + retrieve())
            ok = self._cap.grab()
            ts = time.monotonic()
            if ok:
                ok, image = self._cap.retrieve()
        if not ok:
            return None
        self._index += 1
        return Frame(ts, image)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
        self._cap = None
        self._open = False


class ImageFolderSource(Source):
    """The images of a folder in name order, timestamped index / fps. An unreadable file gives
    a frame with no image (rejected and counted by the pipeline), not the end of the folder."""

    def __init__(self, folder: str | Path, *, fps: float = 30.0, loop: bool = False, realtime: bool = False,
                 name: str | None = None) -> None:
        self.folder = Path(folder)
        self.fps = float(fps)
        self.loop = loop
        self.realtime = realtime
        self.live = realtime
        self.name = name or str(folder)
        self._files: list[Path] = []
        self._index = 0
        self._open = False
        self._t0 = 0.0

    def open(self) -> None:
        if self.folder.is_file():
            files = [self.folder]
        elif self.folder.is_dir():
            files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            raise FileNotFoundError(f"image folder not found: {self.folder}")
        if not files:
            raise SourceError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {self.folder}")
        self._files = files
        self._open = True
        self._t0 = time.monotonic() - self._index / self.fps

    def __len__(self) -> int:
        return len(self._files)

    def read(self) -> Frame | None:
        if not self._open:
            raise SourceError(f"{self.name} is not open")
        if self._index >= len(self._files):
            if not self.loop:
                return None
        if self.realtime:
            delay = self._t0 + self._index / self.fps - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        path = self._files[self._index % len(self._files)]
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None:
            log.warning("%s: cannot decode %s", self.name, path.name)
        ts = self._index / self.fps
        self._index += 1
        return Frame(ts, image)

    def close(self) -> None:
        self._open = False


class ArraySource(Source):
    """Frames you already hold (a list of arrays), replayed: for benchmarks without decoding
    costs, and for feeding the pipeline from your own capture code's buffers.

    ``live=True`` stamps frames with the capture time like a camera (pace it with ``realtime``);
    otherwise timestamps are index / fps. ``loop`` replays the list ``count`` frames long.
    """

    def __init__(self, frames, *, fps: float = 30.0, live: bool = False, realtime: bool = False,
                 loop: bool = False, count: int | None = None, name: str = "arrays") -> None:
        self.frames = list(frames)
        if not self.frames:
            raise ValueError("ArraySource needs at least one frame")
        self.fps = float(fps)
        self.live = live
        self.stamps_capture_time = live  # live: stamped with time.monotonic() when delivered
        self.realtime = realtime
        self.loop = loop
        self.count = count if count is not None else (None if loop else len(self.frames))
        self.name = name
        self._index = 0
        self._open = False
        self._t0 = 0.0

    def open(self) -> None:
        self._open = True
        self._t0 = time.monotonic() - self._index / self.fps

    def read(self) -> Frame | None:
        if not self._open:
            raise SourceError(f"{self.name} is not open")
        if self.count is not None and self._index >= self.count:
            return None
        if self.realtime:
            delay = self._t0 + self._index / self.fps - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        image = self.frames[self._index % len(self.frames)]
        ts = time.monotonic() if self.live else self._index / self.fps
        self._index += 1
        return Frame(ts, image)

    def close(self) -> None:
        self._open = False


class SyntheticSource(Source):
    """Generated frames: a moving warm blob over a gradient, for tests and benchmarks.

    ``live`` sources stamp frames with the capture time, as cameras do (pace them with
    ``realtime`` to pair two of them); recordings (``live=False``) with index / fps.

    ``faults`` maps a frame index to what goes wrong there: "empty" (zero-size image), "none"
    (the decoder returned nothing), "wrong_size" (half the size), "nan" (float NaNs; float
    sources), "error" (``read`` raises, as a driver error would), "stop" (``read`` returns None
    once, as an unplugged camera does). Each fault fires once, so a reconnected source goes on.
    """

    def __init__(self, size: tuple[int, int] = (480, 640), *, channels: int = 1, dtype: Any = np.uint8,
                 fps: float = 30.0, count: int | None = None, live: bool = True, realtime: bool = False,
                 faults: dict[int, str] | None = None, seed: int = 0, name: str = "synthetic",
                 open_failures: int = 0) -> None:
        self.size = (int(size[0]), int(size[1]))
        self.channels = channels
        self.dtype = np.dtype(dtype)
        self.fps = float(fps)
        self.count = count
        self.live = live
        self.stamps_capture_time = live  # live: stamped with time.monotonic() when generated
        self.realtime = realtime
        self.faults = dict(faults or {})
        self.name = name
        self.open_failures = open_failures  # the next N open() calls fail (an absent camera)
        self.opens = 0
        self._rng = np.random.default_rng(seed)
        self._index = 0
        self._open = False
        self._t0 = 0.0
        h, w = self.size
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        self._grid = (yy / max(h - 1, 1), xx / max(w - 1, 1))

    def open(self) -> None:
        if self.open_failures > 0:
            self.open_failures -= 1
            raise SourceError(f"{self.name}: device not available")
        self.opens += 1
        self._open = True
        self._t0 = time.monotonic() - self._index / self.fps

    def image(self, index: int) -> np.ndarray:
        """Frame ``index`` as the source would deliver it (deterministic)."""
        yy, xx = self._grid
        phase = index / max(self.fps, 1.0)
        cy, cx = 0.5 + 0.3 * math.sin(phase), 0.5 + 0.3 * math.cos(phase)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.02)
        base = 0.25 + 0.5 * xx * (0.5 + 0.5 * math.sin(phase * 0.5))
        unit = np.clip(0.6 * blob + 0.4 * base, 0.0, 1.0)
        if self.channels == 3:
            unit = np.stack([unit, 0.8 * unit + 0.1, 1.0 - 0.5 * unit], axis=-1)
        if np.issubdtype(self.dtype, np.floating):
            return unit.astype(self.dtype)
        scale = 255.0 if self.dtype == np.uint8 else 65535.0
        return np.round(unit * scale).astype(self.dtype)

    def read(self) -> Frame | None:
        if not self._open:
            raise SourceError(f"{self.name} is not open")
        if self.count is not None and self._index >= self.count:
            return None
        fault = self.faults.pop(self._index, None)
        if fault == "error":
            self._open = False
            raise SourceError(f"{self.name}: read failed (simulated driver error)")
        if fault == "stop":
            self._open = False
            return None
        if self.realtime:
            delay = self._t0 + self._index / self.fps - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        index = self._index
        self._index += 1
        ts = time.monotonic() if self.live else index / self.fps  # like a camera / like a recording
        if fault == "empty":
            return Frame(ts, np.empty((0, 0), self.dtype))
        if fault == "none":
            return Frame(ts, None)
        image = self.image(index)
        if fault == "wrong_size":
            image = np.ascontiguousarray(image[: self.size[0] // 2, : self.size[1] // 2])
        elif fault == "nan":
            image = image.astype(np.float32)
            image[0, 0] = np.nan
        elif fault is not None:
            raise ValueError(f"unknown fault {fault!r}")
        return Frame(ts, image)

    def close(self) -> None:
        self._open = False


def classify(spec: int | str) -> str:
    """What kind of source a spec names: device, gstreamer, stream, folder, file or synthetic."""
    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
        return "device"
    s = str(spec)
    if s.startswith("synthetic"):
        return "synthetic"
    if re.match(r"^/dev/video\d+$", s):
        return "device"
    if "!" in s:
        return "gstreamer"
    scheme = s.split("://", 1)[0].lower() if "://" in s else ""
    if scheme in STREAM_SCHEMES:
        return "stream"
    if Path(s).is_dir():
        return "folder"
    if Path(s).suffix.lower() in IMAGE_SUFFIXES:
        return "folder"  # a single image: a folder of one
    return "file"


def open_source(spec: int | str | Source, **options: Any) -> Source:
    """A Source from a command-line style spec, or the Source itself.

    ``0``, ``/dev/video1``: cameras; a string with ``!``: a GStreamer pipeline; ``rtsp://...``:
    a network stream; a folder (or an image): its images; ``synthetic`` or
    ``synthetic:WIDTHxHEIGHT[:COUNT][:rgb]``: generated frames (a live camera, or with COUNT a
    recording of that many frames); anything else: a video file.
    ``options`` go to the source class (e.g. ``fps``, ``realtime``, ``size``).
    """
    if isinstance(spec, Source):
        return spec
    kind = classify(spec)
    if kind == "synthetic":
        m = re.match(r"^synthetic(?::(\d+)x(\d+))?(?::(\d+))?(?::(rgb|grey|gray))?$", str(spec))
        if not m:
            raise ValueError(f"synthetic source spec is synthetic[:WIDTHxHEIGHT][:COUNT][:rgb], got {spec!r}")
        w, h, count, colour = m.groups()
        # with a COUNT it is a recording (ends, pairs by index); without, a live camera
        kwargs = dict(size=(int(h), int(w)) if w else (480, 640), count=int(count) if count else None,
                      channels=3 if colour == "rgb" else 1, name=str(spec), live=not count)
        return SyntheticSource(**{**kwargs, **options})
    if kind == "folder":
        allowed = {k: v for k, v in options.items() if k in ("fps", "loop", "realtime", "name")}
        return ImageFolderSource(spec, **allowed)
    if kind == "file" and not Path(str(spec)).is_file():
        raise FileNotFoundError(f"source not found: {spec!r} is not a file, folder, camera, URL or pipeline")
    allowed = {k: v for k, v in options.items() if k in ("live", "api", "size", "fps", "raw", "realtime", "name")}
    return CaptureSource(spec, **allowed)


def split_side_by_side(image: np.ndarray, layout: str = "ir-left") -> tuple[np.ndarray, np.ndarray]:
    """One frame holding both cameras -> (ir, vis). ``layout``: ir-left, vis-left, ir-top, vis-top."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if image is None or getattr(image, "ndim", 0) < 2:
        raise ValueError("side-by-side frame is empty")
    if layout in ("ir-left", "vis-left"):
        half = image.shape[1] // 2
        first, second = image[:, :half], image[:, half : 2 * half]
    else:
        half = image.shape[0] // 2
        first, second = image[:half], image[half : 2 * half]
    return (first, second) if layout.startswith("ir") else (second, first)
