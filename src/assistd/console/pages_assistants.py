"""Assistants: the list, and the create/edit form (it saves through the API: see static/assistant_form.js)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from assistd.console.paging import nav_links, page_items, page_params
from assistd.console.web import Member, page, render
from assistd.services import assistants as assistant_service

router = APIRouter()

NEW: dict[str, Any] = {"id": None, "model": "gpt-4o-mini", "name": "", "instructions": "", "tools": [],
                       "tool_resources": {}, "temperature": None, "top_p": None, "response_format": "auto",
                       "metadata": {}}


@router.get("/assistants")
@page
async def assistants_page(request: Request, who: Member) -> Response:
    params = page_params(request)
    async with request.app.state.db.read() as conn:
        result = await assistant_service.list_page(conn, who.project_id, params)
    older, newer = nav_links(request, params, result)
    return render(request, who, "assistants.html", assistants=page_items(result),
                  older=older, newer=newer, nav="assistants")


def _form(request: Request, who: Member, assistant: dict) -> Response:
    tools = assistant.get("tools") or []
    resources = assistant.get("tool_resources") or {}
    fmt = assistant.get("response_format") or "auto"
    return render(
        request, who, "assistant_form.html", a=assistant, nav="assistants",
        functions=[t["function"] for t in tools if t.get("type") == "function"],
        has_code=any(t.get("type") == "code_interpreter" for t in tools),
        has_search=any(t.get("type") == "file_search" for t in tools),
        vector_store_ids=", ".join((resources.get("file_search") or {}).get("vector_store_ids") or []),
        code_file_ids=", ".join((resources.get("code_interpreter") or {}).get("file_ids") or []),
        format_type=fmt if isinstance(fmt, str) else fmt.get("type", "auto"),
        json_schema=orjson.dumps(fmt.get("json_schema"), option=orjson.OPT_INDENT_2).decode()
        if isinstance(fmt, dict) and fmt.get("json_schema") else "",
        metadata=orjson.dumps(assistant.get("metadata") or {}, option=orjson.OPT_INDENT_2).decode(),
        to_json=lambda v: orjson.dumps(v, option=orjson.OPT_INDENT_2).decode())


@router.get("/assistants/new")
@page
async def new_assistant(request: Request, who: Member) -> Response:
    return _form(request, who, dict(NEW))


@router.get("/assistants/{assistant_id}")
@page
async def edit_assistant(request: Request, who: Member, assistant_id: str) -> Response:
    async with request.app.state.db.read() as conn:
        assistant = await assistant_service.get(conn, who.project_id, assistant_id)
    return _form(request, who, assistant)
