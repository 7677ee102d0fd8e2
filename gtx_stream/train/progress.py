"""A small text progress line for long work (tqdm is not a dependency of gtx-stream).

On a terminal the line is redrawn in place (``\\r``); elsewhere (CI, a log file) a line is
printed at every tenth of the way, so the log shows progress without a line per batch.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """``label  37/120  31%  12.3 img/s  eta 7s``: ``update(n)`` per batch, then ``close()``."""

    def __init__(self, label: str, total: int, unit: str = "img", stream: TextIO | None = None,
                 enabled: bool = True) -> None:  # fmt: skip
        self.label = label
        self.total = max(int(total), 0)
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.done = 0
        self.started = time.monotonic()
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_tenth = 0  # the first line at a tenth of the way

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.done / elapsed
        pct = 100.0 * self.done / self.total if self.total else 100.0
        left = (self.total - self.done) / rate if rate > 0 else float("nan")
        eta = f"eta {left:.0f}s" if self.done < self.total and rate > 0 else f"{elapsed:.1f}s"
        return (f"{self.label}  {self.done}/{self.total}  {pct:3.0f}%  "
                f"{rate:.1f} {self.unit}/s  {eta}")  # fmt: skip

    def update(self, n: int = 1) -> None:
        self.done = min(self.done + n, self.total) if self.total else self.done + n
        if not self.enabled:
            return
        if self._tty:
            self.stream.write("\r" + self.line())
            self.stream.flush()
            return
        tenth = int(10 * self.done / self.total) if self.total else 10
        if tenth > self._last_tenth:
            self._last_tenth = tenth
            self.stream.write(self.line() + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled and self._tty:
            self.stream.write("\r" + self.line() + "\n")
            self.stream.flush()
