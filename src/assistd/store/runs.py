"""Run rows as the sweeper finds and locks them (runner/sweeper.py); the runs table as a queue of work is
runner/claims.py's, and run objects are read and written with store/objects.py's functions.

A run is overdue when it is past ``expires_at``, still open, and nobody holds a live lease on it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from assistd.store.tables import runs

# Statuses a run can be left in past expires_at (terminal ones have no expires_at).
OPEN = ("queued", "in_progress", "cancelling", "requires_action")


def _overdue() -> ColumnElement[bool]:
    now = time.time()
    return and_(runs.c.expires_at < int(now), runs.c.status.in_(OPEN),
                or_(runs.c.lease_expires_at.is_(None), runs.c.lease_expires_at < now))


async def overdue_runs(conn: AsyncConnection, limit: int) -> Sequence[tuple[str, str]]:
    """Why: the sweeper's batch — (run_id, project_id) of up to ``limit`` overdue runs, oldest first."""
    rows = await conn.execute(
        select(runs.c.id, runs.c.project_id).where(_overdue()).order_by(runs.c.seq).limit(limit))
    return [(run_id, project_id) for run_id, project_id in rows]


async def lock_overdue_run(conn: AsyncConnection, run_id: str) -> dict[str, Any] | None:
    """Why: the sweeper ends a run only if it is still overdue when re-read under its row lock; on PostgreSQL
    a lock held elsewhere (a claim, another sweeper) is skipped — None, as for a run no longer overdue."""
    stmt = select(runs.c.data).where(runs.c.id == run_id, _overdue())
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    raw = (await conn.execute(stmt)).scalar_one_or_none()
    return None if raw is None else orjson.loads(raw)
