"""Runs past ``expires_at`` that nobody is executing end there, as the hosted API's did.

A run executing under a live lease expires by itself (the executor's deadline). Every other run past
``expires_at`` is ended here: one waiting on the client (requires_action), one queued that no worker took
in time (all busy, or none running at all: an API-only ``serve`` with no ``assistd worker``), one left
in_progress by a worker that died with nobody to resume it. A run whose cancel was asked ends cancelled,
every other one expired, its open steps and message closed with it (runner/endings.py).

Every ``assistd serve`` sweeps — API-only ones too — and every ``assistd worker``. Two sweepers never end a
run twice: each run is ended in its own transaction, re-read under its row lock (PostgreSQL: ``SKIP LOCKED``,
so a claim or another sweeper holding it wins) with the same conditions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import orjson
from sqlalchemy import and_, or_, select

from assistd.events.base import EventBus
from assistd.runner.endings import end_overdue
from assistd.services.outbox import Outbox
from assistd.store.db import Database
from assistd.store.tables import runs

log = logging.getLogger("assistd.runner")

# Statuses a run can be left in past expires_at (terminal ones have no expires_at).
OPEN = ("queued", "in_progress", "cancelling", "requires_action")


def _overdue() -> Any:
    now = time.time()
    return and_(runs.c.expires_at < int(now), runs.c.status.in_(OPEN),
                or_(runs.c.lease_expires_at.is_(None), runs.c.lease_expires_at < now))


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
            found = (await conn.execute(
                select(runs.c.id, runs.c.project_id).where(_overdue()).order_by(runs.c.seq).limit(self.batch)
            )).all()
        ended = 0
        for run_id, project_id in found:
            ended += await self._end(run_id, project_id)
        return ended

    async def _end(self, run_id: str, project_id: str) -> bool:
        outbox = Outbox(run_id)
        async with self.db.write() as conn:
            stmt = select(runs.c.data).where(runs.c.id == run_id, _overdue())
            if not self.db.is_sqlite:
                stmt = stmt.with_for_update(skip_locked=True)
            raw = (await conn.execute(stmt)).scalar_one_or_none()
            if raw is None:  # taken, resumed or ended meanwhile
                return False
            await end_overdue(conn, orjson.loads(raw), outbox)
        await outbox.flush(self.bus)
        return True
