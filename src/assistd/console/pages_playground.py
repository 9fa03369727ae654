"""The Playground: pick an assistant, chat in a new or an existing thread. The page is rendered here; the
chat itself streams through the API (static/playground.js → /console/api/v1, relay.py)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from assistd.console import views
from assistd.console.paging import page_items
from assistd.console.web import Member, page, render
from assistd.pagination import PageParams
from assistd.services import assistants as assistant_service
from assistd.services import messages as message_service
from assistd.services import threads as thread_service

router = APIRouter()

HISTORY = 30


@router.get("/playground")
@page
async def playground(request: Request, who: Member) -> Response:
    q = request.query_params
    thread_id = (q.get("thread_id") or "").strip() or None
    async with request.app.state.db.read() as conn:
        assistants = page_items(await assistant_service.list_page(conn, who.project_id, PageParams(limit=100)))
        messages: list[dict] = []
        if thread_id:
            await thread_service.get(conn, who.project_id, thread_id)  # 404 page for an unknown thread
            page_obj = await message_service.list_page(conn, who.project_id, thread_id, PageParams(limit=HISTORY))
            messages = list(reversed(page_items(page_obj)))
    chosen = q.get("assistant_id") or (assistants[0]["id"] if assistants else "")
    return render(request, who, "playground.html", assistants=assistants, chosen=chosen, thread_id=thread_id,
                  messages=messages, segments=views.text_segments, safe_url=views.safe_url, nav="playground")
