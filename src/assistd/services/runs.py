"""Runs as the API sees them: create (also with a new thread), read, list, modify, cancel, tool outputs.

Executing a run is the worker pool's job; this module only records what was asked and moves the run
through the statuses a client may cause (queued, cancelling, back to queued after tool outputs) — or
stores it started at once under a ``Lease`` of a worker slot of this process (the head start).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from assistd import ids
from assistd.errors import Conflict, InvalidRequest, NotFound
from assistd.observability import runs as observe_runs
from assistd.observability import tracing
from assistd.pagination import Page, PageParams
from assistd.schemas.common import response_format_value, tool_dicts
from assistd.schemas.runs import CreateRun, CreateThreadAndRun, RunOptions, SubmitToolOutputs
from assistd.schemas.threads import CreateThread
from assistd.services import assistants as assistant_service
from assistd.services import messages as message_service
from assistd.services import run_slots, usage
from assistd.services import threads as thread_service
from assistd.services.outbox import Outbox
from assistd.services.run_objects import (
    ACTIVE_STATUSES,
    RUN_TTL_SECONDS,
    STEP_TERMINAL,
    TERMINAL_STATUSES,
    set_run_status,
    set_step_status,
)
from assistd.store import objects
from assistd.store.tables import run_steps, runs, threads


async def active_run_id(conn: AsyncConnection, thread_id: str) -> str | None:
    stmt = select(runs.c.id).where(runs.c.thread_id == thread_id, runs.c.status.in_(ACTIVE_STATUSES)).limit(1)
    return (await conn.execute(stmt)).scalar_one_or_none()


def now_ms() -> int:
    return int(time.time() * 1000)


def _run_timings(run: dict[str, Any]) -> dict[str, int]:
    """The millisecond times to keep unless already recorded: those noted in memory as they happened (start,
    first token, end: observability/runs.py), written with the run's next save, never in a write of their
    own; a start or end noted in another process is stamped now."""
    first = observe_runs.take_marks(run["id"])
    if run.get("started_at") and "started_ms" not in first:
        first["started_ms"] = now_ms()
    if run["status"] in TERMINAL_STATUSES and "ended_ms" not in first:
        first["ended_ms"] = now_ms()
    return first


_ENDING = ("project_id", "holds_slot")  # what a final save returns, for the run's usage and its slot


async def save_run(conn: AsyncConnection, run: dict[str, Any], **columns: Any) -> None:
    final = run["status"] in TERMINAL_STATUSES
    row = await objects.save_object_first(conn, runs, run, _run_timings(run), returning=_ENDING if final else (),
                                          status=run["status"], expires_at=run["expires_at"], **columns)
    if observe_runs.take_ended(run["id"]):  # in the transaction that ends the run: its usage, its slot
        if row is None:  # its thread was deleted meanwhile
            return
        await usage.record_run_end(conn, row.project_id, run)
        if row.holds_slot:
            await run_slots.give_back(conn, row.project_id, run["id"])


async def save_step(conn: AsyncConnection, step: dict[str, Any]) -> None:
    first = {"ended_ms": now_ms()} if step["status"] in STEP_TERMINAL else {}
    await objects.save_object_first(conn, run_steps, step, first, status=step["status"])


StepTimes = tuple[int | None, int | None]  # a step's (created_ms, ended_ms)


async def timings(conn: AsyncConnection, run_id: str) -> tuple[dict[str, int | None], dict[str, StepTimes]]:
    """The run's millisecond times (queued/started/first_token/ended ``_ms``, None where not recorded, e.g. a
    run from before they were) and each step's ``(created_ms, ended_ms)`` by id: the console's run view."""
    row = (await conn.execute(select(runs.c.queued_ms, runs.c.started_ms, runs.c.first_token_ms, runs.c.ended_ms)
                              .where(runs.c.id == run_id))).first()
    run_ms = dict(row._mapping) if row is not None else {}
    steps = await conn.execute(select(run_steps.c.id, run_steps.c.created_ms, run_steps.c.ended_ms)
                               .where(run_steps.c.run_id == run_id))
    return run_ms, {step_id: (created, ended) for step_id, created, ended in steps}


async def list_run_steps(conn: AsyncConnection, run_id: str) -> list[dict[str, Any]]:
    """The run's steps, oldest first."""
    rows = await conn.execute(select(run_steps.c.data).where(run_steps.c.run_id == run_id).order_by(run_steps.c.seq))
    return [orjson.loads(raw) for (raw,) in rows]


