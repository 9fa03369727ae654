"""Executing one run: the model↔tool loop, recorded as run steps, published as events.

Each state change is one transaction, and its events are published after the commit (``Outbox``).
Text and argument deltas go straight to the bus and are stored once, when the step completes: a crash
mid-answer leaves an in-progress step and message that the next attempt adopts and rewrites, so a
resumed run never duplicates a message or a step.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import aclosing
from typing import Any

import orjson
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from assistd import ids
from assistd.events.base import Event, EventBus, error_event, run_channel
from assistd.providers.base import ChatRequest, Finish, ProviderError, TextDelta, ToolCallDelta, Usage
from assistd.providers.router import ModelRouter
from assistd.runner import context
from assistd.services import messages as message_service
from assistd.services.outbox import Outbox
from assistd.services.run_objects import (
    TERMINAL_STATUSES,
    message_delta,
    new_step,
    set_run_status,
    set_step_status,
    sum_usage,
    tool_call_delta,
    usage,
)
from assistd.services.runs import insert_step, save_run, save_step
from assistd.store import objects
from assistd.store.db import Database
from assistd.store.tables import messages, run_steps, runs

log = logging.getLogger("assistd.runner")


class RunExecutor:
    def __init__(self, db: Database, bus: EventBus, router: ModelRouter, run_id: str, project_id: str) -> None:
        self.db = db
        self.bus = bus
        self.router = router
        self.run_id = run_id
        self.project_id = project_id
        self.cancel_reason: str | None = None  # set by the pool before it cancels our task
        self.run: dict[str, Any] = {}
        # True while the outcome is being committed/published: the pool must not interrupt then.
        self.settling = False
        self._orphans: dict[str, dict[str, Any]] = {}
        # The answer being streamed (kept so a cancel can store what was said so far).
        self._message: dict[str, Any] | None = None
        self._message_step: dict[str, Any] | None = None
        self._tool_step: dict[str, Any] | None = None
        self._calls: dict[int, dict[str, Any]] = {}  # the tool calls streamed so far, by upstream index
        self._text: list[str] = []

    # --- entry ------------------------------------------------------------------------------------

    async def execute(self) -> None:
        try:
            if not await self._begin():
                return
            while await self._model_turn():
                pass
        except asyncio.CancelledError:
            if self.cancel_reason != "cancel":
                raise  # shutdown or lost lease: leave the run for whoever claims it next
            await self._finish_cancelled()
        except Exception as exc:  # a bug must not leave a run stuck in_progress forever
            log.exception("run %s crashed", self.run_id)
            await self._fail("server_error", f"Internal error while executing the run: {type(exc).__name__}")

    async def _load_run(self, conn: AsyncConnection) -> dict[str, Any]:
        run = await objects.get_for_update(conn, runs, self.run_id)
        assert run is not None, self.run_id
        return run

    async def _begin(self) -> bool:
        """Take the run into in_progress; False when there is nothing to execute."""
        outbox = Outbox(self.run_id)
        async with self.db.write() as conn:
            run = await self._load_run(conn)
            status = run["status"]
            if status == "cancelling":
                await self._cancel_in(conn, run, outbox)
            elif status in TERMINAL_STATUSES or status == "requires_action":
                pass
            elif run["expires_at"] is not None and ids.now() >= run["expires_at"]:
                await self._expire_in(conn, run, outbox)
            else:
                if status == "queued":
                    set_run_status(run, "in_progress")
                    await save_run(conn, run)
                    outbox.add("thread.run.in_progress", run)
                self.run = run
        await outbox.flush(self.bus)
        return bool(self.run)

    # --- one model call ----------------------------------------------------------------------------

    async def _model_turn(self) -> bool:
        """Call the model once and record what it did. True when the loop should call it again."""
        async with self.db.read() as conn:
            run = await objects.get_object(conn, runs, self.run_id)
            assert run is not None
            self.run = run
            raise_cancel = run["status"] == "cancelling"
            steps = [orjson.loads(raw) for (raw,) in await conn.execute(
                select(run_steps.c.data).where(run_steps.c.run_id == self.run_id).order_by(run_steps.c.seq))]
            request, limit_hit = await self._build_request(conn, run, steps)
        if raise_cancel:
            self.cancel_reason = "cancel"
            raise asyncio.CancelledError
        if run["expires_at"] is not None and ids.now() >= run["expires_at"]:
            await self._in_tx(self._expire_in)
            return False
        if limit_hit:
            await self._incomplete(limit_hit)
            return False
        self._adopt_orphans(steps)
        await self._announce_resume()
        calls = self._calls
        finish = "stop"
        used = Usage(0, 0)
        provider = self.router.provider_for(run["model"])
        # A run still executing at expires_at expires then, however long the upstream takes.
        left = None if run["expires_at"] is None else max(0.0, run["expires_at"] - time.time())
        deadline = asyncio.timeout(left)
        try:
            async with deadline, aclosing(provider.stream_chat(request)) as events:
                async for event in events:
                    if isinstance(event, TextDelta):
                        await self._on_text(event.text)
                    elif isinstance(event, ToolCallDelta):
                        await self._on_tool_delta(calls, event)
                    elif isinstance(event, Finish):
                        finish = event.reason
                    elif isinstance(event, Usage):
                        used = event
        except ProviderError as err:
            await self._fail(err.code, err.message)
            return False
        except TimeoutError:
            if not deadline.expired():
                raise
            await self._in_tx(self._expire_in)
            return False
        return await self._record_turn(calls, finish, used)

    async def _build_request(
        self, conn: AsyncConnection, run: dict[str, Any], steps: list[dict[str, Any]]
    ) -> tuple[ChatRequest, str | None]:
        totals = sum_usage(steps)
        window = self.router.context_window(run["model"])
        budget = window - context.ANSWER_RESERVE
        if run.get("max_prompt_tokens"):
            budget = min(budget, run["max_prompt_tokens"] - totals["prompt_tokens"])
        system = [{"role": "system", "content": run["instructions"]}] if run.get("instructions") else []
        transcript = await context.run_transcript(conn, self.run_id)
        fixed = context.estimate_tokens(system) + context.estimate_tokens(transcript)
        truncation = run.get("truncation_strategy") or {"type": "auto"}
        last_n = truncation.get("last_messages") if truncation.get("type") == "last_messages" else None
        history = await context.thread_history(
            conn, run["thread_id"], self.run_id, last_messages=last_n, token_budget=max(budget - fixed, 0))
        limit_hit = None
        if run.get("max_prompt_tokens") and fixed + context.estimate_tokens(history[-1:]) > budget:
            limit_hit = "max_prompt_tokens"
        max_tokens = None
        if run.get("max_completion_tokens"):
            max_tokens = run["max_completion_tokens"] - totals["completion_tokens"]
            if max_tokens <= 0:
                limit_hit = limit_hit or "max_completion_tokens"
        tools = context.chat_tools(run)
        response_format = run.get("response_format")
        request = ChatRequest(
            model=run["model"],
            messages=system + history + transcript,
            tools=tools or None,
            tool_choice=context.chat_tool_choice(run, tools),
            parallel_tool_calls=run.get("parallel_tool_calls") if tools else None,
            temperature=run.get("temperature"),
            top_p=run.get("top_p"),
            max_tokens=max_tokens,
            response_format=response_format if isinstance(response_format, dict) else None,
            reasoning_effort=run.get("reasoning_effort"),
        )
        return request, limit_hit

    def _adopt_orphans(self, steps: list[dict[str, Any]]) -> None:
        """In-progress steps left by an interrupted attempt of this turn are reused, not duplicated."""
        self._message = None
        self._message_step = None
        self._tool_step = None
        self._calls = {}
        self._text = []
        self._orphans = {step["type"]: step for step in steps if step["status"] == "in_progress"}

    async def _announce_resume(self) -> None:
        """A previous attempt died mid-answer and this one starts the answer over: a stream that relayed
        the first attempt's deltas would now get a second copy, so it is ended with an error instead
        (clients then read the stored run, which this attempt completes)."""
        if self._orphans:
            await self.bus.publish(run_channel(self.run_id), error_event(
                "The worker executing this run stopped; another resumed it. Retrieve the run for its result."))

    async def _ensure_message(self) -> dict[str, Any]:
        if self._message is not None:
            return self._message
        outbox = Outbox(self.run_id)
        async with self.db.write() as conn:
            orphan = self._orphans.pop("message_creation", None)
            if orphan is not None:  # an interrupted attempt's answer: rewrite it in place
                message_id = orphan["step_details"]["message_creation"]["message_id"]
                message = await objects.get_object(conn, messages, message_id)
                if message is not None:
                    self._message, self._message_step = message, orphan
                    return message
                await conn.execute(delete(run_steps).where(run_steps.c.id == orphan["id"]))
            message = message_service.new_message(
                self.run["thread_id"], "assistant", [], status="in_progress",
                assistant_id=self.run["assistant_id"], run_id=self.run_id)
            await message_service.insert(conn, self.project_id, message)
            step = new_step(self.run, "message_creation",
                            {"type": "message_creation", "message_creation": {"message_id": message["id"]}})
            await insert_step(conn, self.project_id, step)
            outbox.add("thread.run.step.created", step)
            outbox.add("thread.run.step.in_progress", step)
            outbox.add("thread.message.created", message)
            outbox.add("thread.message.in_progress", message)
        self._message, self._message_step = message, step
        await outbox.flush(self.bus)
        return message

    async def _ensure_tool_step(self) -> dict[str, Any]:
        if self._tool_step is not None:
            return self._tool_step
        orphan = self._orphans.pop("tool_calls", None)
        if orphan is not None:  # adopted: its calls are rewritten by this attempt's
            orphan["step_details"]["tool_calls"] = []
            self._tool_step = orphan
            return orphan
        outbox = Outbox(self.run_id)
        async with self.db.write() as conn:
            step = new_step(self.run, "tool_calls", {"type": "tool_calls", "tool_calls": []})
            await insert_step(conn, self.project_id, step)
            outbox.add("thread.run.step.created", step)
            outbox.add("thread.run.step.in_progress", step)
        self._tool_step = step
        await outbox.flush(self.bus)
        return step

    async def _on_text(self, text: str) -> None:
        if not text:
            return
        message = await self._ensure_message()
        self._text.append(text)
        await self.bus.publish(run_channel(self.run_id),
                               Event("thread.message.delta", message_delta(message["id"], 0, text)))

    async def _on_tool_delta(self, calls: dict[int, dict[str, Any]], delta: ToolCallDelta) -> None:
        step = await self._ensure_tool_step()
        call = calls.get(delta.index)
        if call is None:
            call = {"id": delta.id or ids.new_id("tool_call"), "type": "function",
                    "function": {"name": delta.name or "", "arguments": "", "output": None}}
            calls[delta.index] = call
            piece: dict[str, Any] = {"id": call["id"], "type": "function",
                                     "function": {"name": call["function"]["name"],
                                                  "arguments": delta.arguments, "output": None}}
        else:
            if delta.name and not call["function"]["name"]:
                call["function"]["name"] = delta.name
            piece = {"type": "function", "function": {"arguments": delta.arguments}}
        call["function"]["arguments"] += delta.arguments
        index = list(calls).index(delta.index)
        await self.bus.publish(run_channel(self.run_id),
                               Event("thread.run.step.delta", tool_call_delta(step["id"], index, piece)))

    # --- recording the outcome ---------------------------------------------------------------------

    async def _record_turn(self, calls: dict[int, dict[str, Any]], finish: str, used: Usage) -> bool:
        self.settling = True
        outbox = Outbox(self.run_id)
        cut = finish == "length"
        async with self.db.write() as conn:
            run = await self._load_run(conn)
            if run["status"] not in ("in_progress", "cancelling"):
                # Another attempt already recorded an outcome (our lease lapsed meanwhile): leave it alone.
                log.warning("run %s is %s: dropping this attempt's turn", self.run_id, run["status"])
                return False
            await self._drop_unused_orphans(conn)
            turn_usage = usage(used.prompt_tokens, used.completion_tokens)
            # Token estimates decide what is sent; the upstream's count decides whether the run overran.
            prior = sum_usage(await self._steps(conn))["prompt_tokens"]
            over_prompt = bool(run.get("max_prompt_tokens")) and prior + used.prompt_tokens > run["max_prompt_tokens"]
            if self._message is not None and self._message_step is not None:
                self._close_message(self._message, "incomplete" if cut else "completed",
                                    "max_tokens" if cut else None)
                await objects.save_object(conn, messages, self._message)
                set_step_status(self._message_step, "completed", usage=turn_usage)
                turn_usage = usage(0, 0)  # the call's usage is counted once, on its first step
                await save_step(conn, self._message_step)
                outbox.add(f"thread.message.{self._message['status']}", self._message)
                outbox.add("thread.run.step.completed", self._message_step)
            tool_step = self._tool_step
            if tool_step is not None:
                tool_step["step_details"]["tool_calls"] = list(calls.values())
                tool_step["usage"] = turn_usage
                turn_usage = usage(0, 0)
                await save_step(conn, tool_step)
            if run["status"] == "cancelling":
                # The cancel came while this turn was being recorded: it wins over what the model asked.
                await self._cancel_in(conn, run, outbox)
            elif tool_step is not None and not cut and not over_prompt:
                tool_calls = [{"id": c["id"], "type": "function",
                               "function": {"name": c["function"]["name"], "arguments": c["function"]["arguments"]}}
                              for c in calls.values()]
                set_run_status(run, "requires_action", required_action={
                    "type": "submit_tool_outputs", "submit_tool_outputs": {"tool_calls": tool_calls}})
                await save_run(conn, run, lease_owner=None, lease_expires_at=None)
                outbox.add("thread.run.requires_action", run)
            else:
                if tool_step is not None:  # cut off, or over max_prompt_tokens: its calls won't be executed
                    set_step_status(tool_step, "cancelled")
                    await save_step(conn, tool_step)
                    outbox.add("thread.run.step.cancelled", tool_step)
                elif self._message_step is None:  # nothing said at all: still record the call as a step
                    await self._empty_answer(conn, run, turn_usage, cut, outbox)
                steps = await self._steps(conn)
                if cut or over_prompt:
                    reason = "max_completion_tokens" if cut else "max_prompt_tokens"
                    set_run_status(run, "incomplete", incomplete_details={"reason": reason}, usage=sum_usage(steps))
                else:
                    set_run_status(run, "completed", usage=sum_usage(steps))
                await save_run(conn, run, lease_owner=None, lease_expires_at=None)
                outbox.add(f"thread.run.{run['status']}", run)
            self.run = run
        await outbox.flush(self.bus)
        return False

    async def _empty_answer(
        self, conn: AsyncConnection, run: dict, turn_usage: dict, cut: bool, outbox: Outbox
    ) -> None:
        """The model said nothing: still a message and its step, announced like any other answer."""
        message = message_service.new_message(run["thread_id"], "assistant", [], status="in_progress",
                                              assistant_id=run["assistant_id"], run_id=self.run_id)
        step = new_step(run, "message_creation",
                        {"type": "message_creation", "message_creation": {"message_id": message["id"]}})
        for name, data in (("thread.run.step.created", step), ("thread.run.step.in_progress", step),
                           ("thread.message.created", message), ("thread.message.in_progress", message)):
            outbox.add(name, data)  # snapshots: the objects are closed below
        self._close_message(message, "incomplete" if cut else "completed", "max_tokens" if cut else None)
        await message_service.insert(conn, self.project_id, message)
        set_step_status(step, "completed", usage=turn_usage)
        await insert_step(conn, self.project_id, step)
        outbox.add(f"thread.message.{message['status']}", message)
        outbox.add("thread.run.step.completed", step)

    def _close_message(self, message: dict[str, Any], status: str, reason: str | None) -> None:
        text = "".join(self._text)
        message["content"] = [message_service.text_content(text)] if text or not message["content"] else \
            message["content"]
        message["status"] = status
        now = ids.now()
        if status == "completed":
            message["completed_at"] = now
        else:
            message["incomplete_at"] = now
            message["incomplete_details"] = {"reason": reason} if reason else None

    async def _drop_unused_orphans(self, conn: AsyncConnection) -> None:
        for orphan in self._orphans.values():
            await conn.execute(delete(run_steps).where(run_steps.c.id == orphan["id"]))
            if orphan["type"] == "message_creation":
                message_id = orphan["step_details"]["message_creation"]["message_id"]
                await conn.execute(delete(messages).where(messages.c.id == message_id))
        self._orphans = {}

    async def _steps(self, conn: AsyncConnection) -> list[dict[str, Any]]:
        rows = await conn.execute(select(run_steps.c.data).where(run_steps.c.run_id == self.run_id)
                                  .order_by(run_steps.c.seq))
        return [orjson.loads(raw) for (raw,) in rows]

    # --- endings ------------------------------------------------------------------------------------

    async def expire(self) -> None:
        """Expire the run if it still waits past expires_at (the pool's sweeper, for runs nobody executes)."""
        async def expire_waiting(conn: AsyncConnection, run: dict, outbox: Outbox) -> None:
            # Checked again under the row lock: tool outputs may have put it back to work meanwhile.
            if run["status"] == "requires_action" and run["expires_at"] is not None \
                    and ids.now() >= run["expires_at"]:
                await self._expire_in(conn, run, outbox)
        await self._in_tx(expire_waiting)

    async def _in_tx(self, action: Any, *args: Any) -> None:
        self.settling = True
        outbox = Outbox(self.run_id)
        async with self.db.write() as conn:
            run = await self._load_run(conn)
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
            set_step_status(step, step_status, last_error=last_error if step_status == "failed" else None)
            await save_step(conn, step)
            outbox.add(f"thread.run.step.{step_status}", step)
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
