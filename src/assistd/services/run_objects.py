"""Run and run-step objects as the spec shapes them, and the transitions between their statuses.

Pure functions on dicts: the run executor and the API both use them, and storage only ever sees the result.
"""

from __future__ import annotations

from typing import Any

from assistd import ids
from assistd.observability import runs as observe_runs

RUN_TTL_SECONDS = 600
ACTIVE_STATUSES = ("queued", "in_progress", "requires_action", "cancelling")
TERMINAL_STATUSES = ("cancelled", "failed", "completed", "incomplete", "expired")
STEP_TERMINAL = ("cancelled", "failed", "completed", "expired")
_STAMP = {"cancelled": "cancelled_at", "failed": "failed_at", "completed": "completed_at",
          "expired": "expired_at", "incomplete": "incomplete_at"}


def new_step(run: dict[str, Any], step_type: str, details: dict[str, Any]) -> dict[str, Any]:
    step = {
        "id": ids.new_id("step"),
        "object": "thread.run.step",
        "created_at": ids.now(),
        "run_id": run["id"],
        "assistant_id": run["assistant_id"],
        "thread_id": run["thread_id"],
        "type": step_type,
        "status": "in_progress",
        "cancelled_at": None,
        "completed_at": None,
        "expired_at": None,
        "failed_at": None,
        "last_error": None,
        "step_details": details,
        "usage": None,
        "metadata": {},
    }
    observe_runs.step_created(step)
    return step


def set_run_status(run: dict[str, Any], status: str, **fields: Any) -> dict[str, Any]:
    """Move a run to ``status``, stamping the matching ``*_at`` and clearing ``expires_at`` when final."""
    previous = run.get("status")
    first_start = run.get("started_at") is None
    run["status"] = status
    now = ids.now()
    if status == "in_progress" and first_start:
        run["started_at"] = now
    if status in ("cancelled", "failed", "completed", "expired"):
        stamp = _STAMP[status]
        if stamp in run and run[stamp] is None:
            run[stamp] = now
    if status in TERMINAL_STATUSES:
        run["expires_at"] = None
        run["required_action"] = None
    run.update(fields)
    observe_runs.run_status_changed(run, previous, first_start)
    return run


def set_step_status(step: dict[str, Any], status: str, **fields: Any) -> dict[str, Any]:
    step["status"] = status
    if status in STEP_TERMINAL:
        step[_STAMP[status]] = ids.now()
    step.update(fields)
    if status in STEP_TERMINAL:
        observe_runs.step_status_changed(step)
    return step


def usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def sum_usage(steps: list[dict[str, Any]]) -> dict[str, int]:
    prompt = sum((s.get("usage") or {}).get("prompt_tokens", 0) for s in steps)
    completion = sum((s.get("usage") or {}).get("completion_tokens", 0) for s in steps)
    return usage(prompt, completion)


def message_delta(message_id: str, index: int, text: str) -> dict[str, Any]:
    return {
        "id": message_id,
        "object": "thread.message.delta",
        "delta": {"content": [{"index": index, "type": "text", "text": {"value": text, "annotations": []}}]},
    }


def tool_call_delta(step_id: str, index: int, call: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": step_id,
        "object": "thread.run.step.delta",
        "delta": {"step_details": {"type": "tool_calls", "tool_calls": [{"index": index, **call}]}},
    }