async def insert_step(conn: AsyncConnection, project_id: str, step: dict[str, Any]) -> None:
    await objects.insert_object(conn, run_steps, step, project_id=project_id, thread_id=step["thread_id"],
                                run_id=step["run_id"], status=step["status"], created_ms=now_ms(),
                                ended_ms=now_ms() if step["status"] in STEP_TERMINAL else None)


def _named_choice_check(tool_choice: Any, tools: list[dict[str, Any]]) -> None:
    if isinstance(tool_choice, dict) and tool_choice.get("type") == "function":
        name = (tool_choice.get("function") or {}).get("name")
        if not name:
            raise InvalidRequest("Missing required parameter: 'tool_choice.function'.", param="tool_choice.function")
        if not any(t["type"] == "function" and t["function"]["name"] == name for t in tools):
            raise InvalidRequest(f"Invalid 'tool_choice': no function named '{name}' among the run's tools.",
                                 param="tool_choice")
    elif isinstance(tool_choice, dict) and not any(t["type"] == tool_choice["type"] for t in tools):
        raise InvalidRequest(f"Invalid 'tool_choice': the run has no {tool_choice['type']} tool.", param="tool_choice")


def run_tool_resources(assistant: dict[str, Any], thread: dict[str, Any]) -> dict[str, Any]:
    """Resources the run's tools may use: the thread's override the assistant's per tool, except that
    file_search searches both the assistant's and the thread's vector stores (as the hosted API did), and
    code_interpreter gets both's files."""
    mine, theirs = assistant.get("tool_resources") or {}, thread.get("tool_resources") or {}
    resources = {**mine, **theirs}
    code_files = [*((mine.get("code_interpreter") or {}).get("file_ids") or []),
                  *((theirs.get("code_interpreter") or {}).get("file_ids") or [])]
    if code_files:
        resources["code_interpreter"] = {"file_ids": list(dict.fromkeys(code_files))}
    stores = [*((mine.get("file_search") or {}).get("vector_store_ids") or []),
              *((theirs.get("file_search") or {}).get("vector_store_ids") or [])]
    if stores:
        resources["file_search"] = {"vector_store_ids": list(dict.fromkeys(stores))}
    return resources


def _build_run(
    thread_id: str, assistant: dict[str, Any], req: RunOptions, extra_instructions: str | None, ttl: int
) -> dict[str, Any]:
    created = ids.now()
    instructions = req.instructions if req.instructions is not None else assistant.get("instructions")
    if extra_instructions:
        instructions = f"{instructions}\n\n{extra_instructions}" if instructions else extra_instructions
    tools = tool_dicts(req.tools) if req.tools is not None else assistant.get("tools", [])
    tool_choice: Any = "auto"
    if req.tool_choice is not None:
        tool_choice = (req.tool_choice if isinstance(req.tool_choice, str)
                       else req.tool_choice.model_dump(exclude_none=True))
        _named_choice_check(tool_choice, tools)
    truncation: dict[str, Any] = {"type": "auto", "last_messages": None}
    if req.truncation_strategy is not None:
        truncation = {"type": req.truncation_strategy.type, "last_messages": req.truncation_strategy.last_messages}
    return {
        "id": ids.new_id("run"),
        "object": "thread.run",
        "created_at": created,
        "assistant_id": assistant["id"],
        "thread_id": thread_id,
        "status": "queued",
        "started_at": None,
        "expires_at": created + ttl,
        "cancelled_at": None,
        "failed_at": None,
        "completed_at": None,
        "required_action": None,
        "last_error": None,
        "model": req.model or assistant["model"],
        "instructions": instructions or "",
        "tools": tools,
        "tool_resources": {},
        "metadata": req.metadata or {},
        "temperature": req.temperature if req.temperature is not None else assistant.get("temperature", 1.0),
        "top_p": req.top_p if req.top_p is not None else assistant.get("top_p", 1.0),
        "reasoning_effort": req.reasoning_effort or assistant.get("reasoning_effort"),
        "max_completion_tokens": req.max_completion_tokens,
        "max_prompt_tokens": req.max_prompt_tokens,
        "truncation_strategy": truncation,
        "incomplete_details": None,
        "usage": None,
        "response_format": (response_format_value(req.response_format) if req.response_format is not None
                            else assistant.get("response_format", "auto")),
        "tool_choice": tool_choice,
        "parallel_tool_calls": True if req.parallel_tool_calls is None else req.parallel_tool_calls,
    }


@dataclass(frozen=True, eq=False)
class Lease:
    """A worker slot of this process (``WorkerPool.lease``; each lease is one slot, compared by identity),
    held for the run a request queues: the run is stored in_progress at once, leased to ``owner`` for
    ``seconds`` from its write (not from the lease's taking: the transaction may wait for SQLite's writer),
    with no claim or start transaction after."""

    owner: str
    seconds: float


