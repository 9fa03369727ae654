"""Runs past ``expires_at`` that nobody is executing end there, as the hosted API's did.

A run executing under a live lease expires by itself (the executor's deadline). Every other run past
``expires_at`` is ended here: one waiting on the client (requires_action), one queued that no worker took
in time (all busy, or none running at all: an API-only ``serve`` with no ``assistd worker``), one left
in_progress by a worker that died with nobody to resume it. A run whose cancel was asked ends cancelled,
every other one expired, its open steps and message closed with it (runner/endings.py).

Every ``assistd serve`` sweeps — API-only ones too — and every ``assistd worker``. Two sweepers never end a
run twice: each run is ended in its own transaction, re-read under its row lock with the same conditions
(store/runs.py; PostgreSQL: ``SKIP LOCKED``, so a claim or another sweeper holding it wins).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from assistd.events.base import EventBus
from assistd.runner.endings import end_overdue
from assistd.services.outbox import Outbox
from assistd.store import runs as stored_runs
from assistd.store.db import Database

log = logging.getLogger("assistd.runner")


class RunSweeper:
    def __init__(self, db: Database, bus: EventBus, *, every: float = 2.0, batch: int = 100) -> None:
        self.db = db
        self.bus = bus
        self.every = every
        self.batch = batch
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            try:
                await self.sweep()
            except Exception:
                log.exception("ending overdue runs failed")

    async def sweep(self) -> int:
        """End the overdue runs found now (a batch at most); how many were ended."""
        async with self.db.read() as conn:
            found = await stored_runs.overdue_runs(conn, self.batch)
        ended = 0
        for run_id, project_id in found:
            ended += await self._end(run_id, project_id)
        return ended

    async def _end(self, run_id: str, project_id: str) -> bool:
        outbox = Outbox(run_id)
        async with self.db.write() as conn:
            run = await stored_runs.lock_overdue_run(conn, run_id)
            if run is None:  # taken, resumed or ended meanwhile
                return False
            await end_overdue(conn, run, outbox)
        await outbox.flush(self.bus)
        return True
