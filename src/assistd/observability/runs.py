"""The run engine's instrumentation, as a handful of one-line calls (the only place it is defined).

The runner calls ``executing`` / ``execution_ended`` around one execution of a run, ``first_token`` on each
text delta (only the first counts), and ``leases_reclaimed`` when it claims runs a dead worker left.
Status changes call ``run_status_changed`` / ``step_created`` / ``step_status_changed`` (services/
run_objects.py, the one place every transition passes), so runs ended by the sweeper or the API are
counted too. Nothing here touches the database or can raise into the engine.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

from assistd.observability import context, metrics, tracing

log = logging.getLogger("assistd.observability")

_TERMINAL = frozenset(("cancelled", "failed", "completed", "incomplete", "expired"))
# Every table below is emptied as runs and steps end here; this bound is for entries of runs another process
# carries on with (an API-only serve queues runs that workers start), dropped oldest first.
_MAX_TRACKED = 10_000


class _Execution:
    __slots__ = ("project", "model", "started", "first_token", "span", "token", "status", "steps")

    def __init__(self, project: str, model: str) -> None:
        self.project = project
        self.model = model
        self.started = time.perf_counter()
        self.first_token = False
        self.span: Any = None
        self.token: Any = None
        self.status: str | None = None
        self.steps: list[str] = []  # steps created in this execution: their start is forgotten when it ends


_executions: dict[str, _Execution] = {}
_step_started: dict[str, float] = {}
_projects: dict[str, str] = {}  # run id → project, for runs this process created or executes
_queued_at: dict[str, float] = {}  # run id → when this process queued it (wall clock: another may take it)
_ended: set[str] = set()  # runs given a final status, not yet saved (save_run records their usage)


def _bounded(table: dict[str, Any]) -> None:
    while len(table) > _MAX_TRACKED:  # insertion order: the oldest first, one at a time (no copy of the keys)
        del table[next(iter(table))]


def remember_project(run_id: str, project_id: str) -> None:
    _projects[run_id] = project_id
    _bounded(_projects)


def run_queued(run: dict[str, Any], project_id: str) -> None:
    """A run was created (queued) by this process."""
    _queued_at[run["id"]] = time.time()
    _bounded(_queued_at)
    remember_project(run["id"], project_id)


async def executing(db: Any, run: dict[str, Any], project_id: str) -> None:
    """One execution of the run begins in this task: log ids, the clock of its first token, and (traces on)
    its ``invoke_agent`` span, a child of the request that created the run, whichever process that was."""
    try:
        context.bind(project=project_id, thread_id=run.get("thread_id"), run_id=run.get("id"))
        execution = _Execution(project_id, metrics.model_label(str(run.get("model") or "")))
        _executions[run["id"]] = execution
        _bounded(_executions)
        remember_project(run["id"], project_id)
        if tracing.TRACER is not None:
            parent = await _trace_parent(db, run["id"])
            execution.span = tracing.start_span(f"invoke_agent {run.get('assistant_id')}", parent=parent, attributes={
                "gen_ai.operation.name": "invoke_agent", "gen_ai.provider.name": "openai",
                "gen_ai.agent.id": run.get("assistant_id") or "", "gen_ai.conversation.id": run.get("thread_id") or "",
                "gen_ai.request.model": str(run.get("model") or ""), "assistd.run_id": run["id"],
                "assistd.project_id": project_id})
            execution.token = tracing.attach(execution.span)
    except Exception:  # instrumentation never breaks a run
        log.debug("run instrumentation failed", exc_info=True)


async def _trace_parent(db: Any, run_id: str) -> Any:
    from sqlalchemy import select

    from assistd.store.tables import runs

    async with db.read() as conn:
        traceparent = (await conn.execute(select(runs.c.trace_context).where(runs.c.id == run_id))).scalar()
    return tracing.extract({"traceparent": traceparent}) if traceparent else None


_marks: dict[str, dict[str, int]] = {}  # run id → millisecond times noted, not yet saved (save_run writes them)


def _mark(run_id: str, name: str) -> None:
    marks = _marks.get(run_id)
    if marks is None:
        marks = _marks[run_id] = {}
        _bounded(_marks)
    marks.setdefault(name, int(time.time() * 1000))


def first_output(run_id: str) -> None:
    """The model's first output of the run (text or a tool call), in memory only: saved with the run's next
    write (services/runs.save_run), never in a transaction of its own on the time-to-first-token path."""
    marks = _marks.get(run_id)
    if marks is None or "first_token_ms" not in marks:
        _mark(run_id, "first_token_ms")


def take_marks(run_id: str) -> dict[str, int]:
    """The run's millisecond times noted since its last save: ``started_ms``, ``first_token_ms``, ``ended_ms``."""
    return _marks.pop(run_id, None) or {}


def first_token(run_id: str) -> None:
    execution = _executions.get(run_id)
    if execution is None or execution.first_token:
        return
    execution.first_token = True
    if metrics.ENABLED:
        metrics.run_ttft.labels(execution.model).observe(time.perf_counter() - execution.started)


