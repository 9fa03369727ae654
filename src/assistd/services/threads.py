"""Threads: create (with messages and tool resources), read, modify, delete (cascading)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from assistd import ids
from assistd.errors import NotFound
from assistd.schemas.threads import CreateThread, ModifyThread
from assistd.services import messages as message_service
from assistd.services import run_slots
from assistd.services.resources import merge_tool_resources, tool_resources_dict
from assistd.store import objects
from assistd.store.tables import messages, run_steps, runs, threads

# Tables whose rows belong to a thread and go with it.
THREAD_CHILDREN = [messages, runs, run_steps]


async def create(conn: AsyncConnection, project_id: str, req: CreateThread) -> dict[str, Any]:
    return (await create_with_messages(conn, project_id, req))[0]


async def create_with_messages(
    conn: AsyncConnection, project_id: str, req: CreateThread, *, param: str = "",
    resources_param: str = "tool_resources",
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The new thread and its messages, oldest first. ``param``: where the thread sits in the request
    (``thread.`` in create-thread-and-run), ``resources_param`` where its tool_resources came from, for
    errors."""
    obj: dict[str, Any] = {
        "id": ids.new_id("thread"),
        "object": "thread",
        "created_at": ids.now(),
        "metadata": req.metadata or {},
        "tool_resources": await tool_resources_dict(conn, project_id, req.tool_resources, for_thread=True,
                                                    param=resources_param),
    }
    await objects.insert_object(conn, threads, obj, project_id=project_id)
    messages = []
    for i, message in enumerate(req.messages or []):
        # Attachments for file_search go to the thread's vector store (made on the first): obj follows.
        messages.append(await message_service.add_user_message(conn, project_id, obj["id"], message, thread=obj,
                                                               param=f"{param}messages[{i}].attachments"))
    return obj, messages


async def get_raw(conn: AsyncConnection, project_id: str, thread_id: str) -> str:
    raw = await objects.get_raw(conn, threads, thread_id, project_id=project_id)
    if raw is None:
        raise NotFound("thread", thread_id)
    return raw


async def get(conn: AsyncConnection, project_id: str, thread_id: str) -> dict[str, Any]:
    obj = await objects.get_object(conn, threads, thread_id, project_id=project_id)
    if obj is None:
        raise NotFound("thread", thread_id)
    return obj


async def modify(conn: AsyncConnection, project_id: str, thread_id: str, req: ModifyThread) -> dict[str, Any]:
    obj = await objects.get_for_update(conn, threads, thread_id, project_id=project_id)
    if obj is None:
        raise NotFound("thread", thread_id)
    if req.metadata is not None:
        obj["metadata"] = req.metadata
    if req.tool_resources is not None:
        obj["tool_resources"] = await merge_tool_resources(conn, project_id, obj.get("tool_resources") or {},
                                                           req.tool_resources, for_thread=True)
    await objects.save_object(conn, threads, obj)
    return obj


async def delete(conn: AsyncConnection, project_id: str, thread_id: str) -> dict[str, Any]:
    if not await objects.delete_object(conn, threads, thread_id, project_id=project_id):
        raise NotFound("thread", thread_id)
    await run_slots.give_back_thread(conn, project_id, thread_id)
    for table in THREAD_CHILDREN:
        await objects.delete_where(conn, table, project_id=project_id, thread_id=thread_id)
    return {"id": thread_id, "object": "thread.deleted", "deleted": True}
