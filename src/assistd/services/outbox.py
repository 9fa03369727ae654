"""What a transaction causes beyond its rows, collected while it runs and delivered only after it commits:
its run's events, events on other channels, runs and jobs to wake, cache invalidations. So no subscriber,
worker or cache ever acts on a state that was rolled back (polar's rule for background jobs, applied to
every after-commit effect).

Everything travels on the event bus, which delivers to this process's subscribers at once and to the
others' through the broker: the local worker pool and job workers, the step cache and the code sessions
listen on their channel like any other process's (events/channels.py). Nothing is registered globally.
"""

from __future__ import annotations

from typing import Any

import orjson

from assistd.events import channels
from assistd.events.base import Event, EventBus, run_channel


class Outbox:
    """The after-commit effects of one transaction; ``run_id`` (the run whose events ``add`` collects) may be
    learnt after the first event (create thread-and-run)."""

    def __init__(self, run_id: str | None = None) -> None:
        self.run_id = run_id
        self.items: list[Event] = []  # the run's events, in order
        self.others: list[tuple[str, Event]] = []  # (channel, event), after the run's

    def add(self, name: str, data: dict[str, Any]) -> None:
        """An event of the run. Snapshot: the caller keeps mutating its dicts after the event is queued."""
        self.items.append(Event(name, orjson.loads(orjson.dumps(data))))

    def publish(self, channel: str, event: Event) -> None:
        if (channel, event) not in self.others:  # a wake-up or an invalidation counts once
            self.others.append((channel, event))

    def wake_runs(self, run_id: str) -> None:
        """``run_id`` became claimable: every pool looks now rather than at its next poll."""
        self.publish(channels.RUNS_WAKE, Event("wake", {"run_id": run_id}))

    def wake_jobs(self) -> None:
        """Jobs were queued: every process executing jobs looks now rather than at its next poll."""
        self.publish(channels.JOBS_WAKE, Event("wake", {}))

    def forget_thread(self, thread_id: str) -> None:
        """The thread is gone: every process drops what it caches of it."""
        self.publish(channels.CACHE, Event(channels.THREAD_DELETED, {"thread_id": thread_id}))

    async def flush(self, bus: EventBus) -> None:
        items, self.items = self.items, []
        others, self.others = self.others, []
        if self.run_id is not None:
            channel = run_channel(self.run_id)
            for event in items:
                await bus.publish(channel, event)
        for channel, event in others:
            await bus.publish(channel, event)
