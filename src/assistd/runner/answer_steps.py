"""The model's answer in text: its message and message_creation step, created, streamed, and closed.

A turn that can only answer in text (no tool offered to the model) has its message and step inserted while
the model is called (``prepare``), or for a run's first turn when this process starts it, in the
transaction that creates it (``prepare_first``): they are committed but not announced, so the first
delta waits for no transaction. They are announced with the first text, or with the turn's end when the model said
nothing; a turn that ends otherwise (failed, cancelled, expired) deletes them, so no event and no record
ever speaks of an answer that was not given. A reader listing the thread's messages or the run's steps
meanwhile may see them in_progress, as it would once the model's first token is in. A turn that may call a
tool creates them with its first text instead.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from assistd.runner import endings
from assistd.runner.run_scope import RunScope
from assistd.runner.tool_set import ToolSet
from assistd.runner.turn import Turn
from assistd.services import messages as message_service
from assistd.services.outbox import Outbox
from assistd.services.run_objects import message_delta, new_step, set_step_status
from assistd.services.runs import insert_step
from assistd.store import messages as stored_messages
from assistd.store import objects
from assistd.store import steps as stored_steps
from assistd.store.tables import messages

log = logging.getLogger("assistd.runner")

Answer = tuple[dict[str, Any], dict[str, Any]]  # a message and its message_creation step


class AnswerSteps:
    def __init__(self, scope: RunScope, tools: ToolSet) -> None:
        self.scope = scope
        self.tools = tools  # they open an answer (code_interpreter's images) and annotate it (citations)
        # The answer inserted ahead: committed, or being inserted.
        self.prepared: Answer | None = None
        self.preparing: asyncio.Task[Answer] | None = None

    def _new(self, run: dict[str, Any]) -> Answer:
        message = message_service.new_message(
            run["thread_id"], "assistant", self.tools.take_answer_parts(), status="in_progress",
            assistant_id=run["assistant_id"], run_id=self.scope.run_id)
        step = new_step(run, "message_creation",
                        {"type": "message_creation", "message_creation": {"message_id": message["id"]}})
        return message, step

    async def _insert(self, conn: AsyncConnection, answer: Answer) -> None:
        await message_service.insert(conn, self.scope.project_id, answer[0])
        await insert_step(conn, self.scope.project_id, answer[1])

    @staticmethod
    def announce(outbox: Outbox, answer: Answer) -> None:
        message, step = answer
        outbox.add("thread.run.step.created", step)
        outbox.add("thread.run.step.in_progress", step)
        outbox.add("thread.message.created", message)
        outbox.add("thread.message.in_progress", message)

    @staticmethod
    def adopt(turn: Turn, answer: Answer) -> dict[str, Any]:
        turn.message, turn.message_step = answer
        turn.text_index = sum(1 for p in answer[0]["content"] if p["type"] == "image_file")
        return answer[0]

    # --- prepared ahead of the model's answer -------------------------------------------------------

    async def prepare_first(self, conn: AsyncConnection, run: dict[str, Any]) -> None:
        """In the transaction that starts the run (a head start whose first turn can only answer in text):
        its answer is inserted there rather than beside the model call."""
        answer = self._new(run)
        await self._insert(conn, answer)
        self.prepared = answer

    def prepare(self) -> None:
        """Insert this turn's answer while the model is called (see the module docstring)."""
        async def insert() -> Answer:
            answer = self._new(self.scope.run)
            async with self.scope.db.write() as conn:
                await self._insert(conn, answer)
            return answer
        self.preparing = asyncio.create_task(insert())

    async def unannounced(self) -> Answer | None:
        """The prepared answer once its transaction has ended, taken from ``preparing`` (None: none was
        prepared, or its insert failed). Waited for outside any transaction (SQLite's writer lock), and
        shielded: if we are cancelled meanwhile it stays in ``preparing`` for whoever ends the run."""
        if self.prepared is not None:
            answer, self.prepared = self.prepared, None
            return answer
        task = self.preparing
        if task is None:
            return None
        try:
            taken: Answer | None = await asyncio.shield(task)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if (current is not None and current.cancelling()) or not task.cancelled():
                raise  # we are cancelled: ``preparing`` stays, whoever ends the run takes the answer
            taken = None  # the insert itself was cancelled (shutdown): rolled back, or an orphan to adopt
        except Exception:
            log.exception("run %s: preparing the answer failed", self.scope.run_id)
            taken = None
        self.preparing = None
        return taken

    @staticmethod
    async def delete(conn: AsyncConnection, answer: Answer) -> None:
        """An answer inserted ahead but never given: as if never begun."""
        await stored_steps.delete_step(conn, answer[1]["id"])
        await stored_messages.delete_message(conn, answer[0]["id"])

    # --- streamed ---------------------------------------------------------------------------------------

    async def _ensure_message(self, turn: Turn) -> dict[str, Any]:
        if turn.message is not None:
            return turn.message
        outbox = Outbox(self.scope.run_id)
        prepared = await self.unannounced()
        if prepared is not None:
            self.announce(outbox, prepared)
            message = self.adopt(turn, prepared)
            await outbox.flush(self.scope.bus)
            return message
        async with self.scope.db.write() as conn:
            orphan = turn.orphans.pop("message_creation", None)
            if orphan is not None:  # an interrupted attempt's answer: rewrite it in place
                message_id = orphan["step_details"]["message_creation"]["message_id"]
                adopted = await objects.get_object(conn, messages, message_id)
                if adopted is not None:
                    return self.adopt(turn, (adopted, orphan))
                await stored_steps.delete_step(conn, orphan["id"])
            answer = self._new(self.scope.run)
            await self._insert(conn, answer)
            self.announce(outbox, answer)
        message = self.adopt(turn, answer)
        await outbox.flush(self.scope.bus)
        return message

    async def on_text(self, turn: Turn, text: str) -> None:
        if not text:
            return
        message = await self._ensure_message(turn)
        turn.text.append(text)
        await self.scope.publish("thread.message.delta", message_delta(message["id"], turn.text_index, text))

    # --- closed -------------------------------------------------------------------------------------------

    async def record_empty(self, conn: AsyncConnection, turn: Turn, run: dict[str, Any], turn_usage: dict[str, int],
                           cut: bool, outbox: Outbox) -> None:
        """The model said nothing: still a message and its step, announced like any other answer."""
        message, step = self._new(run)
        self.announce(outbox, (message, step))  # snapshots: the objects are closed below
        self.close(turn, message, "incomplete" if cut else "completed", "max_tokens" if cut else None)
        await message_service.insert(conn, self.scope.project_id, message)
        set_step_status(step, "completed", usage=turn_usage)
        await insert_step(conn, self.scope.project_id, step)
        outbox.add(f"thread.message.{message['status']}", message)
        outbox.add("thread.run.step.completed", step)

    def close(self, turn: Turn, message: dict[str, Any], status: str, reason: str | None) -> list[dict[str, Any]]:
        """Store the turn's answer in the message and close it; returns its annotations as delta parts."""
        return endings.close_message(message, status, reason, text="".join(turn.text),
                                     take_images=self.tools.take_answer_parts, annotate=self.tools.annotate)