def execution_ended(run_id: str) -> None:
    """The execution is over: what this process noted for it goes (a run waiting on the client, or left for
    another worker, is remembered again by ``executing`` if it comes back here)."""
    _projects.pop(run_id, None)
    execution = _executions.pop(run_id, None)
    if execution is None:
        return
    for step_id in execution.steps:  # steps left open (a tool_calls step the client's outputs complete)
        _step_started.pop(step_id, None)
    if execution.span is not None:
        try:
            execution.span.set_attribute("assistd.run_status", execution.status or "")
            tracing.detach(execution.token)
            tracing.end(execution.span, error=execution.status if execution.status == "failed" else None)
        except Exception:
            log.debug("run instrumentation failed", exc_info=True)


@contextlib.contextmanager
def tool_call(tool: str, call_id: str | None = None) -> Iterator[None]:
    """A server-side tool's execution: ``assistd_execute_tool_duration_seconds`` and an ``execute_tool`` span."""
    span = None
    if tracing.TRACER is not None:
        span = tracing.start_span(f"execute_tool {tool}", attributes={
            "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool, "gen_ai.tool.type": "extension",
            **({"gen_ai.tool.call.id": call_id} if call_id else {})})
    started = time.perf_counter()
    outcome = "ok"
    try:
        yield
    except BaseException as exc:
        outcome = "error"
        if span is not None:
            tracing.end(span, error=type(exc).__name__)
            span = None
        raise
    finally:
        tool_executed(tool, time.perf_counter() - started, outcome)
        if span is not None:
            tracing.end(span)


def leases_reclaimed(count: int) -> None:
    if count and metrics.ENABLED:
        metrics.lease_reclaims.inc(count)


def run_status_changed(run: dict[str, Any], previous: str | None, first_start: bool) -> None:
    """Every run transition: queue waits end on queued → in_progress; a final status is counted once."""
    run_id = run.get("id", "")
    status = run.get("status")
    started = previous == "queued" and status == "in_progress"
    ending = status in _TERMINAL and previous not in _TERMINAL
    if status == "in_progress" and first_start:
        _mark(run_id, "started_ms")
    elif ending:
        _mark(run_id, "ended_ms")
    if status == "queued" and previous != "queued":
        _queued_at[run_id] = time.time()  # put back in the queue (tool outputs submitted)
        _bounded(_queued_at)
        return
    if ending:
        if len(_ended) > _MAX_TRACKED:  # ended copies never saved (none today) must not pile up
            _ended.clear()
        _ended.add(run_id)
    execution = _executions.get(run_id)
    if execution is not None:
        execution.status = status
    # What this process noted of the run's wait and project is used now or never: taken whether or not
    # metrics are on.
    since = _queued_at.pop(run_id, None) if started or ending else None
    project = _projects.pop(run_id, "") if ending else ""
    if not metrics.ENABLED:
        return
    try:
        model = metrics.model_label(str(run.get("model") or ""))
        if started:
            if since is None and first_start:  # queued by another process: its second-resolution stamp
                since = run.get("created_at")
            if since is not None:
                metrics.run_queue_wait.labels(model).observe(max(0.0, time.time() - float(since)))
            return
        if not ending:
            return
        metrics.runs_ended.labels(status, model).inc()
        created = run.get("created_at")
        if created is not None:
            metrics.run_duration.labels(model, status).observe(max(0.0, time.time() - float(created)))
        used = run.get("usage") or {}
        project = project if metrics.PROJECT_LABEL else ""
        if used.get("prompt_tokens"):
            metrics.prompt_tokens.labels(model, project).inc(used["prompt_tokens"])
        if used.get("completion_tokens"):
            metrics.completion_tokens.labels(model, project).inc(used["completion_tokens"])
    except Exception:
        log.debug("run instrumentation failed", exc_info=True)


def take_ended(run_id: str) -> bool:
    """True once for a run that reached its final status since it was last saved (services/runs.py)."""
    if run_id in _ended:
        _ended.discard(run_id)
        return True
    return False


def step_created(step: dict[str, Any]) -> None:
    _step_started[step["id"]] = time.perf_counter()
    _bounded(_step_started)
    execution = _executions.get(step.get("run_id") or "")
    if execution is not None:
        execution.steps.append(step["id"])


def step_status_changed(step: dict[str, Any]) -> None:
    if step.get("status") == "in_progress":
        return
    started = _step_started.pop(step.get("id", ""), None)
    if not metrics.ENABLED:
        return
    try:
        seconds = (time.perf_counter() - started if started is not None
                   else max(0.0, time.time() - float(step.get("created_at") or time.time())))
        step_type = str(step.get("type") or "")
        details = step.get("step_details") or {}
        tools = sorted({call.get("type", "") for call in details.get("tool_calls") or ()})
        metrics.step_duration.labels(step_type, ",".join(tools)).observe(seconds)
    except Exception:
        log.debug("step instrumentation failed", exc_info=True)


def tool_executed(tool: str, seconds: float, outcome: str) -> None:
    """A server-side tool call (file_search, code_interpreter): its duration and how it ended."""
    if metrics.ENABLED:
        metrics.tool_duration.labels(tool, outcome).observe(seconds)
