"""Executing one run: the model↔tool loop, recorded as run steps, published as events.

Each state change is one transaction, and its events are published after the commit (``Outbox``).
Text and argument deltas go straight to the bus and are stored once, when the step completes: a crash
mid-answer leaves an in-progress step and message that the next attempt adopts and rewrites, so a
resumed run never duplicates a message or a step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from assistd import ids
from assistd.errors import APIError
from assistd.events.base import Event, EventBus, error_event, run_channel
from assistd.providers.base import ChatRequest, Finish, ProviderError, TextDelta, ToolCallDelta, Usage
from assistd.providers.router import ModelRouter
from assistd.runner import context
from assistd.services import citations
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
from assistd.services.step_render import shown
from assistd.store import objects
from assistd.store.db import Database
from assistd.store.tables import messages, run_steps, runs
from assistd.tools import code_tool, file_search

if TYPE_CHECKING:
    from assistd.services.vector_search import Retrieval
    from assistd.tools.code_tool import CodeTool

log = logging.getLogger("assistd.runner")


class RunExecutor:
    def __init__(self, db: Database, bus: EventBus, router: ModelRouter, run_id: str, project_id: str, *,
                 retrieval: Retrieval | None = None, code: CodeTool | None = None) -> None:
        self.db = db
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
        self._orphans: dict[str, dict[str, Any]] = {}
        # The answer being streamed (kept so a cancel can store what was said so far).
        self._message: dict[str, Any] | None = None
        self._message_step: dict[str, Any] | None = None
        self._tool_step: dict[str, Any] | None = None
        self._calls: dict[int, dict[str, Any]] = {}  # the tool calls streamed so far, by upstream index
        self._text: list[str] = []
        # file_search: the name it is offered under this turn (None: not offered), the model's calls of it
        # this turn (by upstream index), the run's citable results so far, and the next source number.
        self._search_name: str | None = None
        self._search_calls: dict[int, dict[str, Any]] = {}
        self._sources: citations.Sources = {}
        self._next_source = 0
        # code_interpreter: the name it is offered under this turn (None: not offered), the model's calls of
        # it this turn (entries, by upstream index), their step, how much of each input was streamed, the
        # run's executions so far, the files its code wrote (name → file id) and the images not yet shown
        # in an answer; ``_code_ran``: this turn's calls were executed.
        self._code_name: str | None = None
        self._code_calls: dict[int, dict[str, Any]] = {}
        self._code_step: dict[str, Any] | None = None
        self._code_done = 0
        self._code_files: dict[str, str] = {}
        self._pending_images: list[str] = []
        self._code_ran = False
        self._text_index = 0  # the index of the answer's text part (after its images)

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
            self._plan_search(run, steps)
            self._plan_code(run, steps)
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
        tools = context.chat_tools(run, search=self._search_name, code=self._code_name)
        response_format = run.get("response_format")
        request = ChatRequest(
            model=run["model"],
            messages=system + history + transcript,
            tools=tools or None,
            tool_choice=context.chat_tool_choice(run, tools, search=self._search_name,
                                                 searched=self._next_source > 0, code=self._code_name,
                                                 coded=self._code_done > 0),
            parallel_tool_calls=run.get("parallel_tool_calls") if tools else None,
            temperature=run.get("temperature"),
            top_p=run.get("top_p"),
            max_tokens=max_tokens,
            response_format=response_format if isinstance(response_format, dict) else None,
            reasoning_effort=run.get("reasoning_effort"),
        )
        return request, limit_hit

    def _plan_search(self, run: dict[str, Any], steps: list[dict[str, Any]]) -> None:
        """Whether this turn offers file_search, and what the run's earlier searches left to cite."""
        done = file_search.entries_of(steps)
        self._sources = citations.sources_of(steps)
        sources = [(c.get(file_search.PRIVATE) or {}).get("source", -1) for c in done]
        self._next_source = max([len(done) - 1, *sources]) + 1 if done else 0
        offer = (self.retrieval is not None and file_search.active(run)
                 and len(done) < file_search.MAX_SEARCHES)
        self._search_name = file_search.function_name(run) if offer else None

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
        self._message = None
        self._message_step = None
        self._tool_step = None
        self._calls = {}
        self._search_calls = {}
        self._code_calls = {}
        self._code_step = None
        self._code_ran = False
        self._text = []
        self._text_index = 0
        self._orphans = {}
        for step in steps:
            if step["status"] != "in_progress":
                continue
            key = f"code:{step['id']}" if code_tool.is_code_step(step) else step["type"]
            if key in self._orphans:  # never more than one of a kind; drop any extra rather than leave it open
                key = f"extra:{step['id']}"
            self._orphans[key] = step

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
                    self._text_index = sum(1 for p in message["content"] if p["type"] == "image_file")
                    return message
                await conn.execute(delete(run_steps).where(run_steps.c.id == orphan["id"]))
            message = message_service.new_message(
                self.run["thread_id"], "assistant", self._image_parts(), status="in_progress",
                assistant_id=self.run["assistant_id"], run_id=self.run_id)
            self._text_index = len(message["content"])
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
                               Event("thread.message.delta", message_delta(message["id"], self._text_index, text)))

    async def _on_tool_delta(self, calls: dict[int, dict[str, Any]], delta: ToolCallDelta) -> None:
        search = self._search_calls.get(delta.index)
        if search is None and delta.index not in calls and self._search_name is not None \
                and delta.name == self._search_name:
            # A file_search call: executed here once the answer is complete, recorded in a step of its own.
            search = self._search_calls[delta.index] = {"id": delta.id or ids.new_id("tool_call"), "arguments": ""}
        if search is not None:
            search["arguments"] += delta.arguments
            return
        if search is None and delta.index not in calls and (delta.index in self._code_calls or (
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

    # --- code_interpreter ------------------------------------------------------------------------------

    def _image_parts(self) -> list[dict[str, Any]]:
        """The images the run's code made since its last answer, as the next answer's first parts."""
        parts = [{"type": "image_file", "image_file": {"file_id": f}} for f in self._pending_images]
        self._pending_images = []
        return parts

    async def _publish_code_piece(self, index: int, piece: dict[str, Any]) -> None:
        assert self._code_step is not None
        await self.bus.publish(run_channel(self.run_id), Event("thread.run.step.delta", tool_call_delta(
            self._code_step["id"], index, {"type": "code_interpreter", "code_interpreter": piece})))

    async def _on_code_delta(self, delta: ToolCallDelta) -> None:
        """A piece of a code_interpreter call: its step shows the code as the model writes it."""
        entry = self._code_calls.get(delta.index)
        if entry is None:
            entry = code_tool.new_entry(delta.id or ids.new_id("tool_call"), self._code_name or "")
            self._code_calls[delta.index] = entry
            if self._code_step is None:
                outbox = Outbox(self.run_id)
                async with self.db.write() as conn:
                    step = new_step(self.run, "tool_calls", {"type": "tool_calls", "tool_calls": [entry]})
                    await insert_step(conn, self.project_id, step)
                    outbox.add("thread.run.step.created", shown(step))
                    outbox.add("thread.run.step.in_progress", shown(step))
                self._code_step = step
                await outbox.flush(self.bus)
            await self.bus.publish(run_channel(self.run_id), Event("thread.run.step.delta", tool_call_delta(
                self._code_step["id"], len(self._code_calls) - 1,
                {"id": entry["id"], "type": "code_interpreter", "code_interpreter": {"input": "", "outputs": []}})))
        private = entry[code_tool.PRIVATE]
        private["arguments"] += delta.arguments
        await self._stream_input(entry, code_tool.partial_code(private["arguments"]))

    async def _stream_input(self, entry: dict[str, Any], code: str) -> None:
        written = entry["code_interpreter"]["input"]
        if len(code) > len(written) and code.startswith(written):
            entry["code_interpreter"]["input"] = code
            index = list(self._code_calls.values()).index(entry)
            await self._publish_code_piece(index, {"input": code[len(written):]})

    async def _run_code(self) -> None:
        """Execute this turn's code_interpreter calls in order, in the thread's session; each call's outputs
        are saved (files, images) and streamed as soon as it returns. A cancel interrupts the execution."""
        assert self.code is not None
        tool = self.code
        engine = tool.engine
        thread_id = self.run["thread_id"]
        provided = tool.provided.setdefault(thread_id, set())
        async with self.db.read() as conn:
            inputs = await code_tool.input_files(conn, tool.blobs, self.project_id, self.run, provided)
        for index, entry in enumerate(self._code_calls.values()):
            code = code_tool.code_of(entry[code_tool.PRIVATE]["arguments"])
            await self._stream_input(entry, code)
            entry["code_interpreter"]["input"] = code
            timeout = None
            if self.run.get("expires_at") is not None:  # never past the run's expiry
                left = self.run["expires_at"] - time.time()
                if left < engine.settings.timeout_seconds:
                    timeout = max(1.0, left)
            files = [f for _, f in inputs]
            execution = asyncio.ensure_future(engine.execute(thread_id, code, timeout=timeout, files=files))
            try:
                result = await asyncio.shield(execution)
            except asyncio.CancelledError:
                # The run is cancelled (or this worker stops): interrupt the code, kill it if it goes on.
                with contextlib.suppress(BaseException):
                    await engine.cancel(thread_id)
                    await execution
                raise
            provided.update(fid for fid, _ in inputs)
            inputs = []
            images, files_out, skipped = await self._save_outputs(entry["id"], result)
            logs = result.logs
            if result.error and result.error not in logs:
                logs += ("" if not logs or logs.endswith("\n") else "\n") + f"[{result.error}]\n"
            outputs: list[dict[str, Any]] = [{"type": "logs", "logs": logs}] if logs else []
            outputs += [{"type": "image", "image": {"file_id": f}} for f in images]
            entry["code_interpreter"]["outputs"] = outputs
            told = code_tool.model_output(logs, None, images, files_out, skipped)
            if result.session_restarted:
                told = "[a new Python session was started: earlier variables and imports are lost]\n" + told
            entry[code_tool.PRIVATE].update(output=told, files=files_out)
            self._code_files.update(files_out)  # (its images go in the next turn's answer: see _plan_code)
            if outputs:
                await self._publish_code_piece(index, {"outputs": [{"index": i, **o} for i, o in enumerate(outputs)]})
        self._code_ran = True

    async def _save_outputs(self, call_id: str, result: Any) -> tuple[list[str], dict[str, str], list[str]]:
        """The execution's images and the files it wrote, as files (purpose ``assistants_output``)."""
        from assistd.services import files as file_service

        assert self.code is not None
        blobs = self.code.blobs
        images: list[str] = []
        written: dict[str, str] = {}
        skipped: list[str] = []
        limit = file_service.max_file_bytes()
        if not result.images and not result.files_created:
            return images, written, skipped
        async with self.db.write() as conn:
            for i, png in enumerate(result.images):
                file = await file_service.create_file(conn, blobs, self.project_id, f"{call_id}-image-{i}.png",
                                                      "assistants_output", code_tool.chunks_of(png))
                images.append(file["id"])
            for k, created in enumerate(result.files_created):
                if k >= code_tool.MAX_FILES_PER_EXECUTION or created.size > limit:
                    skipped.append(created.name)
                    continue
                try:
                    data = await asyncio.to_thread(created.read_bytes, limit)
                    file = await file_service.create_file(conn, blobs, self.project_id, created.name,
                                                          "assistants_output", code_tool.chunks_of(data))
                except (OSError, APIError, ValueError) as exc:
                    log.warning("run %s: output file %s not saved: %s", self.run_id, created.name, exc)
                    skipped.append(created.name)
                    continue
                written[created.name] = file["id"]
        return images, written, skipped

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
        if self._search_calls and not cut:
            try:
                searches = await self._run_searches()
            except APIError as exc:  # a vector store deleted or expired since the run was created
                await self._fail("server_error", f"The file_search tool failed: {exc.message}"[:1000])
                return False
            except Exception as exc:
                log.exception("run %s: file_search failed", self.run_id)
                await self._fail("server_error", f"The file_search tool failed: {type(exc).__name__}: {exc}"[:1000])
                return False
        if self._code_calls and not cut:
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
                annotations = self._close_message(self._message, "incomplete" if cut else "completed",
                                                  "max_tokens" if cut else None)
                await objects.save_object(conn, messages, self._message)
                set_step_status(self._message_step, "completed", usage=turn_usage)
                turn_usage = usage(0, 0)  # the call's usage is counted once, on its first step
                await save_step(conn, self._message_step)
                if annotations:  # the citations, in a last delta before the message completes
                    outbox.add("thread.message.delta", citations.annotations_delta(self._message["id"], annotations))
                outbox.add(f"thread.message.{self._message['status']}", self._message)
                outbox.add("thread.run.step.completed", self._message_step)
            tool_step = self._tool_step
            if tool_step is not None:
                tool_step["step_details"]["tool_calls"] = list(calls.values())
                tool_step["usage"] = turn_usage
                turn_usage = usage(0, 0)
                await save_step(conn, tool_step)
            code_step = self._code_step
            executed = False
            if code_step is not None:
                code_step["step_details"]["tool_calls"] = list(self._code_calls.values())
                if self._code_ran:  # the code ran: recorded as such, whatever happens to the run now
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
                await self._cancel_in(conn, run, outbox)
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
                if not unexecuted and not executed and self._message_step is None:
                    # nothing said at all: still record the call as a step
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
        if (searched or executed) and run["status"] == "in_progress":
            self.settling = False  # back to work: the heartbeat keeps the lease and notices cancels again
            return True
        return False

    async def _run_searches(self) -> list[dict[str, Any]]:
        """Execute this turn's file_search calls; their entries, in call order."""
        from assistd.services import vector_search  # imports the retrieval library: only when searching

        run = self.run
        settings = file_search.settings_of(run) or file_search.Settings()
        store_ids = file_search.store_ids(run.get("tool_resources"))
        wait = file_search.THREAD_STORE_WAIT_SECONDS
        if run.get("expires_at") is not None:
            wait = min(wait, max(0.0, run["expires_at"] - time.time()))
        await file_search.wait_for_thread_store(self.db, self.project_id, run["thread_id"], store_ids,
                                                time.monotonic() + wait)
        # The results must leave room for the rest of the prompt: half the context window at most.
        room = (self.router.context_window(run["model"]) - context.ANSWER_RESERVE) // 2
        per_call = max(256, room // max(1, len(self._search_calls)))
        entries = []
        for k, call in enumerate(self._search_calls.values()):
            query = file_search.query_of(call["arguments"])
            hits = []
            if query:
                assert self.retrieval is not None
                hits = await vector_search.search(
                    self.db, self.retrieval.index, self.retrieval.embedder(), self.project_id, store_ids, query,
                    max_num_results=settings.max_num_results, ranking_options=settings.ranking_options)
            entries.append(file_search.entry(call["id"], self._search_name or file_search.FUNCTION_NAME,
                                             call["arguments"], self._next_source + k, settings,
                                             file_search.trim_to_budget(hits, per_call)))
        return entries

    async def _record_searches(self, conn: AsyncConnection, run: dict[str, Any], entries: list[dict[str, Any]],
                               turn_usage: dict[str, int], outbox: Outbox) -> None:
        """The searches' step, written completed; its events as a stream shows a step's life."""
        step = new_step(run, "tool_calls", {"type": "tool_calls", "tool_calls": []})
        outbox.add("thread.run.step.created", step)
        outbox.add("thread.run.step.in_progress", step)
        step["step_details"]["tool_calls"] = entries
        set_step_status(step, "completed", usage=turn_usage)
        await insert_step(conn, self.project_id, step)
        visible = shown(step)
        for i, entry in enumerate(visible["step_details"]["tool_calls"]):
            outbox.add("thread.run.step.delta", tool_call_delta(step["id"], i, entry))
        outbox.add("thread.run.step.completed", visible)

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

    def _close_message(self, message: dict[str, Any], status: str, reason: str | None) -> list[dict[str, Any]]:
        """Store the answer in the message and close it; returns its citations as delta parts."""
        text = "".join(self._text)
        images = [p for p in message["content"] if p["type"] == "image_file"] or self._image_parts()
        if text or not message["content"] or len(images) == len(message["content"]):
            message["content"] = images + ([message_service.text_content(text)] if text or not images else [])
        files = self._code_files
        annotations = citations.apply(message, self._sources,
                                      extra=lambda value: code_tool.file_path_annotations(value, files))
        message["status"] = status
        now = ids.now()
        if status == "completed":
            message["completed_at"] = now
        else:
            message["incomplete_at"] = now
            message["incomplete_details"] = {"reason": reason} if reason else None
        return annotations

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
