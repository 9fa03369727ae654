"""Assistants: create, read, modify, delete, list."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from assistd import ids
from assistd.errors import NotFound
from assistd.pagination import Page, PageParams
from assistd.schemas.assistants import CreateAssistant, ModifyAssistant
from assistd.schemas.common import response_format_value, tool_dicts
from assistd.services.resources import merge_tool_resources, tool_resources_dict
from assistd.store import objects
from assistd.store.tables import assistants


async def create(conn: AsyncConnection, project_id: str, req: CreateAssistant) -> dict[str, Any]:
    obj = {
        "id": ids.new_id("assistant"),
        "object": "assistant",
        "created_at": ids.now(),
        "name": req.name,
        "description": req.description,
        "model": req.model,
        "instructions": req.instructions,
        "tools": tool_dicts(req.tools),
        "tool_resources": await tool_resources_dict(conn, project_id, req.tool_resources),
        "metadata": req.metadata or {},
        "top_p": 1.0 if req.top_p is None else req.top_p,
        "temperature": 1.0 if req.temperature is None else req.temperature,
        "reasoning_effort": req.reasoning_effort,
        "response_format": response_format_value(req.response_format),
    }
    await objects.insert_object(conn, assistants, obj, project_id=project_id)
    return obj


async def get_raw(conn: AsyncConnection, project_id: str, assistant_id: str) -> str:
    raw = await objects.get_raw(conn, assistants, assistant_id, project_id=project_id)
    if raw is None:
        raise NotFound("assistant", assistant_id)
    return raw


async def get(conn: AsyncConnection, project_id: str, assistant_id: str, *, param: str | None = None) -> dict[str, Any]:
    obj = await objects.get_object(conn, assistants, assistant_id, project_id=project_id)
    if obj is None:
        raise NotFound("assistant", assistant_id, param=param)
    return obj


async def modify(
    conn: AsyncConnection, project_id: str, assistant_id: str, req: ModifyAssistant
) -> dict[str, Any]:
    obj = await objects.get_for_update(conn, assistants, assistant_id, project_id=project_id)
    if obj is None:
        raise NotFound("assistant", assistant_id)
    given = {name for name in req.model_fields_set if getattr(req, name) is not None}
    for name in given & {"model", "name", "description", "instructions", "temperature", "top_p",
                         "reasoning_effort", "metadata"}:
        obj[name] = getattr(req, name)
    if "tools" in given:
        obj["tools"] = tool_dicts(req.tools)
    if "tool_resources" in given and req.tool_resources is not None:
        obj["tool_resources"] = await merge_tool_resources(conn, project_id, obj.get("tool_resources") or {},
                                                           req.tool_resources)
    if "response_format" in given:
        obj["response_format"] = response_format_value(req.response_format)
    await objects.save_object(conn, assistants, obj)
    return obj


async def delete(conn: AsyncConnection, project_id: str, assistant_id: str) -> dict[str, Any]:
    if not await objects.delete_object(conn, assistants, assistant_id, project_id=project_id):
        raise NotFound("assistant", assistant_id)
    return {"id": assistant_id, "object": "assistant.deleted", "deleted": True}


async def list_page(conn: AsyncConnection, project_id: str, page: PageParams) -> Page:
    return await objects.list_page(conn, assistants, page, project_id=project_id)
