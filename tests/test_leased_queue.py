"""store/leased_queue.py's contract, the same for both of its queues (runs and jobs), on the test database:
claim oldest first up to a limit, a live lease is its holder's alone, renew and settle only while held,
release (at once or after a delay), release every lease, and reclaims of lapsed leases counted."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import insert

from assistd.runner import claims
from assistd.store import jobs
from assistd.store.db import Database
from assistd.store.leased_queue import LeasedQueue
from assistd.store.migrate import migrate
from tests.run_helpers import fresh_database


def run_row(row_id: str, status: str) -> dict[str, Any]:
    return {"id": row_id, "project_id": "p", "created_at": 0, "thread_id": "t", "status": status, "data": "{}"}


def job_row(row_id: str, status: str) -> dict[str, Any]:
    return {"id": row_id, "project_id": "p", "kind": "k", "payload": "{}", "status": status, "attempts": 0,
            "created_at": 0}


QUEUES = {"runs": (claims.QUEUE, run_row, "completed"), "jobs": (jobs.QUEUE, job_row, "done")}


@pytest.mark.parametrize("kind", QUEUES)
def test_leased_queue_contract(kind: str, database_url: str, tmp_path: Any) -> None:
    queue, row, finished = QUEUES[kind]
    with fresh_database(database_url, tmp_path) as url:
        asyncio.run(_contract(url, queue, row, finished))


async def _contract(url: str, queue: LeasedQueue, row: Callable[[str, str], dict[str, Any]], finished: str) -> None:
    db = Database(url, pool_size=2)
    try:
        await migrate(db)
        async with db.write() as conn:
            await conn.execute(insert(queue.table), [row("a", "queued"), row("b", "queued"), row("c", "queued"),
                                                     row("x", finished)])

        async def claim(owner: str, limit: int = 10, lease_seconds: float = 30, **kw: Any) -> tuple[list[str], int]:
            claimed = await queue.claim(db, owner, lease_seconds, limit, **kw)
            return [r.id for r in claimed.rows], claimed.reclaimed

        assert await claim("w1", limit=2) == (["a", "b"], 0)  # oldest first, up to the limit
        assert await claim("w2", exclude=["c"]) == ([], 0)  # a live lease is its holder's; an excluded row stays
        assert set(await queue.renew(db, "w1", ["a", "b", "c"], 30)) == {"a", "b"}  # only what it holds
        assert await claim("w2", lease_seconds=-1) == (["c"], 0)  # a lease that has already lapsed…
        assert await claim("w3") == (["c"], 1)  # …is claimed again: a reclaim
        assert await queue.renew(db, "w2", ["c"], 30) == {}  # its old holder lost it

        async with db.write() as conn:  # only the holder settles an outcome
            assert not await queue.settle(conn, "w2", "c", status=finished)
            assert await queue.settle(conn, "w3", "c", status=finished)
        assert await queue.renew(db, "w3", ["c"], 30) == {}  # settled: no lease left

        await queue.release(db, "w2", "a")  # not w2's: nothing happens
        assert await claim("w4") == ([], 0)
        await queue.release(db, "w1", "a")
        assert await claim("w4") == (["a"], 0)  # given back, not lapsed: no reclaim
        await queue.release(db, "w4", "a", delay=3600)
        assert await claim("w5") == ([], 0)  # not before its delay

        await queue.release_all(db)  # every live lease (w1's on b); a keeps its delay
        assert await claim("w6") == (["b"], 0)
    finally:
        await db.close()
