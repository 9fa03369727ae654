"""A worker pool: claims runs from the database, executes them concurrently, keeps their leases alive.

Every ``assistd serve`` runs one (``ASSISTD_WORKERS`` slots); ``assistd worker`` runs one alone. The
heartbeat both renews leases and notices cancellation requested through another process (the run's
status turns ``cancelling``), so a cancel stops the upstream call within a heartbeat (0.5 s).
On stop, the pool claims nothing more, lets running runs finish for a grace period, then releases them
for another worker to resume.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time

from sqlalchemy import select

from assistd import ids
from assistd.events.base import EventBus
from assistd.providers.router import ModelRouter
from assistd.runner import claims
from assistd.runner.execute import RunExecutor
from assistd.store.db import Database
from assistd.store.tables import runs

log = logging.getLogger("assistd.runner")


class WorkerPool:
    def __init__(
        self, db: Database, bus: EventBus, router: ModelRouter, *, concurrency: int,
        lease_seconds: float = 10.0, heartbeat_seconds: float = 0.5, poll_seconds: float = 0.25,
        sweep_seconds: float = 2.0,
    ) -> None:
        self.db = db
        self.bus = bus
        self.router = router
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.poll_seconds = poll_seconds
        self.sweep_seconds = sweep_seconds
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{ids.random_base62(8)}"
        self._running: dict[str, tuple[asyncio.Task[None], RunExecutor]] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        self._loops: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        if self.db.is_sqlite:
            await claims.release_all_leases(self.db)
        self._loops = [asyncio.create_task(loop()) for loop in (self._claim_loop, self._heartbeat_loop,
                                                                   self._sweep_loop)]

    def wake(self) -> None:
        """A run became claimable in this process: look now rather than at the next poll."""
        self._wake.set()

    def cancel_local(self, run_id: str) -> None:
        """Cancel at once when this process executes the run (others notice by heartbeat)."""
        self._interrupt(run_id, "cancel")
        self.wake()  # a queued/requires_action run is finished as cancelled by whoever claims it

    @property
    def active(self) -> int:
        return len(self._running)

    async def stop(self, grace_seconds: float = 10.0) -> None:
        self._stopping = True
        for loop in self._loops[:1]:  # stop claiming; heartbeats go on while runs finish
            loop.cancel()
        if self._running:
            await asyncio.wait([t for t, _ in self._running.values()], timeout=grace_seconds)
        for run_id in list(self._running):
            self._interrupt(run_id, "shutdown")
        if self._running:
            await asyncio.wait([t for t, _ in self._running.values()], timeout=5)
        for loop in self._loops:
            loop.cancel()
        for loop in self._loops:
            with contextlib.suppress(asyncio.CancelledError):
                await loop

    # --- loops ---------------------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        while not self._stopping:
            free = self.concurrency - len(self._running)
            claimed: list[tuple[str, str]] = []
            if free > 0:
                try:
                    claimed = await claims.claim(self.db, self.owner, self.lease_seconds, free)
                except Exception:
                    log.exception("claiming runs failed; retrying")
                for run_id, project_id in claimed:
                    self._spawn(run_id, project_id)
            if claimed and len(claimed) < free:
                continue  # there may be more right behind them
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
            self._wake.clear()

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            held = [run_id for run_id, (_, ex) in self._running.items() if not ex.settling]
            if not held:
                continue
            try:
                statuses = await claims.heartbeat(self.db, self.owner, held, self.lease_seconds)
            except Exception:
                log.exception("heartbeat failed")
                continue
            for run_id in held:
                status = statuses.get(run_id)
                if status is None:
                    self._interrupt(run_id, "lease_lost")
                elif status == "cancelling":
                    self._interrupt(run_id, "cancel")

    async def _sweep_loop(self) -> None:
        """Runs waiting on the client (requires_action) past ``expires_at`` become expired."""
        while True:
            await asyncio.sleep(self.sweep_seconds)
            try:
                async with self.db.read() as conn:
                    rows = (await conn.execute(
                        select(runs.c.id, runs.c.project_id).where(
                            runs.c.status == "requires_action", runs.c.expires_at < int(time.time()))
                        .limit(100))).all()
                for run_id, project_id in rows:
                    await RunExecutor(self.db, self.bus, self.router, run_id, project_id).expire()
            except Exception:
                log.exception("expiring runs failed")

    # --- tasks ---------------------------------------------------------------------------------------

    def _spawn(self, run_id: str, project_id: str) -> None:
        executor = RunExecutor(self.db, self.bus, self.router, run_id, project_id)
        task = asyncio.create_task(self._execute(executor))
        self._running[run_id] = (task, executor)
        task.add_done_callback(lambda _t: self._finished(run_id))

    async def _execute(self, executor: RunExecutor) -> None:
        try:
            await executor.execute()
        except asyncio.CancelledError:
            if executor.cancel_reason == "shutdown":
                with contextlib.suppress(Exception):
                    await asyncio.shield(claims.release(self.db, self.owner, executor.run_id))
        except Exception:
            log.exception("run %s: executor failed", executor.run_id)

    def _finished(self, run_id: str) -> None:
        self._running.pop(run_id, None)
        self.wake()

    def _interrupt(self, run_id: str, reason: str) -> None:
        entry = self._running.get(run_id)
        if entry is None:
            return
        task, executor = entry
        if executor.settling or task.done():
            return  # it is recording its outcome; let it finish
        executor.cancel_reason = reason
        task.cancel()
