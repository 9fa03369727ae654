"""The two loops every claimer of a leased queue (store/leased_queue.py) runs beside its claim loop: one keeps
the leases of what it executes alive, the other wakes it when work is queued, here or in another process.
The worker pool (runs) and the job runner (ingestion jobs) both run them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from assistd.events.base import Subscription
from assistd.store.db import Database
from assistd.store.leased_queue import LeasedQueue


async def keep_leases(
    queue: LeasedQueue, db: Database, owner: str, *, lease_seconds: float, every: float,
    held: Callable[[], list[str]], heard: Callable[[str, str | None], None], log: logging.Logger,
) -> None:
    """Every ``every`` seconds renew ``owner``'s leases on the rows ``held()`` names, then tell ``heard`` each
    row's status — None when the lease was lost (another holder has the row now). A failed renewal is
    tried again next time: the lease outlives several heartbeats."""
    while True:
        await asyncio.sleep(every)
        row_ids = held()
        if not row_ids:
            continue
        try:
            statuses = await queue.renew(db, owner, row_ids, lease_seconds)
        except Exception:
            log.exception("renewing leases failed")
            continue
        for row_id in row_ids:
            heard(row_id, statuses.get(row_id))


async def wake_on(sub: Subscription, wake: Callable[[], None]) -> None:
    """Call ``wake`` for every event on ``sub`` (Outbox.wake_runs / wake_jobs publish them after a commit)."""
    try:
        while True:
            if await sub.get() is not None:
                wake()
    finally:
        await sub.close()
