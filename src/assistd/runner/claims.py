"""The runs table as a queue: claim under a lease, renew by heartbeat, release.

A run is claimable when its status needs a worker (queued, in_progress, cancelling) and nobody holds a
live lease on it. PostgreSQL claims with ``FOR UPDATE SKIP LOCKED`` so many workers never block each
other; SQLite writers are serialised by the Database, which makes select-then-update safe.
"""

from __future__ import annotations

import time

from sqlalchemy import or_, select, update

from assistd.observability import runs as observe_runs
from assistd.store.db import Database
from assistd.store.tables import runs

CLAIMABLE = ("queued", "in_progress", "cancelling")


async def claim(db: Database, owner: str, lease_seconds: float, limit: int) -> list[tuple[str, str]]:
    """Claim up to ``limit`` runs; returns (run_id, project_id) pairs, oldest first."""
    now = time.time()
    async with db.write() as conn:
        stmt = (
            select(runs.c.id, runs.c.project_id, runs.c.lease_expires_at)
            .where(runs.c.status.in_(CLAIMABLE),
                   or_(runs.c.lease_expires_at.is_(None), runs.c.lease_expires_at < now))
            .order_by(runs.c.seq)
            .limit(limit)
        )
        if not db.is_sqlite:
            stmt = stmt.with_for_update(skip_locked=True)
        rows = (await conn.execute(stmt)).all()
        if not rows:
            return []
        await conn.execute(
            update(runs).where(runs.c.id.in_([r.id for r in rows]))
            .values(lease_owner=owner, lease_expires_at=now + lease_seconds)
        )
    observe_runs.leases_reclaimed(sum(r.lease_expires_at is not None for r in rows))  # a dead worker's
    return [(r.id, r.project_id) for r in rows]


async def heartbeat(db: Database, owner: str, run_ids: list[str], lease_seconds: float) -> dict[str, str]:
    """Renew our leases; returns {run_id: status} for the runs we still hold."""
    if not run_ids:
        return {}
    async with db.write() as conn:
        result = await conn.execute(
            update(runs).where(runs.c.id.in_(run_ids), runs.c.lease_owner == owner)
            .values(lease_expires_at=time.time() + lease_seconds)
            .returning(runs.c.id, runs.c.status)
        )
        return {row.id: row.status for row in result}


async def release(db: Database, owner: str, run_id: str) -> None:
    async with db.write() as conn:
        await conn.execute(
            update(runs).where(runs.c.id == run_id, runs.c.lease_owner == owner)
            .values(lease_owner=None, lease_expires_at=None)
        )


async def release_all_leases(db: Database) -> None:
    """SQLite is single-node: at start, whatever a dead process held is ours to resume at once."""
    async with db.write() as conn:
        await conn.execute(update(runs).where(runs.c.lease_owner.is_not(None))
                           .values(lease_owner=None, lease_expires_at=None))
