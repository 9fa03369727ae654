"""A table used as a queue of work: rows claimed under a lease that their holder renews, then released.

A row is claimable when its status says it needs a worker and nobody holds a live lease on it
(``lease_expires_at`` unset or past). Its holder renews the lease by heartbeat; a holder that dies stops
renewing, and once the lease lapses the row is claimed again: a reclaim, counted for the caller. PostgreSQL
claims with ``FOR UPDATE SKIP LOCKED``, so claimers never block one another; SQLite writers are serialised
by the Database, which makes select-then-update safe. SQLite is single-node: a process starting takes
back every lease at once (``release_all``), since whatever a dead process held is its own to resume.

The queues: runs (runner/claims.py) and background jobs (store/jobs.py). The table needs ``id``,
``status``, ``seq`` (claim order), ``lease_owner`` and ``lease_expires_at``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Row, Table, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from assistd.store.db import Database


@dataclass(frozen=True, slots=True)
class Claimed:
    rows: list[Row[*tuple[Any, ...]]]  # the claimed rows' ``LeasedQueue.columns``, oldest first
    reclaimed: int  # how many of them were taken from a holder whose lease had lapsed (a dead worker's)


@dataclass(frozen=True, eq=False)
class LeasedQueue:
    table: Table
    claimable: tuple[str, ...]  # the statuses in which a row needs a worker
    columns: tuple[str, ...]  # what a claim returns of each row
    # Set on rows as they are claimed and as they are given back, besides their lease (jobs: their status).
    on_claim: Mapping[str, Any] = field(default_factory=dict)
    on_release: Mapping[str, Any] = field(default_factory=dict)
    # Read before claiming, so that an idle queue costs no write transaction (SQLite serialises those).
    look_first: bool = False

    def _claimable(self, now: float, exclude: Sequence[str]) -> list[ColumnElement[bool]]:
        c = self.table.c
        where = [c.status.in_(self.claimable), or_(c.lease_expires_at.is_(None), c.lease_expires_at < now)]
        if exclude:
            where.append(c.id.not_in(list(exclude)))
        return where

    async def claim(self, db: Database, owner: str, lease_seconds: float, limit: int,
                    exclude: Sequence[str] = ()) -> Claimed:
        """Lease up to ``limit`` rows to ``owner``, oldest first; ``exclude``: ids never to claim."""
        now = time.time()
        c = self.table.c
        if self.look_first:
            async with db.read() as conn:
                if (await conn.execute(select(c.id).where(*self._claimable(now, exclude)).limit(1))).first() is None:
                    return Claimed([], 0)
        async with db.write() as conn:
            stmt = (select(*(c[name] for name in self.columns), c.lease_owner)
                    .where(*self._claimable(now, exclude)).order_by(c.seq).limit(limit))
            if not db.is_sqlite:
                stmt = stmt.with_for_update(skip_locked=True)
            rows = list((await conn.execute(stmt)).all())
            if rows:
                await conn.execute(update(self.table).where(c.id.in_([r.id for r in rows])).values(
                    lease_owner=owner, lease_expires_at=now + lease_seconds, **self.on_claim))
        return Claimed(rows, sum(r.lease_owner is not None for r in rows))

    async def renew(self, db: Database, owner: str, row_ids: Sequence[str], lease_seconds: float
                    ) -> dict[str, str]:
        """Extend ``owner``'s leases on these rows; {id: status} of those it still holds."""
        if not row_ids:
            return {}
        c = self.table.c
        async with db.write() as conn:
            result = await conn.execute(
                update(self.table).where(c.id.in_(list(row_ids)), c.lease_owner == owner)
                .values(lease_expires_at=time.time() + lease_seconds).returning(c.id, c.status))
            return {row.id: row.status for row in result}

    async def settle(self, conn: AsyncConnection, owner: str, row_id: str, **values: Any) -> bool:
        """In the caller's transaction: write the row's outcome (``values``) and end its lease — only while
        ``owner`` holds it. False: another holder has it now (the caller should roll back)."""
        c = self.table.c
        result = await conn.execute(update(self.table).where(c.id == row_id, c.lease_owner == owner)
                                    .values(lease_owner=None, lease_expires_at=None, **values))
        return bool(result.rowcount)

    async def release(self, db: Database, owner: str, row_id: str, *, delay: float = 0.0, **values: Any) -> None:
        """Give the row back to the queue (if ``owner`` still holds it), claimable again ``delay`` seconds
        from now; ``values``: written with it."""
        c = self.table.c
        async with db.write() as conn:
            await conn.execute(update(self.table).where(c.id == row_id, c.lease_owner == owner).values(
                lease_owner=None, lease_expires_at=(time.time() + delay) if delay else None,
                **self.on_release, **values))

    async def release_all(self, db: Database) -> None:
        """Every lease, whoever holds it: for a single-node process starting."""
        async with db.write() as conn:
            await conn.execute(update(self.table).where(self.table.c.lease_owner.is_not(None))
                               .values(lease_owner=None, lease_expires_at=None, **self.on_release))
