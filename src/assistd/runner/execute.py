"""Executing one run: the model↔tool loop, recorded as run steps, published as events.

Each state change is one transaction, and its events are published after the commit (``Outbox``).
Text and argument deltas go straight to the bus and are stored once, when the step completes: a crash
mid-answer leaves an in-progress step and message that the next attempt adopts and rewrites, so a
resumed run never duplicates a message or a step.

The executor composes the parts of a run: the answer (runner/answer_steps.py), the client calls
(runner/client_calls.py), the server tools (runner/tool_set.py), the recording of each model call's
outcome (runner/record_turn.py) and the endings (runner/endings.py); what they share of the run is its
``RunScope``, what one model call holds its ``Turn``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncConnection

from assistd import ids
from assistd.events.base import EventBus, error_event, run_channel
from assistd.observability import runs as observe_runs
from assistd.observability import tracing
from assistd.providers.base import ChatRequest, Finish, ProviderError, TextDelta, ToolCallDelta, Usage
from assistd.providers.router import ModelRouter
from assistd.runner import client_calls, context, endings
from assistd.runner.answer_steps import AnswerSteps
from assistd.runner.early_call import EarlyCall
from assistd.runner.record_turn import TurnOutcome, TurnRecorder
from assistd.runner.run_scope import RunScope
from assistd.runner.server_tools import Offer, Recording, ToolEngines, ToolFailed
from assistd.runner.tool_set import ToolSet
from assistd.runner.turn import Turn
from assistd.services.outbox import Outbox
from assistd.services.run_objects import TERMINAL_STATUSES, set_run_status, usage
from assistd.services.runs import list_run_steps, save_run
from assistd.store import objects
from assistd.store.db import Database
from assistd.store.tables import runs

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


class RunExecutor:
    def __init__(self, db: Database, bus: EventBus, router: ModelRouter, run_id: str, project_id: str, *,
                 retrieval: Retrieval | None = None, code: CodeTool | None = None,
                 head: HeadStart | None = None) -> None:
        self.scope = RunScope(db, bus, router, run_id, project_id)
        self.run_id = run_id
        self.head = head
        self.cancel_reason: str | None = None  # set by the pool before it cancels our task
        # True while the outcome is being committed/published: the pool must not interrupt then.
        self.settling = False
        # Without the retrieval index (code engine), file_search (code_interpreter) is not offered.
        self.tools = ToolSet(self.scope, ToolEngines(retrieval=retrieval, code=code))
        self.answers = AnswerSteps(self.scope, self.tools)
        self.turn = Turn()  # the model call under way: a new one per call
        # A head start's first model call, sent before the run's transaction committed, and what it was
        # built from (``send_first_call``): the first turn takes them instead of building its own.
        self.early: EarlyCall | None = None
        self._early_context: tuple[dict[str, Any], list[dict[str, Any]], ChatRequest, str | None] | None = None

    # --- entry ------------------------------------------------------------------------------------

    async def execute(self) -> None:
        try:
            if self.head is not None:
                self.scope.run = self.head.run
            elif not await self._begin():
                return
            await observe_runs.executing(self.scope.db, self.scope.run, self.scope.project_id)
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
            try:
                await self._close_early()  # an execution that ended before its first model call
            finally:
                observe_runs.execution_ended(self.run_id)

    async def _close_early(self) -> None:
        early, self.early = self.early, None
        if early is not None:
            await early.close()

    def abandon(self) -> None:
        """The run will not be executed here (its transaction rolled back): the call sent ahead is closed."""
        early, self.early = self.early, None
        if early is not None:
            early.abandon()

    async def _load_run(self, conn: AsyncConnection) -> dict[str, Any]:
        run = await objects.get_for_update(conn, runs, self.run_id)
        assert run is not None, self.run_id
        return run

    async def _begin(self) -> bool:
        """Take the run into in_progress; False when there is nothing to execute."""
        outbox = Outbox(self.run_id)
        async with self.scope.db.write() as conn:
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
                self.scope.run = run
        await outbox.flush(self.scope.bus)
        return bool(self.scope.run)

    async def send_first_call(self, conn: AsyncConnection) -> None:
        """In the transaction that starts the run (a head start, whose steps are known): its first model call,
        built from what the transaction holds (the thread read through ``conn`` unless created with the run),
        is sent now, so that the upstream answers while the transaction commits (runner/early_call.py). Not
        when traces are on (the call's span is a child of the run's, which begins with the execution), nor
        when the first turn makes no call (a token limit already reached)."""
        head = self.head
        if head is None or head.steps is None or tracing.TRACER is not None:
            return
        try:
            request, limit_hit = await self._build_request(conn, head.run, head.steps, head.thread)
            if limit_hit is not None:
                return
            self.early = EarlyCall(self.scope.router.provider_for(head.run["model"]).stream_chat(request))
        except Exception:  # the executor's own first turn meets the same failure and records it
            log.debug("run %s: sending the first call early failed", self.run_id, exc_info=True)
            return
        self._early_context = (head.run, head.steps, request, limit_hit)

    async def prepare_first_answer(self, conn: AsyncConnection) -> None:
        """In the transaction that starts the run (a head start, whose steps are known): when its first turn
        can only answer in text, its answer is inserted there rather than beside the model call."""
        head = self.head
        if head is None or head.steps is None or self._offers_tools(head.run, head.steps):
            return
        self.scope.run = head.run
        await self.answers.prepare_first(conn, head.run)

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
        if request.tools is None and "message_creation" not in self.turn.orphans and self.answers.prepared is None:
            self.answers.prepare()  # it can only answer in text: have its message ready by the first token
        turn = self.turn
        finish = "stop"
        used = Usage(0, 0)
        provider = self.scope.router.provider_for(run["model"])
        early, self.early = self.early, None
        # A run still executing at expires_at expires then, however long the upstream takes.
        left = None if run["expires_at"] is None else max(0.0, run["expires_at"] - time.time())
        deadline = asyncio.timeout(left)
        try:
            async with deadline, aclosing(provider.stream_chat(request) if early is None else early.events()) as events:
                async for event in events:
                    if isinstance(event, TextDelta):
                        observe_runs.first_token(self.run_id)
                        observe_runs.first_output(self.run_id)
                        await self.answers.on_text(turn, event.text)
                        # Chunks that arrive together (a fast upstream, a burst after a stall) would all be
                        # handled before any stream here relays the first: let them relay each delta now.
                        await asyncio.sleep(0)
                    elif isinstance(event, ToolCallDelta):
                        observe_runs.first_output(self.run_id)
                        if not await self.tools.on_delta(event, taken=event.index in turn.calls):
                            await client_calls.on_delta(self.scope, turn, event)
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
        return await self._record_turn(finish == "length", used) is TurnOutcome.SERVER_TOOLS_EXECUTED

    async def _turn_context(self) -> tuple[dict[str, Any], list[dict[str, Any]], ChatRequest, str | None]:
        """The run and its steps as they are now, and the model call that comes next (with the token limit
        it would break, or None). A head start's first turn takes what it knows instead of reading it."""
        head, self.head = self.head, None
        early, self._early_context = self._early_context, None
        if early is not None:  # its call was sent with it
            return early
        if head is not None and head.steps is not None and head.thread is not None:
            return head.run, head.steps, *await self._build_request(None, head.run, head.steps, head.thread)
        async with self.scope.db.read() as conn:
            if head is not None and head.steps is not None:
                run, steps = head.run, head.steps
            else:
                found = await objects.get_object(conn, runs, self.run_id)
                assert found is not None
                run, steps = found, await list_run_steps(conn, self.run_id)
            self.scope.run = run
            return run, steps, *await self._build_request(conn, run, steps)

    def _offers_tools(self, run: dict[str, Any], steps: list[dict[str, Any]]) -> bool:
        """Whether the model will be offered any tool on the run's next turn (as ``_build_request`` plans it)."""
        return bool(context.chat_tools(run, self.tools.plan(run, steps)))

    async def _build_request(
        self, conn: AsyncConnection | None, run: dict[str, Any], steps: list[dict[str, Any]],
        thread: list[dict[str, Any]] | None = None,
    ) -> tuple[ChatRequest, str | None]:
        offers: list[Offer] = self.tools.plan(run, steps)
        return await context.build_request(conn, run, steps, window=self.scope.router.context_window(run["model"]),
                                           offers=offers, replays=self.tools.replays, thread=thread)

    def _adopt_orphans(self, steps: list[dict[str, Any]]) -> None:
        """In-progress steps left by an interrupted attempt of this turn are reused, not duplicated
        (an interrupted server tool's step is not: it is dropped, and its calls run again)."""
        self.turn = Turn()
        for step in steps:
            if step["status"] != "in_progress":
                continue
            owner = self.tools.owner_of(step)
            key = f"{owner}:{step['id']}" if owner is not None else step["type"]
            if key in self.turn.orphans:  # never more than one of a kind; drop any extra rather than leave it open
                key = f"extra:{step['id']}"
            self.turn.orphans[key] = step

    async def _announce_resume(self) -> None:
        """A previous attempt died mid-answer and this one starts the answer over: a stream that relayed
        the first attempt's deltas would now get a second copy, so it is ended with an error instead
        (clients then read the stored run, which this attempt completes)."""
        if self.turn.orphans:
            await self.scope.bus.publish(run_channel(self.run_id), error_event(
                "The worker executing this run stopped; another resumed it. Retrieve the run for its result."))

    # --- recording the outcome (runner/record_turn.py) -----------------------------------------------

    async def _record_turn(self, cut: bool, used: Usage) -> TurnOutcome:
        """Execute the server tools' calls, then record the call's outcome in one transaction.

        Server tools execute before anything is recorded (a cancel may still interrupt them); their steps
        are written in the same transaction as the rest of the turn, so no attempt ever leaves a half-done
        execution behind. A turn that mixes them with client function calls records both: the server
        tools' steps done, the functions pending (requires_action); the model reads the tools' outputs
        together with the client's once they are submitted."""
        if not cut:
            try:
                await self.tools.execute()
            except ToolFailed as failure:
                await self._fail("server_error", failure.message)
                return TurnOutcome.FAILED
        self.settling = True
        outbox = Outbox(self.run_id)
        prepared = await self.answers.unannounced()  # the model said nothing: the answer prepared for it
        async with self.scope.db.write() as conn:
            run = await self._load_run(conn)
            if run["status"] not in ("in_progress", "cancelling"):
                # Another attempt already recorded an outcome (our lease lapsed meanwhile): leave it alone.
                log.warning("run %s is %s: dropping this attempt's turn", self.run_id, run["status"])
                if prepared is not None:
                    await self.answers.delete(conn, prepared)
                return TurnOutcome.SUPERSEDED
            rec = Recording(conn, run, outbox, usage(used.prompt_tokens, used.completion_tokens))
            recorder = TurnRecorder(self.turn, self.answers, self.tools, self._live)
            outcome = await recorder.record(rec, prepared, cut=cut, prompt_tokens=used.prompt_tokens)
            self.scope.run = run
        await outbox.flush(self.scope.bus)
        if outcome is TurnOutcome.SERVER_TOOLS_EXECUTED:
            self.settling = False  # back to work: the heartbeat keeps the lease and notices cancels again
        return outcome

    # --- endings (runner/endings.py) --------------------------------------------------------------

    def _live(self) -> endings.Live:
        """What this attempt holds and has not stored, for closing its open work."""
        calls: dict[str, list[dict[str, Any]]] = {}
        if self.turn.tool_step is not None:
            calls[self.turn.tool_step["id"]] = list(self.turn.calls.values())  # as streamed so far
        calls.update(self.tools.open_calls())  # as streamed or executed so far
        turn = self.turn
        return endings.Live(turn.message, lambda message, status, reason: self.answers.close(
            turn, message, status, reason), calls)

    async def _end(self, status: str, **how: Any) -> None:
        """End the run as ``status`` in a transaction of its own (``how``: ``endings.end_run``'s options)."""
        self.settling = True
        outbox = Outbox(self.run_id)
        prepared = await self.answers.unannounced()
        async with self.scope.db.write() as conn:
            run = await self._load_run(conn)
            if prepared is not None:  # an answer inserted ahead but never given: as if never begun
                await self.answers.delete(conn, prepared)
            if run["status"] not in TERMINAL_STATUSES:
                await endings.end_run(conn, run, outbox, status, live=self._live(), **how)
        await outbox.flush(self.scope.bus)

    async def _finish_cancelled(self) -> None:
        await asyncio.shield(self._end("cancelled"))

    async def _fail(self, code: str, message: str) -> None:
        await self._end("failed", error=(code, message))

    async def _incomplete(self, reason: str) -> None:
        await self._end("incomplete", incomplete_reason=reason)
