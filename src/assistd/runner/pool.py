"""A worker pool: claims runs from the database, executes them concurrently, keeps their leases alive.

Every ``assistd serve`` runs one (``ASSISTD_WORKERS`` slots); ``assistd worker`` runs one alone. The
heartbeat both renews leases and notices cancellation requested through another process (the run's
status turns ``cancelling``), so a cancel stops the upstream call within a heartbeat (0.5 s).
On stop, the pool claims nothing more, lets running runs finish for a grace period, then releases them
for another worker to resume.

Latency: a run queued by this process's API is stored in_progress and leased to this pool by the
transaction that queues it (``lease``, ``reserve``), and starts right after the commit (``settle``),
with no claim or start transaction and no wait; its first model call is sent before that commit
(runner/early_call.py). Otherwise the API publishes on ``WAKE_CHANNEL`` and every pool
listening (``assistd worker``s on PostgreSQL too) claims at once instead of at its next poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncConnection

from assistd import ids
from assistd.events import channels
from assistd.events.base import EventBus
from assistd.providers.router import ModelRouter
from assistd.runner import claims
from assistd.runner.execute import HeadStart, RunExecutor
from assistd.runner.lease_loops import keep_leases, wake_on
from assistd.services.runs import Lease
from assistd.store.db import Database

if TYPE_CHECKING:
    from assistd.services.vector_search import Retrieval
    from assistd.tools.code_tool import CodeTool

log = logging.getLogger("assistd.runner")

WAKE_CHANNEL = channels.RUNS_WAKE  # an event here: a run became claimable (queued elsewhere than in a pool's slot)


class WorkerPool:
    def __init__(
        self, db: Database, bus: EventBus, router: ModelRouter, *, concurrency: int,
        lease_seconds: float = 10.0, heartbeat_seconds: float = 0.5, poll_seconds: float = 0.25,
        retrieval: Retrieval | None = None, code: CodeTool | None = None,
    ) -> None:
        """``retrieval``: the process's index and embedder, for the file_search tool (None: not offered);
        ``code``: the process's code_interpreter engine (None: not offered)."""
        self.db = db
        self.bus = bus
        self.router = router
        self.retrieval = retrieval
        self.code = code
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.poll_seconds = poll_seconds
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{ids.random_base62(8)}"
        self._running: dict[str, tuple[asyncio.Task[None], RunExecutor]] = {}
        # Slots held by the leases of transactions not yet ended, with the executor of the run each started
        # (None until ``reserve``). A Lease hashes by identity: each is one slot.
        self._held: dict[Lease, RunExecutor | None] = {}
        self._backlog = False  # claimable runs may be left over: claim again when a slot frees
        self._wake = asyncio.Event()
        self._stopping = False
        self._loops: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        if self.db.is_sqlite:
            await claims.QUEUE.release_all(self.db)
        wakes = await self.bus.subscribe(WAKE_CHANNEL)
        # Runs recording their outcome keep their lease too (a busy database can make that slow, and a lapsed
        # lease would let a second attempt start); _interrupt leaves them alone.
        heartbeat = keep_leases(claims.QUEUE, self.db, self.owner, lease_seconds=self.lease_seconds,
                                every=self.heartbeat_seconds, held=lambda: list(self._running), heard=self._heard,
                                log=log)
        self._loops = [asyncio.create_task(self._claim_loop()), asyncio.create_task(heartbeat),
                       asyncio.create_task(wake_on(wakes, self.wake))]

    def wake(self) -> None:
        """A run became claimable in this process: look now rather than at the next poll."""
        self._wake.set()

    def lease(self) -> Lease | None:
        """A free slot, held for the run the caller's transaction is about to queue (None: no slot free).
        The transaction stores the run started under it (services/runs.py), then calls ``reserve``; when
        the transaction has ended, ``settle``."""
        if self._stopping or self.concurrency - len(self._running) - len(self._held) <= 0:
            return None
        lease = Lease(self.owner, self.lease_seconds)
        self._held[lease] = None
        return lease

    async def reserve(
        self, conn: AsyncConnection, lease: Lease, started: dict[str, Any], project_id: str, *,
        steps: list[dict[str, Any]] | None = None, thread: list[dict[str, Any]] | None = None,
    ) -> None:
        """Inside that transaction, once the run is stored ``started`` under the lease: its executor, told what
        the transaction knows of the run's steps and thread so that its first turn need not read them back
        (``HeadStart``), and its first model call sent (runner/early_call.py). A first turn that can only answer
        in text has its answer inserted here too (runner/answer_steps.py)."""
        assert lease in self._held
        executor = self._executor(started["id"], project_id, HeadStart(started, steps, thread))
        self._held[lease] = executor  # from now on ``settle`` starts it or drops it
        await executor.prepare_first_answer(conn)
        # Last, right before the commit: the call's own Python then runs while the commit waits for the WAL
        # flush, rather than between the transaction's statements.
        await executor.send_first_call(conn)

    def settle(self, lease: Lease, committed: bool) -> None:
        """The lease's transaction has ended. Committed, the run reserved under the lease (if any) starts now
        and takes the slot; rolled back, the run and its lease went with it, the slot is free and the call
        sent ahead is closed."""
        executor = self._held.pop(lease, None)
        if executor is None:
            return
        if committed and executor.run_id not in self._running:
            self._start(executor)
        else:
            executor.abandon()

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
            free = self.concurrency - len(self._running) - len(self._held)
            if free > 0:
                claimed: list[tuple[str, str]] = []
                try:
                    claimed = await claims.claim(self.db, self.owner, self.lease_seconds, free)
                except Exception:
                    log.exception("claiming runs failed; retrying")
                for run_id, project_id in claimed:
                    self._spawn(run_id, project_id)
                # All slots taken: more may be waiting, look again when one frees. A run queued meanwhile
                # has set the wake event, so the wait below returns at once.
                self._backlog = len(claimed) >= free
            else:
                self._backlog = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
            self._wake.clear()

    def _heard(self, run_id: str, status: str | None) -> None:
        """The heartbeat's news of a run we execute: its lease lost (None), or its cancellation asked for."""
        if status is None:
            self._interrupt(run_id, "lease_lost")
        elif status == "cancelling":
            self._interrupt(run_id, "cancel")

    # --- tasks ---------------------------------------------------------------------------------------

    def _spawn(self, run_id: str, project_id: str) -> None:
        self._start(self._executor(run_id, project_id))

    def _start(self, executor: RunExecutor) -> None:
        run_id = executor.run_id
        task = asyncio.create_task(self._execute(executor))
        self._running[run_id] = (task, executor)
        task.add_done_callback(lambda _t: self._finished(run_id))

    def _executor(self, run_id: str, project_id: str, head: HeadStart | None = None) -> RunExecutor:
        return RunExecutor(self.db, self.bus, self.router, run_id, project_id, retrieval=self.retrieval,
                           code=self.code, head=head)

    async def _execute(self, executor: RunExecutor) -> None:
        try:
            await executor.execute()
        except asyncio.CancelledError:
            if executor.cancel_reason == "shutdown":
                with contextlib.suppress(Exception):
                    await asyncio.shield(claims.QUEUE.release(self.db, self.owner, executor.run_id))
        except Exception:
            log.exception("run %s: executor failed", executor.run_id)

    def _finished(self, run_id: str) -> None:
        self._running.pop(run_id, None)
        if self._backlog:  # otherwise nothing was left to claim: the next queued run wakes us itself
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
