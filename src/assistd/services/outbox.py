"""Events collected inside a transaction and published only after it commits, so a subscriber never
hears of a state that was rolled back (polar's rule for background jobs, applied to events)."""

from __future__ import annotations

from typing import Any

import orjson

from assistd.events.base import Event, EventBus, run_channel


class Outbox:
    """Events of one run; ``run_id`` may be learnt after the first event (create thread-and-run)."""

    def __init__(self, run_id: str | None = None) -> None:
        self.run_id = run_id
        self.items: list[Event] = []

    def add(self, name: str, data: dict[str, Any]) -> None:
        # Snapshot: the caller keeps mutating its dicts after the event is queued.
        self.items.append(Event(name, orjson.loads(orjson.dumps(data))))

    async def flush(self, bus: EventBus) -> None:
        items, self.items = self.items, []
        if self.run_id is None:
            return
        channel = run_channel(self.run_id)
        for event in items:
            await bus.publish(channel, event)
