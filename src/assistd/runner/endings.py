"""How a run ends when it does not simply answer: cancelled, expired, failed, incomplete — every
open step and message closed with it, in one transaction.

A mixin of :class:`assistd.runner.execute.RunExecutor`; it shares the executor's state.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncConnection

from assistd.services.outbox import Outbox
from assistd.services.run_objects import (
    TERMINAL_STATUSES,
    set_run_status,
    set_step_status,
    sum_usage,
)
from assistd.services.runs import save_run, save_step
from assistd.services.step_render import shown
from assistd.store import objects
from assistd.store.tables import messages

if TYPE_CHECKING:
    pass

log = logging.getLogger("assistd.runner")



class RunEndings:

    async def end_overdue(self, conn: AsyncConnection, run: dict, outbox: Outbox) -> None:
        """A run past expires_at that nobody executes (runner/sweeper.py): cancelled when its cancel was
        asked, else expired."""
        await (self._cancel_in if run["status"] == "cancelling" else self._expire_in)(conn, run, outbox)

    async def _in_tx(self, action: Any, *args: Any) -> None:
        self.settling = True
        outbox = Outbox(self.run_id)
        prepared = await self._unannounced_answer()
        async with self.db.write() as conn:
            run = await self._load_run(conn)
            if prepared is not None:  # an answer inserted ahead but never given: as if never begun
                await self._delete_answer(conn, prepared)
            if run["status"] not in TERMINAL_STATUSES:
                await action(conn, run, outbox, *args)
        await outbox.flush(self.bus)

    async def _end_open_work(self, conn: AsyncConnection, outbox: Outbox, step_status: str, message_reason: str,
                             last_error: dict | None = None) -> list[dict[str, Any]]:
        """Close every in-progress step and message of the run; returns all its steps."""
        steps = await self._steps(conn)
        for step in steps:
            if step["status"] != "in_progress":
                continue
            if step["type"] == "message_creation":
                message_id = step["step_details"]["message_creation"]["message_id"]
                message = (self._message if self._message and self._message["id"] == message_id
                           else await objects.get_object(conn, messages, message_id))
                if message is not None and message["status"] == "in_progress":
                    self._close_message(message, "incomplete", message_reason)
                    await objects.save_object(conn, messages, message)
                    outbox.add("thread.message.incomplete", message)
            elif self._tool_step is not None and step["id"] == self._tool_step["id"]:
                step["step_details"]["tool_calls"] = list(self._calls.values())  # as streamed so far
            elif self._code_step is not None and step["id"] == self._code_step["id"]:
                step["step_details"]["tool_calls"] = list(self._code_calls.values())  # as executed so far
            set_step_status(step, step_status, last_error=last_error if step_status == "failed" else None)
            await save_step(conn, step)
            outbox.add(f"thread.run.step.{step_status}", shown(step))
        return steps

    async def _cancel_in(self, conn: AsyncConnection, run: dict, outbox: Outbox) -> None:
        steps = await self._end_open_work(conn, outbox, "cancelled", "run_cancelled")
        set_run_status(run, "cancelled", usage=sum_usage(steps))
        await save_run(conn, run, lease_owner=None, lease_expires_at=None)
        outbox.add("thread.run.cancelled", run)

    async def _expire_in(self, conn: AsyncConnection, run: dict, outbox: Outbox) -> None:
        steps = await self._end_open_work(conn, outbox, "expired", "run_expired")
        set_run_status(run, "expired", usage=sum_usage(steps))
        await save_run(conn, run, lease_owner=None, lease_expires_at=None)
        outbox.add("thread.run.expired", run)

    async def _finish_cancelled(self) -> None:
        await asyncio.shield(self._in_tx(self._cancel_in))

    async def _fail(self, code: str, message: str) -> None:
        async def fail_in(conn: AsyncConnection, run: dict, outbox: Outbox) -> None:
            step_error = {"code": code if code != "invalid_prompt" else "server_error", "message": message}
            steps = await self._end_open_work(conn, outbox, "failed", "run_failed", step_error)
            set_run_status(run, "failed", last_error={"code": code, "message": message}, usage=sum_usage(steps))
            await save_run(conn, run, lease_owner=None, lease_expires_at=None)
            outbox.add("thread.run.failed", run)
        await self._in_tx(fail_in)

    async def _incomplete(self, reason: str) -> None:
        async def incomplete_in(conn: AsyncConnection, run: dict, outbox: Outbox) -> None:
            steps = await self._end_open_work(conn, outbox, "cancelled", "max_tokens")
            set_run_status(run, "incomplete", incomplete_details={"reason": reason}, usage=sum_usage(steps))
            await save_run(conn, run, lease_owner=None, lease_expires_at=None)
            outbox.add("thread.run.incomplete", run)
        await self._in_tx(incomplete_in)
