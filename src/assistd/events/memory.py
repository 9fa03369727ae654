"""In-process event bus: a queue per subscriber. Enough for SQLite (single node) and for runs executed
by the same process that streams them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from assistd.events.base import Event, EventBus, Subscription


class _MemorySubscription(Subscription):
    def __init__(self, bus: MemoryBus, channel: str) -> None:
        self._bus = bus
        self._channel = channel
        self.queue: asyncio.Queue[Event] = asyncio.Queue()

    async def __aiter__(self) -> AsyncIterator[Event]:
        while True:
            yield await self.queue.get()

    async def get(self, timeout: float | None = None) -> Event | None:
        # No task per call (as ``wait_for`` makes): a stream is woken the loop turn its event is put.
        if not self.queue.empty():
            return self.queue.get_nowait()
        try:
            async with asyncio.timeout(timeout):
                return await self.queue.get()
        except TimeoutError:
            return None

    def ready(self) -> Event | None:
        return self.queue.get_nowait() if not self.queue.empty() else None

    async def close(self) -> None:
        self._bus._remove(self._channel, self)


class MemoryBus(EventBus):
    def __init__(self) -> None:
        self._subscribers: dict[str, set[_MemorySubscription]] = {}

    async def publish(self, channel: str, event: Event) -> None:
        for sub in self._subscribers.get(channel, ()):
            sub.queue.put_nowait(event)

    async def subscribe(self, channel: str) -> Subscription:
        sub = _MemorySubscription(self, channel)
        self._subscribers.setdefault(channel, set()).add(sub)
        return sub

    def _remove(self, channel: str, sub: _MemorySubscription) -> None:
        subs = self._subscribers.get(channel)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subscribers[channel]