@dataclass(frozen=True, slots=True)
class QueuedRun:
    """A run a transaction queued: as the request answers it — queued, as the hosted API does — and, when
    it was stored started under a ``Lease``, as stored (its stream carries ``thread.run.queued`` then
    ``thread.run.in_progress``)."""

    run: dict[str, Any]
    started: dict[str, Any] | None  # None: left queued for whichever worker claims it

    @property
    def stored(self) -> dict[str, Any]:
        return self.run if self.started is None else self.started


def _take(run: dict[str, Any], lease: Lease | None, outbox: Outbox) -> tuple[QueuedRun, dict[str, Any]]:
    """The queued ``run`` and how it is stored — started under ``lease`` when there is one —, and its lease
    columns."""
    if lease is None:
        return QueuedRun(run, None), {"lease_owner": None, "lease_expires_at": None}
    started = set_run_status(dict(run), "in_progress")
    outbox.add("thread.run.in_progress", started)
    return QueuedRun(run, started), {"lease_owner": lease.owner, "lease_expires_at": time.time() + lease.seconds}


async def _start(
    conn: AsyncConnection, project_id: str, thread: dict[str, Any], req: RunOptions, outbox: Outbox,
    extra_instructions: str | None, ttl: int, lease: Lease | None,
) -> QueuedRun:
    holds_slot = await run_slots.take(conn, project_id) or None  # a 429 when the project's limit is reached
    assistant = await assistant_service.get(conn, project_id, req.assistant_id, param="assistant_id")
    run = _build_run(thread["id"], assistant, req, extra_instructions, ttl)
    run["tool_resources"] = run_tool_resources(assistant, thread)
    outbox.run_id = run["id"]
    outbox.add("thread.run.created", run)
    outbox.add("thread.run.queued", run)
    observe_runs.run_queued(run, project_id)
    queued_ms = now_ms()  # before _take notes a head start's started_ms: queued never comes after started
    queued, columns = _take(run, lease, outbox)
    stored = queued.stored
    await objects.insert_object(conn, runs, stored, project_id=project_id, thread_id=thread["id"],
                                status=stored["status"], expires_at=run["expires_at"],
                                trace_context=tracing.current_traceparent(), queued_ms=queued_ms,
                                holds_slot=holds_slot, **columns)
    return queued


async def create(
    conn: AsyncConnection, project_id: str, thread_id: str, req: CreateRun, outbox: Outbox,
    ttl: int = RUN_TTL_SECONDS, lease: Lease | None = None,
) -> QueuedRun:
    # Lock the thread row so two concurrent creates can't both see "no active run".
    thread = await objects.get_for_update(conn, threads, thread_id, project_id=project_id)
    if thread is None:
        raise NotFound("thread", thread_id)
    active = await active_run_id(conn, thread_id)
    if active is not None:
        raise Conflict(f"Thread {thread_id} already has an active run {active}.")
    for i, message in enumerate(req.additional_messages or []):
        # ``thread`` is locked: a vector store made for attachments is recorded in it, and so seen below.
        await message_service.add_user_message(conn, project_id, thread_id, message, thread=thread,
                                               param=f"additional_messages[{i}].attachments")
    return await _start(conn, project_id, thread, req, outbox, req.additional_instructions, ttl, lease)


async def create_thread_and_run(
    conn: AsyncConnection, project_id: str, req: CreateThreadAndRun, outbox: Outbox,
    ttl: int = RUN_TTL_SECONDS, lease: Lease | None = None,
) -> tuple[dict[str, Any], QueuedRun, list[dict[str, Any]]]:
    """The new thread, its run, and the thread's messages (oldest first)."""
    thread_req = req.thread or CreateThread()
    resources_param = "thread.tool_resources"
    if req.tool_resources is not None and thread_req.tool_resources is None:
        thread_req = thread_req.model_copy(update={"tool_resources": req.tool_resources})
        resources_param = "tool_resources"
    thread, messages = await thread_service.create_with_messages(conn, project_id, thread_req, param="thread.",
                                                                 resources_param=resources_param)
    outbox.add("thread.created", thread)  # first on the run's channel: streams subscribe by run id
    run = await _start(conn, project_id, thread, req, outbox, None, ttl, lease)
    return thread, run, messages


async def get_raw(conn: AsyncConnection, project_id: str, thread_id: str, run_id: str) -> str:
    raw = await objects.get_raw(conn, runs, run_id, project_id=project_id, thread_id=thread_id)
    if raw is None:
        await message_service.require_thread(conn, project_id, thread_id)
        raise NotFound("run", run_id)
    return raw


