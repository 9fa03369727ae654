"""A project's concurrent-runs limit, exact across every process: a count of the runs holding a slot.

``take`` runs in the transaction that creates the run: one conditional ``UPDATE projects SET active_runs =
active_runs + 1 WHERE active_runs < limit``. PostgreSQL re-checks the condition on the row as the
transaction that held it left it, and SQLite serialises writers, so two creations can never both take the
last slot. The run records that it holds one (``runs.holds_slot``); the transaction that ends it (or
deletes its thread) clears the flag and gives the slot back, once. A project without the limit pays
nothing: its limit is read from the per-process cache (services/rate_limits.py).

Runs created while a project had no limit hold no slot: setting a limit counts the runs created from then
on.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from assistd.errors import RateLimited
from assistd.observability import metrics
from assistd.services import rate_limits
from assistd.services.run_objects import TERMINAL_STATUSES
from assistd.store.tables import projects, runs


async def take(conn: AsyncConnection, project_id: str) -> bool:
    """A slot for a run being created: True when taken, False when the project has no limit; a 429 when
    every slot is held."""
    limiter = rate_limits.current
    if limiter is None:
        return False
    limit = (await limiter.limits_for(project_id)).concurrent_runs
    if not limit:
        return False
    if await _take_one(conn, project_id, limit):
        return True
    if await _reclaim(conn, project_id) and await _take_one(conn, project_id, limit):
        return True
    active = (await conn.execute(select(projects.c.active_runs).where(projects.c.id == project_id))).scalar()
    if metrics.ENABLED:
        metrics.rate_limited.labels("requests").inc()
    raise RateLimited(f"Too many concurrent runs: Limit {limit}, Active {active}. Please try again when a run "
                      "has ended.", kind="requests", retry_after=1)


async def _take_one(conn: AsyncConnection, project_id: str, limit: int) -> bool:
    taken = await conn.execute(update(projects).where(projects.c.id == project_id, projects.c.active_runs < limit)
                               .values(active_runs=projects.c.active_runs + 1))
    return taken.rowcount == 1


async def _reclaim(conn: AsyncConnection, project_id: str) -> int:
    """Slots still held by ended runs (an ending whose transaction failed after the run's status was set is
    saved again without this process knowing it ended): given back, on the refusal path only."""
    released = await conn.execute(update(runs).where(
        runs.c.project_id == project_id, runs.c.holds_slot.is_(True), runs.c.status.in_(TERMINAL_STATUSES),
    ).values(holds_slot=None))
    if released.rowcount:
        await _free(conn, project_id, released.rowcount)
    return released.rowcount


async def give_back(conn: AsyncConnection, project_id: str, run_id: str) -> None:
    """The run ended (its final status is being saved in this transaction): its slot, if it still holds one."""
    released = await conn.execute(update(runs).where(runs.c.id == run_id, runs.c.holds_slot.is_(True))
                                  .values(holds_slot=None))
    if released.rowcount:
        await _free(conn, project_id, released.rowcount)


async def give_back_thread(conn: AsyncConnection, project_id: str, thread_id: str) -> None:
    """The thread is being deleted with its runs: the slots its active runs hold."""
    released = await conn.execute(update(runs).where(runs.c.thread_id == thread_id, runs.c.project_id == project_id,
                                                     runs.c.holds_slot.is_(True)).values(holds_slot=None))
    if released.rowcount:
        await _free(conn, project_id, released.rowcount)


async def _free(conn: AsyncConnection, project_id: str, count: int) -> None:
    await conn.execute(update(projects).where(projects.c.id == project_id)
                       .values(active_runs=projects.c.active_runs - count))
