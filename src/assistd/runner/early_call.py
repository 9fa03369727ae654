"""A head start's first model call, sent while the transaction that creates its run is still committing.

Its request depends only on what that transaction wrote (the run, its thread's messages), so it is sent
right before the commit (``WorkerPool.reserve``, the transaction's last step), and the upstream's latency and
our own cost of making the call overlap the commit (on PostgreSQL, its wait for the WAL flush) instead of
following it. Nothing the call returns is seen before the commit: only the run's executor reads its
events, and the executor starts after the commit (``WorkerPool.settle``); a transaction that rolls back
closes the call unread.

The first event is awaited by a task of its own (the transaction's task must not wait for it); the
executor takes the stream over from there. A generator is only ever driven by one task at a time: the
executor waits for that task to end before it reads on, or closes the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator

from assistd.providers.base import ChatEvent

_closing: set[asyncio.Task[None]] = set()  # calls being closed after a rollback: referenced until done


class EarlyCall:
    def __init__(self, events: AsyncGenerator[ChatEvent, None]) -> None:
        self._events = events
        self._first: asyncio.Task[ChatEvent | None] = asyncio.create_task(self._take_first())

    async def _take_first(self) -> ChatEvent | None:
        try:
            return await anext(self._events)
        except StopAsyncIteration:
            return None

    async def events(self) -> AsyncGenerator[ChatEvent, None]:
        """The call's events from the first, as ``provider.stream_chat`` gives them (consume it with
        ``aclosing``). Cancelling the consumer while the first is awaited cancels the call."""
        try:
            first = await self._first
            if first is None:
                return
            yield first
            async for event in self._events:
                yield event
        finally:
            await self.close()

    async def close(self) -> None:
        """Stop the call (the HTTP stream is released): nobody will read the rest."""
        if not self._first.done():
            self._first.cancel()
            await asyncio.wait([self._first])  # its own outcome is not ours to raise
        if self._first.cancelled() or self._first.exception() is not None:
            return  # the generator ended with it (and the error is the consumer's, or nobody's)
        await self._events.aclose()

    def abandon(self) -> None:
        """The run's transaction rolled back: close the call without waiting for it."""
        task = asyncio.create_task(self.close())
        _closing.add(task)
        task.add_done_callback(_done_closing)


def _done_closing(task: asyncio.Task[None]) -> None:
    _closing.discard(task)
    if not task.cancelled():
        with contextlib.suppress(Exception):
            task.result()  # an error closing a dropped call is of no interest; retrieved, so never logged
