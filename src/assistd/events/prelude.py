"""A run stream's subscription that starts with the events its own transaction produced.

The request that queues a run subscribes before its commit, but publishes that transaction's events
(``thread.run.created``, ``.queued``, …) only after it: by then a worker in another process may have
claimed the run and its ``in_progress`` arrived over the bus first. So the stream hands out those events
itself, first and in their order, then relays the bus — dropping the same events when the local publish
delivers them (they are the very ``Event`` objects: the bus gives local subscribers what was published).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from assistd.events.base import Event, Subscription


class PreludeSubscription(Subscription):
    def __init__(self, inner: Subscription, prelude: Sequence[Event]) -> None:
        self._inner = inner
        self._prelude = list(prelude)
        self._echoes = list(prelude)  # still to be dropped when the bus brings them back

    def _keep(self, event: Event | None) -> bool:
        for i, echo in enumerate(self._echoes):
            if echo is event:
                del self._echoes[i]
                return False
        return True

    def ready(self) -> Event | None:
        if self._prelude:
            return self._prelude.pop(0)
        while (event := self._inner.ready()) is not None:
            if self._keep(event):
                return event
        return None

    async def get(self, timeout: float | None = None) -> Event | None:
        if (event := self.ready()) is not None:
            return event
        while True:
            event = await self._inner.get(timeout)
            if event is None or self._keep(event):
                return event

    async def __aiter__(self) -> AsyncIterator[Event]:
        while True:
            event = await self.get()
            if event is not None:
                yield event

    async def close(self) -> None:
        await self._inner.close()
