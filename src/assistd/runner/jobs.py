"""Executing background jobs other than runs (file ingestion), claimed from the ``jobs`` table (store/jobs.py).

The same lease scheme as runs (store/leased_queue.py, runner/lease_loops.py): a heartbeat renews the
leases every 0.5 s; a process that dies stops renewing and another takes the job over once the lease
lapses (on SQLite, a restarted ``serve`` releases every lease at start). A handler records its outcome in
one transaction that also marks the job ``done`` through ``finish(conn)``, which raises ``LeaseLost``
(rolling it all back) unless this runner still holds the lease — so a job's outcome is committed once, by
its current owner, however many times it was started.

A job that keeps failing unexpectedly is retried with a back-off; ``Job.attempts`` counts the claims, so a
handler can give up on a job that kills its process every time (see ``MAX_ATTEMPTS``). Finished jobs are
deleted a day (failed ones a week) after they were queued (``store.jobs.purge``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from assistd import ids
from assistd.events import channels
from assistd.events.base import EventBus
from assistd.observability import metrics
from assistd.runner.lease_loops import keep_leases, wake_on
from assistd.store.db import Database
from assistd.store.jobs import QUEUE, purge

log = logging.getLogger("assistd.jobs")

MAX_ATTEMPTS = 5
RETRY_SECONDS = 2.0
PURGE_EVERY_SECONDS = 600.0  # every runner deletes finished jobs past their keeping time this often


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


async def complete(conn: AsyncConnection, job_id: str, owner: str, *, error: str | None = None) -> None:
    """Record the job finished (``failed`` with ``error``) in the caller's transaction, while we hold it."""
    if not await QUEUE.settle(conn, owner, job_id, status="failed" if error else "done", last_error=error):
        raise LeaseLost(job_id)
    metrics.ingestion_jobs.labels("failed" if error else "completed").inc()


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
            await QUEUE.release_all(self.db)
        self._loops = [asyncio.create_task(self._claim_loop()), asyncio.create_task(keep_leases(
            QUEUE, self.db, self.owner, lease_seconds=self.lease_seconds, every=self.heartbeat_seconds,
            held=lambda: list(self._running), heard=self._heard, log=log))]
        if self.bus is not None:
            self._loops.append(asyncio.create_task(wake_on(await self.bus.subscribe(channels.JOBS_WAKE), self.wake)))

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
                    claimed = await self._claim(free)
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

    async def _claim(self, limit: int) -> list[Job]:
        # Never our own running jobs, should a heartbeat have been late: a job never runs twice here.
        claimed = await QUEUE.claim(self.db, self.owner, self.lease_seconds, limit, exclude=list(self._running))
        return [Job(r.id, r.project_id, r.kind, orjson.loads(r.payload), r.attempts + 1) for r in claimed.rows]

    def _heard(self, job_id: str, status: str | None) -> None:
        """The heartbeat's news of a job we execute: None, its lease was lost."""
        task = self._running.get(job_id)
        if status is None and task is not None:
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
                    await asyncio.shield(QUEUE.release(self.db, self.owner, job.id, last_error=None))
        except LeaseLost:
            log.warning("job %s: lease lost before its outcome was recorded; the new owner's counts", job.id)
        except Exception as exc:
            log.exception("job %s (%s) failed; retrying in %.0f s", job.id, job.kind, RETRY_SECONDS)
            with contextlib.suppress(Exception):
                await QUEUE.release(self.db, self.owner, job.id, delay=RETRY_SECONDS,
                                    last_error=f"{type(exc).__name__}: {exc}")
        finally:
            self._running.pop(job.id, None)
            self.wake()
