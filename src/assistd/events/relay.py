"""What the cross-process buses share: local delivery first, then a single writer task that relays the
encoded events to the broker in publish order, batching whatever piled up during a round trip.

Subclasses give ``encode`` (an event → the message(s) to send), ``_send`` (one batch, with their own
retries) and ``_close_connections``; they start ``_write_loop`` beside their reader in ``start()``.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from typing import Any

from assistd.events.base import Event, error_event
from assistd.events.memory import MemoryBus

log = logging.getLogger("assistd.events")

BATCH = 256  # messages sent in one round trip at most
QUEUE_SIZE = 10_000  # publish() waits when this many events are waiting for the broker (back-pressure)
RETRY_SECONDS = 5.0  # a batch that cannot be sent for this long is dropped (and logged)


INTERRUPTED = error_event("The event stream was interrupted; retrieve the run for its current state.")


def why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class RelayBus(MemoryBus):
    def __init__(self) -> None:
        super().__init__()
        self._queue: asyncio.Queue[Any] = asyncio.Queue(QUEUE_SIZE)
        self._tasks: list[asyncio.Task[None]] = []
        self._running = False
        self._warned_idle = False

    @abc.abstractmethod
    def encode(self, channel: str, event: Event) -> Any: ...

    @abc.abstractmethod
    async def _send(self, batch: list[Any]) -> None: ...

    @abc.abstractmethod
    async def _close_connections(self) -> None: ...

    async def publish(self, channel: str, event: Event) -> None:
        await super().publish(channel, event)  # local subscribers first, with no added latency
        if not self._running:
            if not self._warned_idle:
                self._warned_idle = True
                log.warning("%s not started (or closed): events reach this process only", type(self).__name__)
            return
        await self._queue.put(self.encode(channel, event))  # encoded now: the caller may mutate event.data

    def _interrupt_streams(self) -> None:
        """The connection that brings other processes' events dropped: whatever they sent meanwhile is gone.
        Every local subscriber gets an ``error`` event, so a stream ends saying so (the client retrieves the
        run) instead of going on with a gap nobody would notice."""
        for subs in self._subscribers.values():
            for sub in subs:
                sub.queue.put_nowait(INTERRUPTED)

    async def _write_loop(self) -> None:
        # The only sender, and it waits for each send before the next: messages leave in publish order.
        while True:
            batch = [await self._queue.get()]
            while len(batch) < BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._send(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def aclose(self) -> None:
        if self._running:
            self._running = False
            with contextlib.suppress(TimeoutError):  # let queued events out, within reason
                await asyncio.wait_for(self._queue.join(), RETRY_SECONDS)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self._close_connections()
