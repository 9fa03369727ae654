"""Counters in PostgreSQL: one row per (project, kind, window), incremented by an upsert that returns the
new count — atomic across every process on the database. Old windows are deleted now and then."""

from __future__ import annotations

import time

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert

from assistd.ratelimits.base import WINDOW_SECONDS, Counters
from assistd.store.db import Database
from assistd.store.tables import rate_limit_counters as counters

_PURGE_SECONDS = 60.0


class PostgresCounters(Counters):
    def __init__(self, db: Database) -> None:
        self.db = db
        self._purged = time.monotonic()

    async def add(self, project_id: str, kind: str, window: int, amount: int) -> int:
        stmt = insert(counters).values(project_id=project_id, kind=kind, window_start=window, used=amount)
        stmt = stmt.on_conflict_do_update(index_elements=[counters.c.project_id, counters.c.kind,
                                                          counters.c.window_start],
                                          set_={"used": counters.c.used + stmt.excluded.used})
        async with self.db.write() as conn:
            used = (await conn.execute(stmt.returning(counters.c.used))).scalar_one()
            if time.monotonic() - self._purged > _PURGE_SECONDS:
                self._purged = time.monotonic()
                await conn.execute(delete(counters).where(counters.c.window_start < window - 2 * WINDOW_SECONDS))
        return int(used)

    async def used(self, project_id: str, kind: str, window: int) -> int:
        async with self.db.read() as conn:
            value = (await conn.execute(select(counters.c.used).where(
                counters.c.project_id == project_id, counters.c.kind == kind, counters.c.window_start == window,
            ))).scalar_one_or_none()
        return int(value or 0)
