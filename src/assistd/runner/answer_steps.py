"""The model's answer in text: its message and message_creation step, created, streamed, and closed.

A turn that can only answer in text (no tool offered to the model) has its message and step inserted while
the model is called (``_prepare_answer``), or for a run's first turn when this process starts it, in the
transaction that creates it (``prepare_first_answer``): they are committed but not announced, so the first
delta waits for no transaction. They are announced with the first text, or with the turn's end when the model said
nothing; a turn that ends otherwise (failed, cancelled, expired) deletes them, so no event and no record
ever speaks of an answer that was not given. A reader listing the thread's messages or the run's steps
meanwhile may see them in_progress, as it would once the model's first token is in. A turn that may call a
tool creates them with its first text instead.

A mixin of :class:`assistd.runner.execute.RunExecutor`; it shares the executor's state.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncConnection

from assistd.events.base import Event, run_channel
from assistd.runner import endings
from assistd.services import messages as message_service
from assistd.services.outbox import Outbox
from assistd.services.run_objects import message_delta, new_step, set_step_status
from assistd.services.runs import insert_step
from assistd.store import objects
from assistd.store.tables import messages, run_steps

log = logging.getLogger("assistd.runner")

Answer = tuple[dict[str, Any], dict[str, Any]]  # a message and its message_creation step


class AnswerSteps:

    def _new_answer(self, run: dict[str, Any]) -> Answer:
        message = message_service.new_message(
            run["thread_id"], "assistant", self._image_parts(), status="in_progress",
            assistant_id=run["assistant_id"], run_id=self.run_id)
        step = new_step(run, "message_creation",
                        {"type": "message_creation", "message_creation": {"message_id": message["id"]}})
        return message, step

    async def _insert_answer(self, conn: AsyncConnection, answer: Answer) -> None:
        await message_service.insert(conn, self.project_id, answer[0])
        await insert_step(conn, self.project_id, answer[1])

    def _announce_answer(self, outbox: Outbox, answer: Answer) -> None:
        message, step = answer
        outbox.add("thread.run.step.created", step)
        outbox.add("thread.run.step.in_progress", step)
        outbox.add("thread.message.created", message)
        outbox.add("thread.message.in_progress", message)

    def _adopt_answer(self, answer: Answer) -> dict[str, Any]:
        self.turn.message, self.turn.message_step = answer
        self.turn.text_index = sum(1 for p in answer[0]["content"] if p["type"] == "image_file")
        return answer[0]

    # --- prepared ahead of the model's answer -------------------------------------------------------

    async def prepare_first_answer(self, conn: AsyncConnection) -> None:
        """In the transaction that starts the run (a head start, whose steps are known): when its first turn
        can only answer in text, its answer is inserted there rather than beside the model call."""
        head = self.head
        if head is None or head.steps is None or self._offers_tools(head.run, head.steps):
            return
        self.run = head.run
        answer = self._new_answer(head.run)
        await self._insert_answer(conn, answer)
        self._prepared = answer

    def _prepare_answer(self) -> None:
        """Insert this turn's answer while the model is called (see the module docstring)."""
        async def insert() -> Answer:
            answer = self._new_answer(self.run)
            async with self.db.write() as conn:
                await self._insert_answer(conn, answer)
            return answer
        self._preparing = asyncio.create_task(insert())

    async def _unannounced_answer(self) -> Answer | None:
        """The prepared answer once its transaction has ended, taken from ``_preparing`` (None: none was
        prepared, or its insert failed). Waited for outside any transaction (SQLite's writer lock), and
        shielded: if we are cancelled meanwhile it stays in ``_preparing`` for whoever ends the run."""
        if self._prepared is not None:
            answer, self._prepared = self._prepared, None
            return answer
        task = self._preparing
        if task is None:
            return None
        try:
            answer: Answer | None = await asyncio.shield(task)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if (current is not None and current.cancelling()) or not task.cancelled():
                raise  # we are cancelled: ``_preparing`` stays, whoever ends the run takes the answer
            answer = None  # the insert itself was cancelled (shutdown): rolled back, or an orphan to adopt
        except Exception:
            log.exception("run %s: preparing the answer failed", self.run_id)
            answer = None
        self._preparing = None
        return answer

    async def _delete_answer(self, conn: AsyncConnection, answer: Answer) -> None:
        await conn.execute(delete(run_steps).where(run_steps.c.id == answer[1]["id"]))
        await conn.execute(delete(messages).where(messages.c.id == answer[0]["id"]))

    # --- streamed ---------------------------------------------------------------------------------------

    async def _ensure_message(self) -> dict[str, Any]:
        if self.turn.message is not None:
            return self.turn.message
        outbox = Outbox(self.run_id)
        prepared = await self._unannounced_answer()
        if prepared is not None:
            self._announce_answer(outbox, prepared)
            message = self._adopt_answer(prepared)
            await outbox.flush(self.bus)
            return message
        async with self.db.write() as conn:
            orphan = self.turn.orphans.pop("message_creation", None)
            if orphan is not None:  # an interrupted attempt's answer: rewrite it in place
                message_id = orphan["step_details"]["message_creation"]["message_id"]
                adopted = await objects.get_object(conn, messages, message_id)
                if adopted is not None:
                    return self._adopt_answer((adopted, orphan))
                await conn.execute(delete(run_steps).where(run_steps.c.id == orphan["id"]))
            answer = self._new_answer(self.run)
            await self._insert_answer(conn, answer)
            self._announce_answer(outbox, answer)
        message = self._adopt_answer(answer)
        await outbox.flush(self.bus)
        return message

    async def _on_text(self, text: str) -> None:
        if not text:
            return
        message = await self._ensure_message()
        self.turn.text.append(text)
        await self.bus.publish(run_channel(self.run_id),
                               Event("thread.message.delta", message_delta(message["id"], self.turn.text_index, text)))

    # --- closed -------------------------------------------------------------------------------------------

    async def _empty_answer(
        self, conn: AsyncConnection, run: dict, turn_usage: dict, cut: bool, outbox: Outbox
    ) -> None:
        """The model said nothing: still a message and its step, announced like any other answer."""
        message, step = self._new_answer(run)
        self._announce_answer(outbox, (message, step))  # snapshots: the objects are closed below
        self._close_message(message, "incomplete" if cut else "completed", "max_tokens" if cut else None)
        await message_service.insert(conn, self.project_id, message)
        set_step_status(step, "completed", usage=turn_usage)
        await insert_step(conn, self.project_id, step)
        outbox.add(f"thread.message.{message['status']}", message)
        outbox.add("thread.run.step.completed", step)

    def _close_message(self, message: dict[str, Any], status: str, reason: str | None) -> list[dict[str, Any]]:
        """Store the answer in the message and close it; returns its citations as delta parts."""
        return endings.close_message(message, status, reason, text="".join(self.turn.text),
                                     take_images=self._image_parts, sources=self._sources, files=self._code_files)
