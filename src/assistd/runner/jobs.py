"""Background jobs other than runs (file ingestion): the ``jobs`` table is the queue, claimed under a lease.

The same scheme as runs (runner/claims.py, runner/pool.py): a job is claimable when it is ``queued`` or
``running`` and nobody holds a live lease on it; PostgreSQL claims with ``FOR UPDATE SKIP LOCKED``;
a heartbeat renews the leases every 0.5 s; a process that dies stops renewing and another takes the job
over once the lease lapses (on SQLite, a restarted ``serve`` releases every lease at start). A handler
records its outcome in one transaction that also marks the job ``done`` through ``finish(conn)``, which
raises ``LeaseLost`` (rolling it all back) unless this runner still holds the lease — so a job's outcome
is committed once, by its current owner, however many times it was started.

A job that keeps failing unexpectedly is retried with a back-off; ``Job.attempts`` counts the claims, so a
handler can give up on a job that kills its process every time (see ``MAX_ATTEMPTS``). Finished jobs are
deleted a day (failed ones a week) after they were queued (``purge``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import and_, delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from assistd import ids
from assistd.events import channels
from assistd.events.base import EventBus, Subscription
from assistd.observability import metrics
from assistd.store.db import Database
from assistd.store.tables import jobs

log = logging.getLogger("assistd.jobs")

CLAIMABLE = ("queued", "running")
MAX_ATTEMPTS = 5
RETRY_SECONDS = 2.0

class LeaseLost(Exception):
    """This runner no longer holds the job's lease: another owns it now, and its outcome counts."""


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    project_id: str
    kind: str
    payload: dict[str, Any]
    attempts: int  # claims so far, this one included


Finish = Callable[[AsyncConnection], Awaitable[None]]
Handler = Callable[[Job, Finish], Awaitable[None]]


async def enqueue(conn: AsyncConnection, project_id: str, kind: str, payloads: Sequence[dict[str, Any]]) -> None:
    """Queue jobs in the caller's transaction: they exist exactly when the caller's work commits."""
    if payloads:
        now = ids.now()
        await conn.execute(insert(jobs), [
            {"id": "job_" + ids.random_base62(), "project_id": project_id, "kind": kind,
             "payload": orjson.dumps(p).decode(), "status": "queued", "attempts": 0, "created_at": now}
            for p in payloads])


# --- the queue --------------------------------------------------------------------------------------------

def _claimable(now: float, exclude: Sequence[str]) -> list[Any]:
    where = [jobs.c.status.in_(CLAIMABLE), or_(jobs.c.lease_expires_at.is_(None), jobs.c.lease_expires_at < now)]
    if exclude:  # our own running jobs, should a heartbeat have been late: never run one twice here
        where.append(jobs.c.id.not_in(list(exclude)))
    return where


async def claim(db: Database, owner: str, lease_seconds: float, limit: int, exclude: Sequence[str] = ()
                ) -> list[Job]:
    now = time.time()
    # A read first: an idle queue costs no write transaction (SQLite serialises those in-process).
    async with db.read() as conn:
        if (await conn.execute(select(jobs.c.id).where(*_claimable(now, exclude)).limit(1))).first() is None:
            return []
    async with db.write() as conn:
        stmt = (select(jobs.c.id, jobs.c.project_id, jobs.c.kind, jobs.c.payload, jobs.c.attempts)
                .where(*_claimable(now, exclude)).order_by(jobs.c.seq).limit(limit))
        if not db.is_sqlite:
            stmt = stmt.with_for_update(skip_locked=True)
        rows = (await conn.execute(stmt)).all()
        if rows:
            await conn.execute(update(jobs).where(jobs.c.id.in_([r.id for r in rows])).values(
                status="running", lease_owner=owner, lease_expires_at=now + lease_seconds,
                attempts=jobs.c.attempts + 1))
    return [Job(r.id, r.project_id, r.kind, orjson.loads(r.payload), r.attempts + 1) for r in rows]


async def complete(conn: AsyncConnection, job_id: str, owner: str, *, error: str | None = None) -> None:
    result = await conn.execute(
        update(jobs).where(jobs.c.id == job_id, jobs.c.lease_owner == owner)
        .values(status="failed" if error else "done", lease_owner=None, lease_expires_at=None, last_error=error))
    if not result.rowcount:
        raise LeaseLost(job_id)
    metrics.ingestion_jobs.labels("failed" if error else "completed").inc()


async def heartbeat(db: Database, owner: str, job_ids: list[str], lease_seconds: float) -> set[str]:
    """Renew our leases; the ids we still hold."""
    async with db.write() as conn:
        result = await conn.execute(
            update(jobs).where(jobs.c.id.in_(job_ids), jobs.c.lease_owner == owner)
            .values(lease_expires_at=time.time() + lease_seconds).returning(jobs.c.id))
        return {row.id for row in result}


async def release(db: Database, owner: str, job_id: str, *, delay: float = 0.0, error: str | None = None) -> None:
    """Give the job back to the queue, claimable again after ``delay`` seconds."""
    async with db.write() as conn:
        await conn.execute(
            update(jobs).where(jobs.c.id == job_id, jobs.c.lease_owner == owner)
            .values(status="queued", lease_owner=None, lease_expires_at=(time.time() + delay) if delay else None,
                    last_error=error))


# Finished jobs are kept this long after they were queued (a trace of what ran, with attempts and errors),
# then deleted: every runner purges once every PURGE_EVERY_SECONDS.
DONE_KEPT_SECONDS = 24 * 3600
FAILED_KEPT_SECONDS = 7 * 24 * 3600
PURGE_EVERY_SECONDS = 600.0