async def get_for_update(conn: AsyncConnection, project_id: str, thread_id: str, run_id: str) -> dict[str, Any]:
    run = await objects.get_for_update(conn, runs, run_id, project_id=project_id, thread_id=thread_id)
    if run is None:
        await message_service.require_thread(conn, project_id, thread_id)
        raise NotFound("run", run_id)
    return run


async def list_page(conn: AsyncConnection, project_id: str, thread_id: str, page: PageParams) -> Page:
    await message_service.require_thread(conn, project_id, thread_id)
    return await objects.list_page(conn, runs, page, project_id=project_id, thread_id=thread_id)


async def modify(conn: AsyncConnection, project_id: str, thread_id: str, run_id: str, metadata: dict[str, str] | None
                 ) -> dict[str, Any]:
    run = await get_for_update(conn, project_id, thread_id, run_id)
    if metadata is not None:
        run["metadata"] = metadata
    await objects.save_object(conn, runs, run)
    return run


async def cancel(conn: AsyncConnection, project_id: str, thread_id: str, run_id: str, outbox: Outbox
                 ) -> dict[str, Any]:
    """Ask for cancellation: the worker executing (or next claiming) the run finishes it as cancelled."""
    run = await get_for_update(conn, project_id, thread_id, run_id)
    if run["status"] not in ("queued", "in_progress", "requires_action"):
        raise Conflict(f"Cannot cancel run with status '{run['status']}'.", param=None)
    set_run_status(run, "cancelling", required_action=None)  # no action can move it on any more
    await save_run(conn, run)
    outbox.run_id = run_id
    outbox.add("thread.run.cancelling", run)
    return run


async def submit_tool_outputs(
    conn: AsyncConnection, project_id: str, thread_id: str, run_id: str, req: SubmitToolOutputs, outbox: Outbox,
    lease: Lease | None = None,
) -> QueuedRun:
    run = await get_for_update(conn, project_id, thread_id, run_id)
    if run["status"] != "requires_action" or not run.get("required_action"):
        raise Conflict(f'Runs in status "{run["status"]}" do not accept tool outputs.')
    if run["expires_at"] is not None and ids.now() >= run["expires_at"]:  # the sweeper expires it shortly
        raise Conflict(f"Run {run_id} expired at {run['expires_at']}: it no longer accepts tool outputs.")
    pending = [c["id"] for c in run["required_action"]["submit_tool_outputs"]["tool_calls"]]
    given: dict[str, str] = {}
    for i, item in enumerate(req.tool_outputs):
        if item.tool_call_id not in pending:
            raise InvalidRequest(f"Invalid 'tool_outputs[{i}].tool_call_id': no pending tool call with id "
                                 f"'{item.tool_call_id}'.", param=f"tool_outputs[{i}].tool_call_id")
        if item.tool_call_id in given:
            raise InvalidRequest(f"Duplicate output for tool call '{item.tool_call_id}'.",
                                 param=f"tool_outputs[{i}].tool_call_id")
        given[item.tool_call_id] = item.output
    missing = [call_id for call_id in pending if call_id not in given]
    if missing:
        raise InvalidRequest(f"Expected tool outputs for call_ids {pending}, got {list(given)}.",
                             param="tool_outputs")
    step = await _pending_tool_step(conn, run_id, pending)
    for call in step["step_details"]["tool_calls"]:
        if call["id"] in given:
            call["function"]["output"] = given[call["id"]]
    set_step_status(step, "completed")
    await save_step(conn, step)
    set_run_status(run, "queued", required_action=None)
    outbox.run_id = run_id
    outbox.add("thread.run.step.completed", step)
    outbox.add("thread.run.queued", run)
    queued, columns = _take(run, lease, outbox)
    await save_run(conn, queued.stored, **columns)
    return queued


async def _pending_tool_step(conn: AsyncConnection, run_id: str, call_ids: list[str]) -> dict[str, Any]:
    stmt = (select(run_steps.c.data).where(run_steps.c.run_id == run_id, run_steps.c.status == "in_progress")
            .order_by(run_steps.c.seq.desc()))
    for (raw,) in await conn.execute(stmt):
        step: dict[str, Any] = orjson.loads(raw)
        if step["type"] == "tool_calls" and {c["id"] for c in step["step_details"]["tool_calls"]} >= set(call_ids):
            return step
    raise NotFound("run step", f"for tool calls {call_ids}")


async def get(conn: AsyncConnection, project_id: str, thread_id: str, run_id: str) -> dict[str, Any] | None:
    return await objects.get_object(conn, runs, run_id, project_id=project_id, thread_id=thread_id)
