"""Message rows as the run engine reads and removes them, beside what services/messages.py writes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from assistd.store import objects
from assistd.store.tables import messages


async def delete_message(conn: AsyncConnection, message_id: str) -> None:
    """Why: the message of an answer that will not be given (see store/steps.delete_step) goes with its step."""
    await objects.delete_object(conn, messages, message_id)


async def messages_by_id(conn: AsyncConnection, message_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Why: the run's own answers, read back for the model in one query (runner/context.py)."""
    found: dict[str, dict[str, Any]] = {}
    if message_ids:
        for (raw,) in await conn.execute(select(messages.c.data).where(messages.c.id.in_(message_ids))):
            message = orjson.loads(raw)
            found[message["id"]] = message
    return found


async def thread_messages(conn: AsyncConnection, thread_id: str, *, other_than_run: str, newest_first: bool,
                          limit: int) -> list[tuple[str, dict[str, Any]]]:
    """Why: what the model may be shown of the thread — its first or newest messages, (id, message), those
    of the run being executed left out (they are its own work: ``store/steps.completed_steps``)."""
    order = (messages.c.created_at.desc(), messages.c.seq.desc()) if newest_first else (
        messages.c.created_at.asc(), messages.c.seq.asc())
    stmt = (select(messages.c.id, messages.c.data)
            .where(messages.c.thread_id == thread_id,
                   (messages.c.run_id != other_than_run) | messages.c.run_id.is_(None))
            .order_by(*order).limit(limit))
    return [(message_id, orjson.loads(raw)) for message_id, raw in await conn.execute(stmt)]


async def thread_messages_mentioning(conn: AsyncConnection, project_id: str, thread_id: str, text: str
                                     ) -> list[dict[str, Any]]:
    """Why: a thread's messages whose stored JSON contains ``text`` (a tool's name in their attachments),
    oldest first, without decoding the rest; callers check the decoded message."""
    rows = await conn.execute(select(messages.c.data).where(
        messages.c.thread_id == thread_id, messages.c.project_id == project_id,
        messages.c.data.contains(text)).order_by(messages.c.created_at, messages.c.seq))
    return [orjson.loads(raw) for (raw,) in rows]
