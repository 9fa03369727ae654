"""The ``jobs`` table: background work other than runs (file ingestion), queued in the caller's transaction,
claimed under a lease (``QUEUE``, store/leased_queue.py), and deleted some time after it finished.

A job is claimable when ``queued`` or ``running`` (its holder died) and nobody holds a live lease on it;
a claim marks it ``running`` and counts the attempt. The runner that executes them: runner/jobs.py.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import and_, delete, insert, or_
from sqlalchemy.ext.asyncio import AsyncConnection

from assistd import ids
from assistd.store.db import Database
from assistd.store.leased_queue import LeasedQueue
from assistd.store.tables import jobs

QUEUE = LeasedQueue(
    jobs, claimable=("queued", "running"), columns=("id", "project_id", "kind", "payload", "attempts"),
    on_claim={"status": "running", "attempts": jobs.c.attempts + 1}, on_release={"status": "queued"},
    look_first=True,  # jobs are rare: most claims find none
)

# Finished jobs are kept this long after they were queued (a trace of what ran, with attempts and errors).
DONE_KEPT_SECONDS = 24 * 3600
FAILED_KEPT_SECONDS = 7 * 24 * 3600


async def enqueue(conn: AsyncConnection, project_id: str, kind: str, payloads: Sequence[dict[str, Any]]) -> None:
    """Queue jobs in the caller's transaction: they exist exactly when the caller's work commits."""
    if payloads:
        now = ids.now()
        await conn.execute(insert(jobs), [
            {"id": "job_" + ids.random_base62(), "project_id": project_id, "kind": kind,
             "payload": orjson.dumps(p).decode(), "status": "queued", "attempts": 0, "created_at": now}
            for p in payloads])


async def purge(db: Database, now: float | None = None) -> int:
    """Delete finished jobs past their keeping time; how many."""
    now = time.time() if now is None else now
    async with db.write() as conn:
        result = await conn.execute(delete(jobs).where(or_(
            and_(jobs.c.status == "done", jobs.c.created_at < now - DONE_KEPT_SECONDS),
            and_(jobs.c.status == "failed", jobs.c.created_at < now - FAILED_KEPT_SECONDS))))
    return result.rowcount or 0
