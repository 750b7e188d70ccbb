"""Progress for long commands: a bar on a terminal, plain lines otherwise.

A log collector does not want carriage returns; a person at a terminal does
not want a wall of lines. ``Progress`` picks by whether the stream is a TTY.
On stderr that is not a terminal the lines go through logging, so they come
out as JSON like every other line there.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

log = logging.getLogger("aggregator.progress")
BAR_WIDTH = 28
PLAIN_EVERY_SECONDS = 2.0


class Progress:
    def __init__(self, label: str, total: int, *, stream: TextIO | None = None) -> None:
        self.label = label
        self.total = max(total, 0)
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self._last_line = ""
        self._last_plain = 0.0

    def update(self, done: int, detail: str = "") -> None:
        done = min(done, self.total) if self.total else done
        if self.tty:
            filled = int(BAR_WIDTH * done / self.total) if self.total else 0
            bar = "#" * filled + "-" * (BAR_WIDTH - filled)
            line = f"\r{self.label} [{bar}] {done}/{self.total} {detail}"
            if line != self._last_line:
                self.stream.write(line.ljust(len(self._last_line)))
                self.stream.flush()
                self._last_line = line
            return
        now = time.monotonic()
        line = f"{self.label}: {done}/{self.total} {detail}".rstrip()
        if line != self._last_line and (
            now - self._last_plain >= PLAIN_EVERY_SECONDS or done >= self.total
        ):
            if self.stream is sys.stderr:
                log.info(line)
            else:
                self.stream.write(line + "\n")
                self.stream.flush()
            self._last_line, self._last_plain = line, now

    def close(self) -> None:
        if self.tty and self._last_line:
            self.stream.write("\n")
            self.stream.flush()
