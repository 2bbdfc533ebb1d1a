"""A one-line progress display on stderr (no dependency): redrawn in place on a terminal,
one line every ``every`` steps when stderr is a file or a pipe (logs stay readable)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, total: int, prefix: str, every: int = 10, stream: TextIO | None = None,
                 enabled: bool = True) -> None:
        self.total, self.prefix, self.every = total, prefix, max(1, every)
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.interactive = enabled and self.stream.isatty()
        self.start = time.perf_counter()
        self.last_draw = 0.0

    def update(self, done: int, text: str) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        rate = done / max(now - self.start, 1e-9)
        width = 20
        filled = int(width * done / self.total) if self.total else 0
        bar = "#" * filled + "." * (width - filled)
        line = f"{self.prefix} [{bar}] {done}/{self.total} {text} {rate:.2f} it/s"
        if self.interactive:
            if now - self.last_draw > 0.1 or done == self.total:
                self.stream.write("\r" + line + "\033[K")
                self.stream.flush()
                self.last_draw = now
        elif done % self.every == 0 or done == self.total:
            self.stream.write(line + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.interactive:
            self.stream.write("\n")
            self.stream.flush()


def log(message: str, enabled: bool = True) -> None:
    if enabled:
        print(message, file=sys.stderr, flush=True)
