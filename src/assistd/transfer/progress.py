"""Progress on a terminal: one rewritten stderr line, only when stderr is a tty (never in logs or pipes)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, verb: str, stream: TextIO | None = None) -> None:
        self.verb = verb
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.counts: dict[str, int] = {}
        self.bytes = 0
        self._shown = 0.0

    def count(self, kind: str, n: int = 1) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + n
        self._show()

    def add_bytes(self, n: int) -> None:
        self.bytes += n
        self._show()

    def _show(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._shown < 0.2:
            return
        self._shown = now
        parts = [f"{kind} {n}" for kind, n in self.counts.items()]
        if self.bytes:
            parts.append(f"{self.bytes / 1e6:.1f} MB of file bytes" if self.bytes >= 1e5 else
                         f"{self.bytes / 1e3:.1f} kB of file bytes")
        self.stream.write(f"\r\x1b[K{self.verb}: {', '.join(parts)}")
        self.stream.flush()

    def done(self) -> None:
        if self.enabled:
            self._show(force=True)
            self.stream.write("\n")
            self.stream.flush()
