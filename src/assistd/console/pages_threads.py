"""Threads: the list (filters, find by id), a thread's conversation and runs, the run view and its live
event stream."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from assistd.api.sse import run_events, sse_response
from assistd.console import views
from assistd.console.paging import nav_links, page_items, page_params, with_query
from assistd.console.web import Member, page, render
from assistd.errors import NotFound
from assistd.events.base import run_channel
from assistd.pagination import PageParams
from assistd.services import assistants as assistant_service
from assistd.services import messages as message_service
from assistd.services import runs as run_service
from assistd.services import steps as step_service
from assistd.services import threads as thread_service
from assistd.services.run_objects import ACTIVE_STATUSES
from assistd.services.thread_listing import RUN_STATUSES, list_threads

router = APIRouter()

MESSAGES_PER_PAGE = 50
STEPS_PER_PAGE = 100
RUNS_PER_PAGE = 20


@router.get("/threads")
@page
async def threads_page(request: Request, who: Member) -> Response:
    q = request.query_params
    found = (q.get("id") or "").strip()
    if found:
        return RedirectResponse(f"/console/threads/{found}", status_code=303)
    filters = {name: (q.get(name) or None) for name in ("metadata_key", "metadata_value", "assistant_id",
                                                        "run_status")}
    params = page_params(request)
    async with request.app.state.db.read() as conn:
        result = await list_threads(conn, who.project_id, params, **filters)
        assistants = page_items(await assistant_service.list_page(conn, who.project_id, PageParams(limit=100)))
    threads = page_items(result)
    older, newer = nav_links(request, params, result)
    return render(request, who, "threads.html", threads=threads, filters=filters, assistants=assistants,
                  statuses=RUN_STATUSES, older=older, newer=newer, nav="threads")


@router.get("/threads/{thread_id}")
@page
async def thread_page(request: Request, who: Member, thread_id: str) -> Response:
    q = request.query_params
    params = PageParams(limit=MESSAGES_PER_PAGE, order="desc", after=q.get("after") or None,
                        before=q.get("before") or None)
    async with request.app.state.db.read() as conn:
        thread = await thread_service.get(conn, who.project_id, thread_id)
        result = await message_service.list_page(conn, who.project_id, thread_id, params)
        run_params = PageParams(limit=RUNS_PER_PAGE, after=q.get("runs_after") or None)
        run_page = await run_service.list_page(conn, who.project_id, thread_id, run_params)
        runs = page_items(run_page)
    messages = list(reversed(page_items(result)))  # newest page first, shown oldest → newest
    older, newer = nav_links(request, params, result)
    more_runs = with_query(request, runs_after=run_page.last_id) if run_page.has_more else None
    return render(request, who, "thread.html", thread=thread, messages=messages, runs=runs, more_runs=more_runs,
                  older=older,
                  newer=newer, segments=views.text_segments, safe_url=views.safe_url, nav="threads")


async def _run_and_steps(request: Request, who: Member, thread_id: str, run_id: str) -> dict:
    after = request.query_params.get("steps_after") or None
    async with request.app.state.db.read() as conn:
        run = await run_service.get(conn, who.project_id, thread_id, run_id)
        if run is None:
            raise NotFound("run", run_id)
        result = await step_service.list_page(conn, who.project_id, thread_id, run_id,
                                              PageParams(limit=STEPS_PER_PAGE, order="asc", after=after))
        steps = [views.shown_step(s) for s in page_items(result)]
        wanted = {s["step_details"]["message_creation"]["message_id"] for s in steps
                  if s.get("type") == "message_creation"}
        created = {}
        if wanted:
            listed = await message_service.list_page(conn, who.project_id, thread_id,
                                                     PageParams(limit=100, order="asc"), run_id=run_id)
            created = {m["id"]: m for m in page_items(listed) if m["id"] in wanted}
        run_ms, steps_ms = await run_service.timings(conn, run_id)
    more = with_query(request, steps_after=result.last_id) if result.has_more else None
    return {"run": run, "steps": steps, "created": created,
            "timeline": views.timeline(run, steps, steps_ms=steps_ms, run_ms=run_ms),
            "phases": views.phases(run, steps, run_ms), "more_steps": more, "active": run["status"] in ACTIVE_STATUSES,
            "tokens": views.tokens, "step_end": views.step_end, "segments": views.text_segments,
            "safe_url": views.safe_url, "first_step": bool(after)}


@router.get("/threads/{thread_id}/runs/{run_id}")
@page
async def run_page(request: Request, who: Member, thread_id: str, run_id: str) -> Response:
    data = await _run_and_steps(request, who, thread_id, run_id)
    return render(request, who, "run.html", thread_id=thread_id, nav="threads", **data)


@router.get("/threads/{thread_id}/runs/{run_id}/timeline")
@page
async def run_timeline(request: Request, who: Member, thread_id: str, run_id: str) -> Response:
    """The timeline alone, which the run page fetches again as the run's events arrive."""
    data = await _run_and_steps(request, who, thread_id, run_id)
    return render(request, who, "_timeline.html", thread_id=thread_id, **data)


@router.get("/threads/{thread_id}/runs/{run_id}/events")
@page
async def run_events_stream(request: Request, who: Member, thread_id: str, run_id: str) -> Response:
    """The run's events as the API streams them (same bus, same encoding), for a run already going."""
    project = who.project_id
    db = request.app.state.db
    sub = await request.app.state.bus.subscribe(run_channel(run_id))  # before reading: no event is missed
    try:
        async with db.read() as conn:
            run = await run_service.get(conn, project, thread_id, run_id)
        if run is None:
            raise NotFound("run", run_id)
    except BaseException:
        await sub.close()
        raise

    async def load_run() -> dict | None:
        async with db.read() as conn:
            return await run_service.get(conn, project, thread_id, run_id)

    return sse_response(run_events(sub, load_run))
