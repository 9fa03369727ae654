"""The run engine's instrumentation, as a handful of one-line calls (the only place it is defined).

The runner calls ``executing`` / ``execution_ended`` around one execution of a run, ``first_token`` on each
text delta (only the first counts), and ``leases_reclaimed`` when it claims runs a dead worker left.
Status changes call ``run_status_changed`` / ``step_created`` / ``step_status_changed`` (services/
run_objects.py, the one place every transition passes), so runs ended by the sweeper or the API are
counted too. Nothing here touches the database or can raise into the engine.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from assistd.observability import context, metrics

log = logging.getLogger("assistd.observability")

_TERMINAL = frozenset(("cancelled", "failed", "completed", "incomplete", "expired"))
_MAX_TRACKED = 10_000  # bounded: entries of runs/steps another process finishes are dropped oldest first


class _Execution:
    __slots__ = ("project", "model", "started", "first_token")

    def __init__(self, project: str, model: str) -> None:
        self.project = project
        self.model = model
        self.started = time.perf_counter()
        self.first_token = False


_executions: dict[str, _Execution] = {}
_step_started: dict[str, float] = {}
_projects: dict[str, str] = {}  # run id → project, for runs this process created or executes
_queued_at: dict[str, float] = {}  # run id → when this process queued it (wall clock: another may take it)
_ended: set[str] = set()  # runs given a final status, not yet saved (save_run records their usage)


def _bounded(table: dict[str, Any]) -> None:
    if len(table) > _MAX_TRACKED:
        for key in list(table)[: len(table) - _MAX_TRACKED]:
            table.pop(key, None)


def remember_project(run_id: str, project_id: str) -> None:
    _projects[run_id] = project_id
    _bounded(_projects)


def run_queued(run: dict[str, Any], project_id: str) -> None:
    """A run was created (queued) by this process."""
    _queued_at[run["id"]] = time.time()
    _bounded(_queued_at)
    remember_project(run["id"], project_id)


def executing(run: dict[str, Any], project_id: str) -> None:
    """One execution of the run begins in this task: log ids and the clock of its first token."""
    try:
        context.bind(project=project_id, thread_id=run.get("thread_id"), run_id=run.get("id"))
        _executions[run["id"]] = _Execution(project_id, metrics.model_label(str(run.get("model") or "")))
        _bounded(_executions)
        remember_project(run["id"], project_id)
    except Exception:  # instrumentation never breaks a run
        log.debug("run instrumentation failed", exc_info=True)


def first_token(run_id: str) -> None:
    execution = _executions.get(run_id)
    if execution is None or execution.first_token:
        return
    execution.first_token = True
    if metrics.ENABLED:
        metrics.run_ttft.labels(execution.model).observe(time.perf_counter() - execution.started)


def execution_ended(run_id: str) -> None:
    _executions.pop(run_id, None)


def leases_reclaimed(count: int) -> None:
    if count and metrics.ENABLED:
        metrics.lease_reclaims.inc(count)


def run_status_changed(run: dict[str, Any], previous: str | None, first_start: bool) -> None:
    """Every run transition: queue waits end on queued → in_progress; a final status is counted once."""
    status = run.get("status")
    if status == "queued" and previous != "queued":
        _queued_at[run["id"]] = time.time()  # put back in the queue (tool outputs submitted)
        return
    if status in _TERMINAL and previous not in _TERMINAL:
        _ended.add(run["id"])
    if not metrics.ENABLED:
        return
    try:
        model = metrics.model_label(str(run.get("model") or ""))
        if previous == "queued" and status == "in_progress":
            since = _queued_at.pop(run["id"], None)
            if since is None and first_start:  # queued by another process: its second-resolution stamp
                since = run.get("created_at")
            if since is not None:
                metrics.run_queue_wait.labels(model).observe(max(0.0, time.time() - float(since)))
            return
        if status not in _TERMINAL or previous in _TERMINAL:
            return
        metrics.runs_ended.labels(status, model).inc()
        created = run.get("created_at")
        if created is not None:
            metrics.run_duration.labels(model, status).observe(max(0.0, time.time() - float(created)))
        used = run.get("usage") or {}
        project = _projects.pop(run["id"], "") if metrics.PROJECT_LABEL else ""
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


def step_status_changed(step: dict[str, Any]) -> None:
    if step.get("status") == "in_progress" or not metrics.ENABLED:
        return
    started = _step_started.pop(step.get("id", ""), None)
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
