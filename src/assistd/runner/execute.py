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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncConnection

from assistd import ids
from assistd.errors import APIError
from assistd.events.base import Event, EventBus, error_event, run_channel
from assistd.observability import runs as observe_runs
from assistd.providers.base import ChatRequest, Finish, ProviderError, TextDelta, ToolCallDelta, Usage
from assistd.providers.router import ModelRouter
from assistd.runner import context, endings
from assistd.runner.answer_steps import Answer, AnswerSteps
from assistd.runner.code_steps import CodeSteps
from assistd.runner.search_steps import SearchSteps
from assistd.runner.turn import Turn
from assistd.services import citations
from assistd.services.outbox import Outbox
from assistd.services.run_objects import (
    TERMINAL_STATUSES,
    new_step,
    set_run_status,
    set_step_status,
    sum_usage,
    tool_call_delta,
    usage,
)
from assistd.services.runs import insert_step, list_run_steps, save_run, save_step
from assistd.services.step_render import shown
from assistd.store import objects
from assistd.store.db import Database
from assistd.store.tables import messages, run_steps, runs
from assistd.tools import code_tool

if TYPE_CHECKING:
    from assistd.services.vector_search import Retrieval
    from assistd.tools.code_tool import CodeTool

log = logging.getLogger("assistd.runner")

@dataclass
class HeadStart:
    """A run taken to in_progress in the transaction that queued it (``WorkerPool.reserve``), and what that
    transaction already knew of it, so that its first model call reads nothing it need not."""

    run: dict[str, Any]  # as committed, in_progress
    steps: list[dict[str, Any]] | None = None  # its steps when known (a new run has none), else read
    thread: list[dict[str, Any]] | None = None  # the thread's messages when created with the run, else read


