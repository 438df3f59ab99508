"""Progress of a long job on stderr: one status line (``\\r`` updates on a terminal,
else one line per step prefixed ``collcost:``).  Shared by the measuring commands."""
from __future__ import annotations

import shutil
import sys
import time

__all__ = ["Progress", "human_bytes"]


def human_bytes(n: int) -> str:
    """``1048576`` -> ``'1MiB'`` (exact binary units only, else bytes)."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return f"{n}B"


class Progress:
    """``update(label)`` after each of ``total`` steps; ``close()`` at the end.

    ``every``: on a stream that is not a terminal, print at most one line per
    ``every`` seconds (plus the last step), so a job of 10^5 steps does not flood a
    log file.  ``prefix`` starts each line."""

    def __init__(self, total: int, stream=None, *, prefix: str = "collcost",
                 every: float = 0.0):
        self.total, self.done = total, 0
        self.stream = stream or sys.stderr
        try:
            self.tty = self.stream.isatty()
        except (AttributeError, ValueError):
            self.tty = False
        self.prefix = prefix
        self.every = float(every)
        self.start = time.monotonic()
        self._last = float("-inf")

    def update(self, label: str) -> None:
        self.done += 1
        now = time.monotonic()
        if not self.tty and self.every > 0 and self.done < self.total \
                and now - self._last < self.every:
            return
        self._last = now
        width = 24
        fill = int(width * self.done / max(self.total, 1))
        line = (f"[{'#' * fill}{'.' * (width - fill)}] {self.done}/{self.total} "
                f"{label}  {now - self.start:5.1f}s")
        try:
            if self.tty:  # one terminal row, overwritten: never wider than the row
                cols = max(20, shutil.get_terminal_size((100, 24)).columns - 1)
                self.stream.write("\r" + line[:cols].ljust(cols))
            else:
                self.stream.write(f"{self.prefix}: " + line + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stderr never stops a job
            pass

    def close(self) -> None:
        if self.tty:
            try:
                self.stream.write("\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass
