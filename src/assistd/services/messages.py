"""Messages of a thread: create (from a string or content parts), read, modify, delete, list."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from assistd import ids
from assistd.errors import InvalidRequest, NotFound
from assistd.pagination import Page, PageParams
from assistd.schemas.messages import CreateMessage, ModifyMessage
from assistd.services import files as file_service
from assistd.services.run_objects import ACTIVE_STATUSES
from assistd.store import objects
from assistd.store.tables import messages, runs, threads


def text_content(value: str) -> dict[str, Any]:
    return {"type": "text", "text": {"value": value, "annotations": []}}


def content_parts(content: str | list[Any]) -> list[dict[str, Any]]:
    """Request content (string or parts) → stored MessageObject content."""
    if isinstance(content, str):
        return [text_content(content)]
    parts: list[dict[str, Any]] = []
    for part in content:
        if part.type == "text":
            parts.append(text_content(part.text))
        elif part.type == "image_file":
            parts.append({"type": "image_file", "image_file": {
                "file_id": part.image_file.file_id, "detail": part.image_file.detail or "auto"}})
        else:
            parts.append({"type": "image_url", "image_url": {
                "url": part.image_url.url, "detail": part.image_url.detail or "auto"}})
    return parts


def new_message(
    thread_id: str,
    role: str,
    content: list[dict[str, Any]],
    *,
    status: str = "completed",
    assistant_id: str | None = None,
    run_id: str | None = None,
    attachments: list[dict[str, Any]] | None = None,
    metadata: dict[str, str] | None = None,
    created_at: int | None = None,
) -> dict[str, Any]:
    created = created_at or ids.now()
    return {
        "id": ids.new_id("message"),
        "object": "thread.message",
        "created_at": created,
        "assistant_id": assistant_id,
        "thread_id": thread_id,
        "run_id": run_id,
        "role": role,
        "content": content,
        "attachments": attachments or [],
        "metadata": metadata or {},
        "status": status,
        "incomplete_details": None,
        "completed_at": created if status == "completed" else None,
        "incomplete_at": None,
    }


async def insert(conn: AsyncConnection, project_id: str, message: dict[str, Any]) -> None:
    await objects.insert_object(
        conn, messages, message, project_id=project_id,
        thread_id=message["thread_id"], run_id=message["run_id"],
    )


async def add_user_message(
    conn: AsyncConnection, project_id: str, thread_id: str, req: CreateMessage, *,
    thread: dict[str, Any] | None = None, param: str = "attachments",
) -> dict[str, Any]:
    """Store a message from a request body (thread create, message create, additional_messages).

    ``thread``: the thread's object when the caller holds it (just created, or locked): a vector store made
    for the attachments is recorded in it (and saved), so the caller sees it. ``param`` names the
    attachments in errors."""
    attachments = [a.model_dump(exclude_none=True) for a in req.attachments or []]
    if not isinstance(req.content, str):
        # Checked now, not when a run reads the message: a run must not fail later on a bad reference.
        images = {i: p.image_file.file_id for i, p in enumerate(req.content) if p.type == "image_file"}
        if images:
            found = await file_service.find_files(conn, project_id, list(images.values()))
            for i, file_id in images.items():
                if file_id not in found:
                    content = param.removesuffix("attachments") + "content"
                    raise NotFound("file", file_id, param=f"{content}[{i}].image_file.file_id")
    if attachments:
        # Every attachment names a file of this project, whatever its tools (none at all included): the
        # message shows it, and files for code_interpreter are put in the thread's /mnt/data when its code
        # runs (tools/code_tool.py).
        await file_service.require_files(conn, project_id, list(dict.fromkeys(a["file_id"] for a in attachments)),
                                         param)
        await attach_for_file_search(conn, project_id, thread_id, attachments, thread=thread, param=param)
    message = new_message(
        thread_id,
        req.role,
        content_parts(req.content),
        attachments=attachments,
        metadata=req.metadata,
    )
    await insert(conn, project_id, message)
    return message


async def attach_for_file_search(
    conn: AsyncConnection, project_id: str, thread_id: str, attachments: list[dict[str, Any]], *,
    thread: dict[str, Any] | None = None, param: str = "attachments",
) -> str | None:
    """Files attached for ``file_search`` join the thread's vector store — made now (expiring 7 days after
    its last activity, like the hosted API's) when the thread has none, and recorded in the thread's
    ``tool_resources``. Returns the store's id (None: no such attachment). Attachments for
    code_interpreter are only kept on the message here."""
    file_ids = list(dict.fromkeys(a["file_id"] for a in attachments
                                  if any(t.get("type") == "file_search" for t in a.get("tools") or [])))
    if not file_ids:
        return None
    from assistd.services import vector_stores
    from assistd.services.resources import THREAD_STORE_EXPIRY

    await file_service.require_files(conn, project_id, file_ids, param)
    if thread is None:
        thread = await objects.get_for_update(conn, threads, thread_id, project_id=project_id)
        if thread is None:
            raise NotFound("thread", thread_id)
    resources = thread.get("tool_resources") or {}
    store_ids = list((resources.get("file_search") or {}).get("vector_store_ids") or [])
    if store_ids and await _usable_store(conn, project_id, store_ids[0]):
        await vector_stores.attach_files(conn, project_id, store_ids[0], file_ids, param=param)
        current: str = store_ids[0]
        return current
    # None yet, or the thread's store was deleted or expired since: a new one takes its place.
    store = await vector_stores.create_store(conn, project_id, file_ids=file_ids,
                                             expires_after=dict(THREAD_STORE_EXPIRY))
    thread["tool_resources"] = {**resources, "file_search": {"vector_store_ids": [store["id"]]}}
    await objects.save_object(conn, threads, thread)
    new_id: str = store["id"]
    return new_id


async def _usable_store(conn: AsyncConnection, project_id: str, store_id: str) -> bool:
    from assistd.services import vector_stores

    try:
        [store] = await vector_stores.require_stores(conn, project_id, [store_id])
    except NotFound:
        return False
    return bool(store["status"] != "expired")


async def require_thread(conn: AsyncConnection, project_id: str, thread_id: str) -> None:
    if await objects.get_raw(conn, threads, thread_id, project_id=project_id) is None:
        raise NotFound("thread", thread_id)


async def create(
    conn: AsyncConnection, project_id: str, thread_id: str, req: CreateMessage
) -> dict[str, Any]:
    await require_thread(conn, project_id, thread_id)
    # The hosted API refused a new message while a run worked on the thread: the run's prompt and the
    # thread would disagree about what was said.
    active = (await conn.execute(
        select(runs.c.id).where(runs.c.thread_id == thread_id, runs.c.status.in_(ACTIVE_STATUSES)).limit(1)
    )).scalar_one_or_none()
    if active is not None:
        raise InvalidRequest(f"Can't add messages to {thread_id} while a run {active} is active.")
    return await add_user_message(conn, project_id, thread_id, req)


async def get_raw(conn: AsyncConnection, project_id: str, thread_id: str, message_id: str) -> str:
    raw = await objects.get_raw(conn, messages, message_id, project_id=project_id, thread_id=thread_id)
    if raw is None:
        await require_thread(conn, project_id, thread_id)
        raise NotFound("message", message_id)
    return raw


async def modify(
    conn: AsyncConnection, project_id: str, thread_id: str, message_id: str, req: ModifyMessage
) -> dict[str, Any]:
    obj = await objects.get_for_update(conn, messages, message_id, project_id=project_id, thread_id=thread_id)
    if obj is None:
        await require_thread(conn, project_id, thread_id)
        raise NotFound("message", message_id)
    if req.metadata is not None:
        obj["metadata"] = req.metadata
    await objects.save_object(conn, messages, obj)
    return obj


async def delete(conn: AsyncConnection, project_id: str, thread_id: str, message_id: str) -> dict[str, Any]:
    if not await objects.delete_object(conn, messages, message_id, project_id=project_id, thread_id=thread_id):
        await require_thread(conn, project_id, thread_id)
        raise NotFound("message", message_id)
    return {"id": message_id, "object": "thread.message.deleted", "deleted": True}


async def list_page(
    conn: AsyncConnection, project_id: str, thread_id: str, page: PageParams, run_id: str | None = None
) -> Page:
    await require_thread(conn, project_id, thread_id)
    if run_id and not objects.storable(run_id):
        return Page(items=[], first_id=None, last_id=None, has_more=False)
    filters = [messages.c.run_id == run_id] if run_id else []
    return await objects.list_page(
        conn, messages, page, filters=filters, project_id=project_id, thread_id=thread_id
    )
