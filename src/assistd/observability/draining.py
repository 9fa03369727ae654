"""``assistd serve`` under uvicorn, with a drain on SIGTERM.

A load balancer learns a process is going away from its readiness probe. On the first SIGTERM (with
``ASSISTD_DRAIN_SECONDS`` > 0) the process keeps serving but ``/readyz`` answers 503; after the drain
uvicorn's usual graceful shutdown follows (stop accepting, finish open requests). A second signal (or
SIGINT, or a drain of 0) shuts down at once, as before.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from types import FrameType
from typing import Any

import uvicorn

log = logging.getLogger("assistd.server")


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, state: Any, drain_seconds: float) -> None:
        super().__init__(config)
        self.state = state
        self.drain_seconds = drain_seconds

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig != signal.SIGTERM or self.drain_seconds <= 0 or self.state.draining:
            super().handle_exit(sig, frame)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            super().handle_exit(sig, frame)
            return
        self.state.draining = True
        log.info("SIGTERM: draining for %.1fs (/readyz answers 503), then shutting down", self.drain_seconds)
        loop.call_soon_threadsafe(loop.call_later, self.drain_seconds, super().handle_exit, sig, frame)
