"""Where fused frames go: a window, a video file, a folder of images, or your own function.

Sinks run in the thread that consumes the pipeline (OpenCV windows must). ``write`` returns
False to ask the pipeline to stop (a window closed with q/Esc). Files are written under a
temporary name and renamed when complete, so an interrupted run never leaves a broken file
under the final name; ``close`` is always called (end of input, Ctrl-C, errors).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

log = logging.getLogger(__name__)

FOURCC_BY_SUFFIX = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "XVID"}


class Sink:
    def write(self, item) -> bool | None:
        """Take one ``FusedFrame``; return False to stop the pipeline."""
        raise NotImplementedError

    def close(self) -> None:
        pass


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Display/video frames are 8-bit."""
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return (image >> 8).astype(np.uint8)
    return np.clip(np.rint(image.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)


class WindowSink(Sink):
    """An OpenCV window with the live counters drawn on; q or Esc stops."""

    def __init__(self, title: str = "fusion-edge", overlay: bool = True) -> None:
        self.title = title
        self.overlay = overlay
        self._created = False

    def write(self, item) -> bool:
        image = to_uint8(item.image)
        if self.overlay and item.stats is not None:
            image = image.copy() if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
            s = item.stats
            text = f"{s.fps:5.1f} fps  {s.latency_p50_ms:5.1f} ms  dropped {s.dropped}  rejected {s.rejected}"
            cv2.putText(image, text, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(image, text, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 255), 1, cv2.LINE_AA)
        if not self._created:
            try:
                cv2.namedWindow(self.title, cv2.WINDOW_NORMAL)
            except cv2.error as exc:
                raise RuntimeError(
                    f"cannot open a window ({exc.msg.strip() if hasattr(exc, 'msg') else exc}); this OpenCV has no GUI "
                    "(opencv-python-headless) or there is no display: use --record or --out-dir instead of --show"
                ) from exc
            self._created = True
        cv2.imshow(self.title, image)
        key = cv2.waitKey(1) & 0xFF
        return key not in (ord("q"), 27)

    def close(self) -> None:
        if self._created:
            try:
                cv2.destroyWindow(self.title)
                cv2.waitKey(1)
            except cv2.error:
                pass


class VideoFileSink(Sink):
    """A video file (.mp4: mp4v, .avi: MJPG, .mkv: XVID, or ``fourcc``), opened at the first
    frame's size; later frames of another size are resized to it. ``fps`` may be a function,
    called at the first frame (a camera's rate is known once it is open). Written as
    ``.NAME.partial.EXT`` and renamed on close, after OpenCV has finalised the container."""

    def __init__(self, path: str | Path, fps: float | Callable[[], float | None] = 30.0,
                 fourcc: str | None = None) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if fourcc is None:
            if suffix not in FOURCC_BY_SUFFIX:
                raise ValueError(f"video file must end in one of {', '.join(FOURCC_BY_SUFFIX)} (or pass a fourcc), "
                                 f"got {self.path.name!r}")
            fourcc = FOURCC_BY_SUFFIX[suffix]
        if len(fourcc) != 4:
            raise ValueError(f"fourcc must be 4 characters, got {fourcc!r}")
        self.fourcc = fourcc
        self._fps = fps  # a callable is asked at the first frame, when a camera knows its rate
        self.fps = 30.0
        self.partial = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self.frames = 0
        self._writer = None
        self._size: tuple[int, int] | None = None
        self._colour = True

    def write(self, item) -> bool:
        image = to_uint8(item.image if hasattr(item, "image") else item)
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._size = (image.shape[1], image.shape[0])
            self._colour = image.ndim == 3
            fps = self._fps() if callable(self._fps) else self._fps
            self.fps = float(fps) if fps and 0 < fps < 1000 else 30.0
            writer = cv2.VideoWriter(str(self.partial), cv2.VideoWriter_fourcc(*self.fourcc), self.fps, self._size,
                                     self._colour)
            if not writer.isOpened():
                raise RuntimeError(f"cannot write video {self.path} with codec {self.fourcc} (this OpenCV build "
                                   "lacks it?); try a .avi file (MJPG)")
            self._writer = writer
        if (image.shape[1], image.shape[0]) != self._size:
            image = cv2.resize(image, self._size, interpolation=cv2.INTER_AREA)
        if self._colour and image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        elif not self._colour and image.ndim == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        self._writer.write(np.ascontiguousarray(image))
        self.frames += 1
        return True

    def close(self) -> None:
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        if self.frames:
            os.replace(self.partial, self.path)
            log.info("wrote %s (%d frames)", self.path, self.frames)
        else:
            self.partial.unlink(missing_ok=True)


class ImageFolderSink(Sink):
    """One image per fused frame, named by ``pattern`` (``index`` and ``timestamp`` fields;
    the suffix picks the format: .png keeps 16 bits). Each file is written atomically."""

    def __init__(self, folder: str | Path, pattern: str = "{index:06d}.png") -> None:
        self.folder = Path(folder)
        self.pattern = pattern
        self.frames = 0
        Path(pattern.format(index=0, timestamp=0.0))  # fail early on a bad pattern

    def write(self, item) -> bool:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / self.pattern.format(index=item.index, timestamp=item.timestamp)
        image = item.image
        if path.suffix.lower() not in (".png", ".tif", ".tiff") and image.dtype != np.uint8:
            image = to_uint8(image)
        elif image.dtype not in (np.uint8, np.uint16):
            image = to_uint8(image)
        ok, encoded = cv2.imencode(path.suffix or ".png", image)
        if not ok:
            raise RuntimeError(f"cannot encode a fused frame as {path.suffix}")
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(encoded.tobytes())
        os.replace(tmp, path)
        self.frames += 1
        return True


class CallbackSink(Sink):
    """Calls ``fn(fused_frame)``; a False return stops the pipeline."""

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self.fn = fn

    def write(self, item) -> bool:
        return self.fn(item) is not False
