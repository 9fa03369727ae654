"""Free heap memory given back to the OS, once a minute, in a process that executes runs.

Under sustained load a worker's RSS grew 1–2 MiB a minute while the memory malloc had in use stayed flat
(docs/benchmarks.md, "Worker memory, December"): the growth was free space inside glibc's main heap, holes
between live blocks that glibc gives back only at the heap's top. ``malloc_trim(0)`` releases the free pages
anywhere in the heap, and RSS stays at what is in use. It walks the heap (a few milliseconds, under load up
to a hundred): it runs in a thread, off the event loop (ctypes releases the GIL for the call). With another C
library than glibc there is nothing to call, and nothing runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
from collections.abc import Callable

log = logging.getLogger("assistd.runner")

EVERY_SECONDS = 60.0


def malloc_trim() -> Callable[[], object] | None:
    """glibc's ``malloc_trim(0)``, or None where the C library has none."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    return lambda: trim(0)


class HeapTrimmer:
    def __init__(self, every: float = EVERY_SECONDS, trim: Callable[[], object] | None = None) -> None:
        self.every = every
        self.trim = trim if trim is not None else malloc_trim()
        self.trims = 0  # how many times the heap was trimmed (tests)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.trim is not None:
            self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        assert self.trim is not None
        while True:
            await asyncio.sleep(self.every)
            try:
                await asyncio.to_thread(self.trim)
            except Exception:
                log.exception("giving free heap memory back failed")
                return
            self.trims += 1