class RunExecutor(AnswerSteps, SearchSteps, CodeSteps):
    def __init__(self, db: Database, bus: EventBus, router: ModelRouter, run_id: str, project_id: str, *,
                 retrieval: Retrieval | None = None, code: CodeTool | None = None,
                 head: HeadStart | None = None) -> None:
        self.db = db
        self.head = head
        self.bus = bus
        self.router = router
        self.retrieval = retrieval  # the file_search tool's index and embedder: without it, it is not offered
        self.code = code  # the code_interpreter engine of this process: without it, it is not offered
        self.run_id = run_id
        self.project_id = project_id
        self.cancel_reason: str | None = None  # set by the pool before it cancels our task
        self.run: dict[str, Any] = {}
        # True while the outcome is being committed/published: the pool must not interrupt then.
        self.settling = False
        self.turn = Turn()  # the model call under way (runner/turn.py): a new one per call
        # The answer inserted ahead (answer_steps.py): committed, or being inserted.
        self._prepared: Answer | None = None
        self._preparing: asyncio.Task[Answer] | None = None
        # The run so far, as each turn's plan finds it (``_plan_search``, ``_plan_code``). file_search: the
        # name it is offered under this turn (None: not offered), the run's citable results so far and the
        # next source number. code_interpreter: the name it is offered under (None: not offered), the run's
        # executions so far, the files its code wrote (name → file id), the images not yet shown in an answer.
        self._search_name: str | None = None
        self._sources: citations.Sources = {}
        self._next_source = 0
        self._code_name: str | None = None
        self._code_done = 0
        self._code_files: dict[str, str] = {}
        self._pending_images: list[str] = []

    # --- entry ------------------------------------------------------------------------------------

    async def execute(self) -> None:
        try:
            if self.head is not None:
                self.run = self.head.run
            elif not await self._begin():
                return
            await observe_runs.executing(self.db, self.run, self.project_id)
            while await self._model_turn():
                pass
        except asyncio.CancelledError:
            if self.cancel_reason != "cancel":
                raise  # shutdown or lost lease: leave the run for whoever claims it next
            await self._finish_cancelled()
        except Exception as exc:  # a bug must not leave a run stuck in_progress forever
            log.exception("run %s crashed", self.run_id)
            await self._fail("server_error", f"Internal error while executing the run: {type(exc).__name__}")
        finally:
            observe_runs.execution_ended(self.run_id)

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
                await endings.end_run(conn, run, outbox, "cancelled", live=self._live())
            elif status in TERMINAL_STATUSES or status == "requires_action":
                pass
            elif run["expires_at"] is not None and ids.now() >= run["expires_at"]:
                await endings.end_run(conn, run, outbox, "expired", live=self._live())
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
        run, steps, request, limit_hit = await self._turn_context()
        if run["status"] == "cancelling":
            self.cancel_reason = "cancel"
            raise asyncio.CancelledError
        if run["expires_at"] is not None and ids.now() >= run["expires_at"]:
            await self._end("expired")
            return False
        if limit_hit:
            await self._incomplete(limit_hit)
            return False
        self._adopt_orphans(steps)
        await self._announce_resume()
        if request.tools is None and "message_creation" not in self.turn.orphans and self._prepared is None:
            self._prepare_answer()  # it can only answer in text: have its message ready by the first token
        calls = self.turn.calls
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
                        observe_runs.first_token(self.run_id)
                        observe_runs.first_output(self.run_id)
                        await self._on_text(event.text)
                        # Chunks that arrive together (a fast upstream, a burst after a stall) would all be
                        # handled before any stream here relays the first: let them relay each delta now.
                        await asyncio.sleep(0)
                    elif isinstance(event, ToolCallDelta):
                        observe_runs.first_output(self.run_id)
                        await self._on_tool_delta(calls, event)
                        await asyncio.sleep(0)
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
            await self._end("expired")
            return False
        return await self._record_turn(calls, finish, used)

    async def _turn_context(self) -> tuple[dict[str, Any], list[dict[str, Any]], ChatRequest, str | None]:
        """The run and its steps as they are now, and the model call that comes next (with the token limit
        it would break, or None). A head start's first turn takes what it knows instead of reading it."""
        head, self.head = self.head, None
        if head is not None and head.steps is not None and head.thread is not None:
            return head.run, head.steps, *await self._build_request(None, head.run, head.steps, head.thread)
        async with self.db.read() as conn:
            if head is not None and head.steps is not None:
                run, steps = head.run, head.steps
            else:
                run = await objects.get_object(conn, runs, self.run_id)
                assert run is not None
                steps = await list_run_steps(conn, self.run_id)
            self.run = run
            return run, steps, *await self._build_request(conn, run, steps)

    def _offers_tools(self, run: dict[str, Any], steps: list[dict[str, Any]]) -> bool:
        """Whether the model will be offered any tool on the run's next turn (as ``_build_request`` plans it)."""
        self._plan_search(run, steps)
        self._plan_code(run, steps)
        return bool(context.chat_tools(run, search=self._search_name, code=self._code_name))

    async def _build_request(
        self, conn: AsyncConnection | None, run: dict[str, Any], steps: list[dict[str, Any]],
        thread: list[dict[str, Any]] | None = None,
    ) -> tuple[ChatRequest, str | None]:
        self._plan_search(run, steps)
        self._plan_code(run, steps)
        return await context.build_request(
            conn, run, steps, window=self.router.context_window(run["model"]), search=self._search_name,
            searched=self._next_source > 0, code=self._code_name, coded=self._code_done > 0, thread=thread)

    def _plan_code(self, run: dict[str, Any], steps: list[dict[str, Any]]) -> None:
        """Whether this turn offers code_interpreter, and what the run's earlier executions left."""
        self._code_done = len(code_tool.entries_of(steps))
        self._code_files = code_tool.files_of(steps)
        self._pending_images = code_tool.pending_images(steps)
        offer = self.code is not None and code_tool.active(run) and self._code_done < code_tool.MAX_EXECUTIONS
        self._code_name = code_tool.function_name(run) if offer else None

    def _adopt_orphans(self, steps: list[dict[str, Any]]) -> None:
        """In-progress steps left by an interrupted attempt of this turn are reused, not duplicated
        (an interrupted execution's step is not: it is dropped, and the code runs again)."""
        self.turn = Turn()
        for step in steps:
            if step["status"] != "in_progress":
                continue
            key = f"code:{step['id']}" if code_tool.is_code_step(step) else step["type"]
            if key in self.turn.orphans:  # never more than one of a kind; drop any extra rather than leave it open
                key = f"extra:{step['id']}"
            self.turn.orphans[key] = step

    async def _announce_resume(self) -> None:
        """A previous attempt died mid-answer and this one starts the answer over: a stream that relayed
        the first attempt's deltas would now get a second copy, so it is ended with an error instead
        (clients then read the stored run, which this attempt completes)."""
        if self.turn.orphans:
            await self.bus.publish(run_channel(self.run_id), error_event(
                "The worker executing this run stopped; another resumed it. Retrieve the run for its result."))

    async def _ensure_tool_step(self) -> dict[str, Any]:
        if self.turn.tool_step is not None:
            return self.turn.tool_step
        orphan = self.turn.orphans.pop("tool_calls", None)
        if orphan is not None:  # adopted: its calls are rewritten by this attempt's
            orphan["step_details"]["tool_calls"] = []
            self.turn.tool_step = orphan
            return orphan
        outbox = Outbox(self.run_id)
        async with self.db.write() as conn:
            step = new_step(self.run, "tool_calls", {"type": "tool_calls", "tool_calls": []})
            await insert_step(conn, self.project_id, step)
            outbox.add("thread.run.step.created", step)
            outbox.add("thread.run.step.in_progress", step)
        self.turn.tool_step = step
        await outbox.flush(self.bus)
        return step

    async def _on_tool_delta(self, calls: dict[int, dict[str, Any]], delta: ToolCallDelta) -> None:
        search = self.turn.search_calls.get(delta.index)
        if search is None and delta.index not in calls and self._search_name is not None \
                and delta.name == self._search_name:
            # A file_search call: executed here once the answer is complete, recorded in a step of its own.
            search = self.turn.search_calls[delta.index] = {"id": delta.id or ids.new_id("tool_call"), "arguments": ""}
        if search is not None:
            search["arguments"] += delta.arguments
            return
        if search is None and delta.index not in calls and (delta.index in self.turn.code_calls or (
                self._code_name is not None and delta.name == self._code_name)):
            await self._on_code_delta(delta)
            return
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
        """Record the model's answer. True when the loop goes on: the model searched the files (and called no
        client function), so it is called again with the results.

        file_search calls are executed here, before anything is recorded (a cancel may still interrupt
        them); their step is written completed, in the same transaction as the rest of the turn, so no
        attempt ever leaves a half-done search behind. A turn that mixes them with client function calls
        records both steps: the searches done, the functions pending (requires_action); the model reads the
        search results together with the client's outputs once they are submitted."""
        cut = finish == "length"
        searches: list[dict[str, Any]] = []
        if self.turn.search_calls and not cut:
            try:
                searches = await self._run_searches()
            except APIError as exc:  # a vector store deleted or expired since the run was created
                await self._fail("server_error", f"The file_search tool failed: {exc.message}"[:1000])
                return False
            except Exception as exc:
                log.exception("run %s: file_search failed", self.run_id)
                await self._fail("server_error", f"The file_search tool failed: {type(exc).__name__}: {exc}"[:1000])
                return False
        if self.turn.code_calls and not cut:
            from assistd.tools.code_interpreter import CodeInterpreterError

            try:
                await self._run_code()
            except CodeInterpreterError as exc:  # no sandbox, every session busy: the code could not run
                await self._fail("server_error", str(exc)[:1000] or "The code interpreter is unavailable.")
                return False
            except Exception as exc:
                log.exception("run %s: code_interpreter failed", self.run_id)
                await self._fail("server_error", f"The code_interpreter tool failed: {type(exc).__name__}")
                return False
        self.settling = True
        outbox = Outbox(self.run_id)
        prepared = await self._unannounced_answer()  # the model said nothing: the answer prepared for it
        async with self.db.write() as conn:
            run = await self._load_run(conn)
            if run["status"] not in ("in_progress", "cancelling"):
                # Another attempt already recorded an outcome (our lease lapsed meanwhile): leave it alone.
                log.warning("run %s is %s: dropping this attempt's turn", self.run_id, run["status"])
                if prepared is not None:
                    await self._delete_answer(conn, prepared)
                return False
            await self._drop_unused_orphans(conn)
            if prepared is not None and (self.turn.tool_step or self.turn.code_step or searches):
                await self._delete_answer(conn, prepared)  # it called tools instead
            elif prepared is not None:  # an empty answer: closed below like any other
                self._announce_answer(outbox, prepared)
                self._adopt_answer(prepared)
            turn_usage = usage(used.prompt_tokens, used.completion_tokens)
            # Token estimates decide what is sent; the upstream's count decides whether the run overran.
            prior = sum_usage(await list_run_steps(conn, self.run_id))["prompt_tokens"]
            over_prompt = bool(run.get("max_prompt_tokens")) and prior + used.prompt_tokens > run["max_prompt_tokens"]
            if self.turn.message is not None and self.turn.message_step is not None:
                annotations = self._close_message(self.turn.message, "incomplete" if cut else "completed",
                                                  "max_tokens" if cut else None)
                await objects.save_object(conn, messages, self.turn.message)
                set_step_status(self.turn.message_step, "completed", usage=turn_usage)
                turn_usage = usage(0, 0)  # the call's usage is counted once, on its first step
                await save_step(conn, self.turn.message_step)
                if annotations:  # the citations, in a last delta before the message completes
                    outbox.add("thread.message.delta",
                               citations.annotations_delta(self.turn.message["id"], annotations))
                outbox.add(f"thread.message.{self.turn.message['status']}", self.turn.message)
                outbox.add("thread.run.step.completed", self.turn.message_step)
            tool_step = self.turn.tool_step
            if tool_step is not None:
                tool_step["step_details"]["tool_calls"] = list(calls.values())
                tool_step["usage"] = turn_usage
                turn_usage = usage(0, 0)
                await save_step(conn, tool_step)
            code_step = self.turn.code_step
            executed = False
            if code_step is not None:
                code_step["step_details"]["tool_calls"] = list(self.turn.code_calls.values())
                if self.turn.code_ran:  # the code ran: recorded as such, whatever happens to the run now
                    set_step_status(code_step, "completed", usage=turn_usage)
                    turn_usage = usage(0, 0)
                    outbox.add("thread.run.step.completed", shown(code_step))
                    executed = True
                await save_step(conn, code_step)
            searched = False
            if searches and run["status"] != "cancelling" and not over_prompt:
                await self._record_searches(conn, run, searches, turn_usage, outbox)
                turn_usage = usage(0, 0)
                searched = True
            if run["status"] == "cancelling":
                # The cancel came while this turn was being recorded: it wins over what the model asked.
                await endings.end_run(conn, run, outbox, "cancelled", live=self._live())
            elif tool_step is not None and not cut and not over_prompt:
                tool_calls = [{"id": c["id"], "type": "function",
                               "function": {"name": c["function"]["name"], "arguments": c["function"]["arguments"]}}
                              for c in calls.values()]
                set_run_status(run, "requires_action", required_action={
                    "type": "submit_tool_outputs", "submit_tool_outputs": {"tool_calls": tool_calls}})
                await save_run(conn, run, lease_owner=None, lease_expires_at=None)
                outbox.add("thread.run.requires_action", run)
            elif searched or (executed and not over_prompt):
                pass  # still in_progress: the model reads the results next
            else:
                unexecuted = [s for s in (tool_step, None if executed else code_step) if s is not None]
                for open_step in unexecuted:  # cut off, or over max_prompt_tokens: its calls won't be executed
                    set_step_status(open_step, "cancelled")
                    await save_step(conn, open_step)
                    outbox.add("thread.run.step.cancelled", shown(open_step))
                if not unexecuted and not executed and self.turn.message_step is None:
                    # nothing said at all: still record the call as a step
                    await self._empty_answer(conn, run, turn_usage, cut, outbox)
                steps = await list_run_steps(conn, self.run_id)
                if cut or over_prompt:
                    reason = "max_completion_tokens" if cut else "max_prompt_tokens"
                    set_run_status(run, "incomplete", incomplete_details={"reason": reason}, usage=sum_usage(steps))
                else:
                    set_run_status(run, "completed", usage=sum_usage(steps))
                await save_run(conn, run, lease_owner=None, lease_expires_at=None)
                outbox.add(f"thread.run.{run['status']}", run)
            self.run = run
        await outbox.flush(self.bus)
        if (searched or executed) and run["status"] == "in_progress":
            self.settling = False  # back to work: the heartbeat keeps the lease and notices cancels again
            return True
        return False

    async def _drop_unused_orphans(self, conn: AsyncConnection) -> None:
        for orphan in self.turn.orphans.values():
            await conn.execute(delete(run_steps).where(run_steps.c.id == orphan["id"]))
            if orphan["type"] == "message_creation":
                message_id = orphan["step_details"]["message_creation"]["message_id"]
                await conn.execute(delete(messages).where(messages.c.id == message_id))
        self.turn.orphans = {}

    # --- endings (runner/endings.py) --------------------------------------------------------------

    def _live(self) -> endings.Live:
        """What this attempt holds and has not stored, for closing its open work."""
        calls: dict[str, list[dict[str, Any]]] = {}
        if self.turn.tool_step is not None:
            calls[self.turn.tool_step["id"]] = list(self.turn.calls.values())  # as streamed so far
        if self.turn.code_step is not None:
            calls[self.turn.code_step["id"]] = list(self.turn.code_calls.values())  # as executed so far
        return endings.Live(self.turn.message, self._close_message, calls)

    async def _end(self, status: str, **how: Any) -> None:
        """End the run as ``status`` in a transaction of its own (``how``: ``endings.end_run``'s options)."""
        self.settling = True
        outbox = Outbox(self.run_id)
        prepared = await self._unannounced_answer()
        async with self.db.write() as conn:
            run = await self._load_run(conn)
            if prepared is not None:  # an answer inserted ahead but never given: as if never begun
                await self._delete_answer(conn, prepared)
            if run["status"] not in TERMINAL_STATUSES:
                await endings.end_run(conn, run, outbox, status, live=self._live(), **how)
        await outbox.flush(self.bus)

    async def _finish_cancelled(self) -> None:
        await asyncio.shield(self._end("cancelled"))

    async def _fail(self, code: str, message: str) -> None:
        await self._end("failed", error=(code, message))

    async def _incomplete(self, reason: str) -> None:
        await self._end("incomplete", incomplete_reason=reason)
