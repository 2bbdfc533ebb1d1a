"""Decide, per stream, whether a captured frame is usable.

A frame is rejected (and counted, never fatal) when it is missing, empty, has a dtype or
channel count the runtime cannot use, contains NaN/Inf, or differs in size from the
stream's frames so far (a glitching driver or a truncated decode). A camera that really
changed mode is followed: after ``adopt_after`` frames in a row of the same new size, that
size becomes the stream's.
"""

from __future__ import annotations

import logging

import numpy as np
from fusion_edge.runtime.preprocess import FrameError, check_frame

log = logging.getLogger(__name__)


class FrameValidator:
    def __init__(self, name: str, expected_hw: tuple[int, int] | None = None, adopt_after: int = 30) -> None:
        self.name = name
        self.expected_hw = expected_hw
        self.adopt_after = adopt_after
        self._candidate: tuple[int, int] | None = None
        self._candidate_count = 0
        self.rejected = 0
        self.last_reason = ""

    def check(self, image) -> str | None:
        """None if the frame is good, else the reason it is not (also counted)."""
        reason = self._reason(image)
        if reason is not None:
            self.rejected += 1
            self.last_reason = reason
        return reason

    def _reason(self, image) -> str | None:
        try:
            image = check_frame(image, self.name)
        except FrameError as exc:
            return str(exc)
        if np.issubdtype(np.dtype(image.dtype), np.floating) and isinstance(image, np.ndarray):
            if not np.isfinite(image).all():
                return f"{self.name}: frame contains NaN or Inf"
        hw = (int(image.shape[0]), int(image.shape[1]))
        if self.expected_hw is None:
            self.expected_hw = hw
            return None
        if hw == self.expected_hw:
            self._candidate, self._candidate_count = None, 0
            return None
        if hw == self._candidate:
            self._candidate_count += 1
        else:
            self._candidate, self._candidate_count = hw, 1
        if self._candidate_count >= self.adopt_after:
            log.warning("%s: frame size changed from %sx%s to %sx%s; following it", self.name,
                        self.expected_hw[1], self.expected_hw[0], hw[1], hw[0])
            self.expected_hw = hw
            self._candidate, self._candidate_count = None, 0
            return None
        eh, ew = self.expected_hw
        return f"{self.name}: frame is {hw[1]}x{hw[0]}, the stream's frames are {ew}x{eh}"
