"""Bounded hand-over queues between pipeline threads.

Two policies: "newest" (live sources: when the consumer falls behind, the oldest waiting
item is dropped and counted, so what comes out is always recent) and "block" (recordings:
the producer waits, nothing is lost). A closed queue drains, then reports the end.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

POLICIES = ("newest", "block")


class Closed(Exception):
    """The queue was closed and is empty: no more items will come."""


class FrameQueue:
    def __init__(self, maxsize: int = 2, policy: str = "newest") -> None:
        if policy not in POLICIES:
            raise ValueError(f"queue policy must be one of {POLICIES}, got {policy!r}")
        if maxsize < 1:
            raise ValueError(f"queue size must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self.policy = policy
        self.dropped = 0
        self._items: deque = deque()
        self._closed = False
        self._cond = threading.Condition()

    def put(self, item: Any, timeout: float | None = None) -> bool:
        """Add an item. Returns False if the queue is closed (or, blocking, timed out)."""
        with self._cond:
            if self.policy == "block":
                if not self._cond.wait_for(lambda: self._closed or len(self._items) < self.maxsize, timeout):
                    return False
            if self._closed:
                return False
            if len(self._items) >= self.maxsize:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self._cond.notify_all()
            return True

    def get(self, timeout: float | None = None) -> Any:
        """The oldest item; raises TimeoutError when none came in time, Closed at the end."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self._closed, timeout):
                raise TimeoutError
            if self._items:
                item = self._items.popleft()
                self._cond.notify_all()
                return item
            raise Closed

    def drain(self) -> list:
        """Every item waiting now, oldest first, without waiting (empty when none or closed)."""
        with self._cond:
            if not self._items:
                return []
            items = list(self._items)
            self._items.clear()
            self._cond.notify_all()
            return items

    def close(self) -> None:
        """No more puts; getters drain what is left, then get Closed. Blocked putters return."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return len(self._items)
