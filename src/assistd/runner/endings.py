"""How a run ends when it does not simply answer: cancelled, expired, failed, incomplete — every open
step and message closed with it, in the caller's transaction.

Plain functions: the executor calls them with what its attempt holds in memory (``Live``: the answer
being streamed, the tool calls streamed so far), the sweeper (runner/sweeper.py) with nothing, for a run
nobody executes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from assistd import ids
from assistd.services import citations
from assistd.services import messages as message_service
from assistd.services.outbox import Outbox
from assistd.services.run_objects import set_run_status, set_step_status, sum_usage
from assistd.services.runs import list_run_steps, save_run, save_step
from assistd.services.step_render import shown
from assistd.store import objects
from assistd.store.tables import messages

# A run's final status → what its open steps become, and why its open message stops.
_OPEN_WORK_ENDS = {
    "cancelled": ("cancelled", "run_cancelled"),
    "expired": ("expired", "run_expired"),
    "failed": ("failed", "run_failed"),
    "incomplete": ("cancelled", "max_tokens"),
}

CloseMessage = Callable[[dict[str, Any], str, "str | None"], Any]


def close_message(message: dict[str, Any], status: str, reason: str | None, *, text: str = "",
                  take_images: Callable[[], list[dict[str, Any]]] = list,
                  annotate: Callable[[str], list[dict[str, Any]]] = lambda text: [],
                  ) -> list[dict[str, Any]]:
    """Store the answer (``text``, and the images not yet shown when it has none) in ``message`` and close
    it; returns its annotations (``annotate``: a text's, see services/citations.py) as delta parts."""
    images = [p for p in message["content"] if p["type"] == "image_file"] or take_images()
    if text or not message["content"] or len(images) == len(message["content"]):
        message["content"] = images + ([message_service.text_content(text)] if text or not images else [])
    annotations = citations.apply(message, annotate)
    message["status"] = status
    now = ids.now()
    if status == "completed":
        message["completed_at"] = now
    else:
        message["incomplete_at"] = now
        message["incomplete_details"] = {"reason": reason} if reason else None
    return annotations


@dataclass
class Live:
    """What the attempt executing a run holds and has not stored: the answer being streamed (closed with
    what was said so far) and, per open tool step, its calls as streamed or executed so far."""

    message: dict[str, Any] | None = None
    close_message: CloseMessage = close_message
    tool_calls: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


async def close_open_work(conn: AsyncConnection, run_id: str, outbox: Outbox, step_status: str, message_reason: str,
                          last_error: dict[str, Any] | None = None, live: Live | None = None) -> list[dict[str, Any]]:
    """Close every in-progress step and message of the run; returns all its steps."""
    live = live or Live()
    steps = await list_run_steps(conn, run_id)
    for step in steps:
        if step["status"] != "in_progress":
            continue
        if step["type"] == "message_creation":
            message_id = step["step_details"]["message_creation"]["message_id"]
            message = (live.message if live.message and live.message["id"] == message_id
                       else await objects.get_object(conn, messages, message_id))
            if message is not None and message["status"] == "in_progress":
                live.close_message(message, "incomplete", message_reason)
                await objects.save_object(conn, messages, message)
                outbox.add("thread.message.incomplete", message)
        elif step["id"] in live.tool_calls:
            step["step_details"]["tool_calls"] = live.tool_calls[step["id"]]
        set_step_status(step, step_status, last_error=last_error if step_status == "failed" else None)
        await save_step(conn, step)
        outbox.add(f"thread.run.step.{step_status}", shown(step))
    return steps


async def end_run(conn: AsyncConnection, run: dict[str, Any], outbox: Outbox, status: str, *,
                  live: Live | None = None, error: tuple[str, str] | None = None,
                  incomplete_reason: str | None = None) -> None:
    """End ``run`` (locked by the caller) as ``status``, its open work closed; ``error``: (code, message)
    of a failure; ``incomplete_reason``: which limit made it incomplete."""
    step_status, message_reason = _OPEN_WORK_ENDS[status]
    fields: dict[str, Any] = {}
    step_error = None
    if error is not None:
        code, message = error
        step_error = {"code": code if code != "invalid_prompt" else "server_error", "message": message}
        fields["last_error"] = {"code": code, "message": message}
    if incomplete_reason is not None:
        fields["incomplete_details"] = {"reason": incomplete_reason}
    steps = await close_open_work(conn, run["id"], outbox, step_status, message_reason, step_error, live)
    set_run_status(run, status, **fields, usage=sum_usage(steps))
    await save_run(conn, run, lease_owner=None, lease_expires_at=None)
    outbox.add(f"thread.run.{status}", run)


async def end_overdue(conn: AsyncConnection, run: dict[str, Any], outbox: Outbox) -> None:
    """A run past expires_at that nobody executes (runner/sweeper.py): cancelled when its cancel was
    asked, else expired."""
    await end_run(conn, run, outbox, "cancelled" if run["status"] == "cancelling" else "expired")
