"""Around the transaction that queues a run (create, thread-and-run, tool outputs) or cancels one: the one
place that decides where the run starts and when the world hears of it.

1. With a slot free in this process's pool, a ``Lease`` of it: the transaction stores the run started
   under it (services/runs.py) and its executor is prepared inside (``WorkerPool.reserve``) — no claim
   round, no start transaction, no wait. Otherwise the run is left queued and the pools are woken.
2. A stream's subscription is taken inside the transaction, before any worker anywhere can start the run,
   and opens with the transaction's own events (events/prelude.py): every event once, in order.
3. After the commit: the transaction's effects are delivered (``Outbox``), then the run starts here —
   or, if the transaction failed, the slot is freed.

Routes call ``queue`` or ``cancel`` and answer; services only see the ``Lease`` (a slot, owned by the pool)
and the ``Outbox``, and say what they stored (``QueuedRun``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from assistd.events.base import EventBus, Subscription, run_channel
from assistd.events.prelude import PreludeSubscription
from assistd.runner.pool import WorkerPool
from assistd.services.outbox import Outbox
from assistd.services.runs import Lease, QueuedRun
from assistd.store.db import Database

# What a transaction that queues a run returns: the run (as queued, and as stored), and what it knows of the
# run's steps and of its thread's messages (None: not known), for the run's first turn when this process
# executes it.
Queued = tuple[QueuedRun, list[dict[str, Any]] | None, list[dict[str, Any]] | None]
QueueAction = Callable[[AsyncConnection, Outbox, Lease | None], Awaitable[Queued]]
CancelAction = Callable[[AsyncConnection, Outbox], Awaitable[dict[str, Any]]]


@dataclass
class Launched:
    run: dict[str, Any]  # as the client sees it: queued
    events: Subscription | None  # with ``stream``: the run's events, its own transaction's first


class RunLauncher:
    def __init__(self, db: Database, bus: EventBus, pool: WorkerPool | None) -> None:
        self.db = db
        self.bus = bus
        self.pool = pool  # None: this process executes no runs (an API-only serve)

    async def queue(self, project_id: str, action: QueueAction, *, run_id: str | None = None,
                    stream: bool = False) -> Launched:
        """Run ``action`` in one transaction and get its run executed; ``run_id`` when already known."""
        pool = self.pool
        lease = pool.lease() if pool is not None else None
        outbox = Outbox(run_id)
        sub: Subscription | None = None
        committed = False
        try:
            async with self.db.write() as conn:
                queued, steps, thread = await action(conn, outbox, lease)
                run = queued.run
                if pool is not None and lease is not None and queued.started is not None:
                    await pool.reserve(conn, lease, queued.started, project_id, steps=steps, thread=thread)
                else:  # whichever pool claims it first, in any process
                    outbox.wake_runs(run["id"])
                if stream:
                    sub = await self.bus.subscribe(run_channel(run["id"]))
            committed = True
            if sub is not None:  # its own events first, whatever a worker elsewhere publishes before they are out
                sub = PreludeSubscription(sub, outbox.items)
            await outbox.flush(self.bus)
        except BaseException:
            if sub is not None:  # no stream will read it
                await sub.close()
            raise
        finally:
            if pool is not None and lease is not None:  # after the events: the run starts here, or the slot frees
                pool.settle(lease, committed)
        return Launched(run, sub)

    async def cancel(self, run_id: str, action: CancelAction) -> dict[str, Any]:
        """Ask for the run's cancellation in one transaction; this process's pool stops it at once if it
        executes it (others notice by heartbeat)."""
        outbox = Outbox(run_id)
        async with self.db.write() as conn:
            run = await action(conn, outbox)
        await outbox.flush(self.bus)
        if self.pool is not None:
            self.pool.cancel_local(run_id)
        return run