async def purge(db: Database, now: float | None = None) -> int:
    """Delete finished jobs past their keeping time; how many."""
    now = time.time() if now is None else now
    async with db.write() as conn:
        result = await conn.execute(delete(jobs).where(or_(
            and_(jobs.c.status == "done", jobs.c.created_at < now - DONE_KEPT_SECONDS),
            and_(jobs.c.status == "failed", jobs.c.created_at < now - FAILED_KEPT_SECONDS))))
    return result.rowcount or 0


async def release_all_leases(db: Database) -> None:
    """SQLite is single-node: at start, whatever a dead process held is ours to resume at once."""
    async with db.write() as conn:
        await conn.execute(update(jobs).where(jobs.c.status == "running")
                           .values(status="queued", lease_owner=None, lease_expires_at=None))


# --- the runner -------------------------------------------------------------------------------------------

class JobRunner:
    """Claims jobs and runs their handlers, ``concurrency`` at a time (small, so runs keep the CPU)."""

    def __init__(self, db: Database, handlers: Mapping[str, Handler], *, bus: EventBus | None = None,
                 concurrency: int = 2, lease_seconds: float = 10.0, heartbeat_seconds: float = 0.5,
                 poll_seconds: float = 0.5) -> None:
        """``bus``: where ``Outbox.wake_jobs`` wakes this runner (events/channels.py); without one it polls."""
        self.db = db
        self.bus = bus
        self.handlers = dict(handlers)
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.poll_seconds = poll_seconds
        self.owner = f"{socket.gethostname()}:{os.getpid()}:jobs:{ids.random_base62(8)}"
        self._running: dict[str, asyncio.Task[None]] = {}
        self._shutting_down = False
        self._wake = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        if self.db.is_sqlite:
            await release_all_leases(self.db)
        self._loops = [asyncio.create_task(self._claim_loop()), asyncio.create_task(self._heartbeat_loop())]
        if self.bus is not None:
            self._loops.append(asyncio.create_task(self._wake_loop(await self.bus.subscribe(channels.JOBS_WAKE))))

    def wake(self) -> None:
        self._wake.set()

    @property
    def active(self) -> int:
        return len(self._running)

    async def stop(self, grace_seconds: float = 5.0) -> None:
        """Stop claiming, let running jobs finish for a while, then give the rest back to the queue."""
        if not self._loops:
            return  # never started
        self._loops[0].cancel()
        if self._running:
            await asyncio.wait(list(self._running.values()), timeout=grace_seconds)
        self._shutting_down = True
        for task in list(self._running.values()):
            task.cancel()
        if self._running:
            await asyncio.wait(list(self._running.values()), timeout=5)
        for loop in self._loops:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop

    async def _wake_loop(self, sub: Subscription) -> None:
        try:
            while True:
                if await sub.get() is not None:
                    self.wake()
        finally:
            await sub.close()

    async def _claim_loop(self) -> None:
        next_purge = time.monotonic() + PURGE_EVERY_SECONDS
        while True:
            if time.monotonic() >= next_purge:
                next_purge = time.monotonic() + PURGE_EVERY_SECONDS
                try:
                    await purge(self.db)
                except Exception:
                    log.exception("purging finished jobs failed")
            free = self.concurrency - len(self._running)
            claimed: list[Job] = []
            if free > 0:
                try:
                    claimed = await claim(self.db, self.owner, self.lease_seconds, free, list(self._running))
                except Exception:
                    log.exception("claiming jobs failed; retrying")
                for job in claimed:
                    self._running[job.id] = asyncio.create_task(self._execute(job))
            if claimed and len(claimed) < free:
                continue  # there may be more right behind them
            # Idle, or every slot busy: a wake-up (Outbox.wake_jobs) or a finishing job sets the event.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
            self._wake.clear()

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            held = list(self._running)
            if not held:
                continue
            try:
                kept = await heartbeat(self.db, self.owner, held, self.lease_seconds)
            except Exception:
                log.exception("job heartbeat failed")
                continue
            for job_id in set(held) - kept:
                task = self._running.get(job_id)
                if task is not None:
                    log.warning("job %s: lease lost, another worker took it over", job_id)
                    task.cancel()

    async def _execute(self, job: Job) -> None:
        done = False

        async def finish(conn: AsyncConnection) -> None:
            nonlocal done
            await complete(conn, job.id, self.owner)
            done = True

        try:
            handler = self.handlers.get(job.kind)
            if handler is None:
                async with self.db.write() as conn:
                    await complete(conn, job.id, self.owner, error=f"unknown job kind {job.kind!r}")
                return
            await handler(job, finish)
            if not done:  # the handler had nothing to record
                async with self.db.write() as conn:
                    await complete(conn, job.id, self.owner)
        except asyncio.CancelledError:
            if self._shutting_down:
                with contextlib.suppress(Exception):
                    await asyncio.shield(release(self.db, self.owner, job.id))
        except LeaseLost:
            log.warning("job %s: lease lost before its outcome was recorded; the new owner's counts", job.id)
        except Exception as exc:
            log.exception("job %s (%s) failed; retrying in %.0f s", job.id, job.kind, RETRY_SECONDS)
            with contextlib.suppress(Exception):
                await release(self.db, self.owner, job.id, delay=RETRY_SECONDS, error=f"{type(exc).__name__}: {exc}")
        finally:
            self._running.pop(job.id, None)
            self.wake()
