"""The runs table as a leased queue (store/leased_queue.py): which runs need a worker, and claiming them.

A run needs a worker while ``queued``, ``in_progress`` or ``cancelling`` (the worker records the
cancellation); a run left by a worker whose lease lapsed is claimed again and counted
(``observe_runs.leases_reclaimed``).
"""

from __future__ import annotations

from assistd.observability import runs as observe_runs
from assistd.store.db import Database
from assistd.store.leased_queue import LeasedQueue
from assistd.store.tables import runs

QUEUE = LeasedQueue(runs, claimable=("queued", "in_progress", "cancelling"), columns=("id", "project_id"))


async def claim(db: Database, owner: str, lease_seconds: float, limit: int) -> list[tuple[str, str]]:
    """Claim up to ``limit`` runs; returns (run_id, project_id) pairs, oldest first."""
    claimed = await QUEUE.claim(db, owner, lease_seconds, limit)
    observe_runs.leases_reclaimed(claimed.reclaimed)
    return [(row.id, row.project_id) for row in claimed.rows]
