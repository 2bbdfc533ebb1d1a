"""Pair IR and VIS frames by timestamp.

Two cameras are not triggered together, so each IR frame is matched to the VIS frame
closest in time, if within ``tolerance`` seconds. Frames arrive in time order per stream;
a frame that can no longer find a partner (the other stream has moved past it) is
discarded and counted, so neither buffer grows.
"""

from __future__ import annotations

from collections import deque
from typing import Any

IR, VIS = 0, 1
STREAM_NAMES = ("ir", "vis")


class TimestampPairer:
    """Push frames of either stream, pop matched (ir, vis) pairs in time order.

    Anything with a ``timestamp`` attribute is a frame. ``max_pending`` bounds each buffer
    (when one camera stalls, the other's oldest frames are discarded).
    """

    def __init__(self, tolerance: float = 0.02, max_pending: int = 8) -> None:
        if tolerance < 0:
            raise ValueError(f"tolerance must be >= 0 seconds, got {tolerance}")
        self.tolerance = float(tolerance)
        self.max_pending = max(1, int(max_pending))
        self.buffers: tuple[deque, deque] = (deque(), deque())
        self.unmatched = [0, 0]  # frames discarded without a partner, per stream
        self.superseded = 0  # frames of pairs skipped for a newer pair (pop_latest)
        self.pairs = 0

    def push(self, stream: int, frame: Any) -> None:
        buf = self.buffers[stream]
        if buf and frame.timestamp < buf[-1].timestamp:
            # a stream whose clock went back (a reconnected camera, a looped file): start over
            self.unmatched[stream] += len(buf)
            buf.clear()
        buf.append(frame)
        while len(buf) > self.max_pending:
            buf.popleft()
            self.unmatched[stream] += 1

    def pop(self) -> tuple[Any, Any] | None:
        """The next (ir, vis) pair, or None until more frames arrive."""
        ir, vis = self.buffers
        while ir and vis:
            a, b = ir[0], vis[0]
            dt = a.timestamp - b.timestamp
            if abs(dt) <= self.tolerance:
                # a later frame of either stream may be closer to the other's head
                if len(vis) > 1 and abs(vis[1].timestamp - a.timestamp) < abs(dt):
                    self._discard(VIS)
                    continue
                if len(ir) > 1 and abs(ir[1].timestamp - b.timestamp) < abs(dt):
                    self._discard(IR)
                    continue
                ir.popleft()
                vis.popleft()
                self.pairs += 1
                return a, b
            # the older head can never match: the other stream is already past it
            self._discard(IR if dt < 0 else VIS)
        return None

    def pop_latest(self) -> tuple[Any, Any] | None:
        """The newest pair ready now, for live output: older ready pairs are skipped (their
        frames counted in ``superseded``), so a backlog is never worked through."""
        pair = self.pop()
        if pair is None:
            return None
        while (newer := self.pop()) is not None:
            self.superseded += 2
            self.pairs -= 1
            pair = newer
        return pair

    def _discard(self, stream: int) -> None:
        self.buffers[stream].popleft()
        self.unmatched[stream] += 1

    def needs(self) -> int:
        """The stream to read next: one whose buffer is empty (IR first)."""
        return IR if not self.buffers[IR] else VIS

    def pending(self, stream: int) -> int:
        return len(self.buffers[stream])

    @property
    def dropped(self) -> int:
        return sum(self.unmatched)
