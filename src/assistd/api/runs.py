"""/v1/threads/{thread_id}/runs, /v1/threads/runs, and run steps."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from assistd.api.deps import DB, Paging, Project
from assistd.api.request_body import ParsedBodyRoute
from assistd.api.responses import json_response, raw_json_response
from assistd.api.sse import run_events, sse_response
from assistd.runner.launcher import Launched, Queued
from assistd.schemas.runs import CreateRun, CreateThreadAndRun, ModifyRun, SubmitToolOutputs
from assistd.services import runs as service
from assistd.services import steps as step_service
from assistd.services.outbox import Outbox
from assistd.services.runs import Lease
from assistd.services.step_render import render_page, render_step
from assistd.store.db import Database

router = APIRouter(tags=["runs"], route_class=ParsedBodyRoute)

Include = Annotated[list[str] | None, Query(alias="include[]", description=step_service.FILE_SEARCH_CONTENT)]
# The SDK's pollers wait this long between GETs of an unfinished run (openai-python takes the first answer's
# value for the whole poll). A GET of a run now costs ~0.1 ms of server CPU (api/hot.py), so polling at 50 ms
# costs less than polling at 100 ms did, and a short run is seen finished ~50 ms sooner.
POLL_HEADERS = {"openai-poll-after-ms": "50"}


def _ttl(request: Request) -> int:
    ttl: int = request.app.state.settings.run_ttl_seconds
    return ttl


def _answer(db: Database, project: str, launched: Launched) -> Response:
    """The run as queued — or, when streamed, its events (runner/launcher.py took the subscription)."""
    if launched.events is None:
        return json_response(launched.run)
    run = launched.run

    async def load_run() -> dict[str, Any] | None:
        async with db.read() as conn:
            return await service.get(conn, project, run["thread_id"], run["id"])

    return sse_response(run_events(launched.events, load_run))


@router.post("/threads/runs")
async def create_thread_and_run(body: CreateThreadAndRun, request: Request, project: Project, db: DB) -> Response:
    async def create(conn: AsyncConnection, outbox: Outbox, lease: Lease | None) -> Queued:
        _, queued, messages = await service.create_thread_and_run(conn, project, body, outbox, _ttl(request), lease)
        return queued, [], messages

    launched = await request.app.state.launcher.queue(project, create, stream=bool(body.stream))
    return _answer(db, project, launched)


@router.post("/threads/{thread_id}/runs")
async def create_run(
    thread_id: str, body: CreateRun, request: Request, project: Project, db: DB, include: Include = None
) -> Response:
    step_service.check_include(include)

    async def create(conn: AsyncConnection, outbox: Outbox, lease: Lease | None) -> Queued:
        return await service.create(conn, project, thread_id, body, outbox, _ttl(request), lease), [], None

    launched = await request.app.state.launcher.queue(project, create, stream=bool(body.stream))
    return _answer(db, project, launched)


@router.get("/threads/{thread_id}/runs")
async def list_runs(thread_id: str, project: Project, db: DB, page: Paging) -> Response:
    async with db.read() as conn:
        return raw_json_response((await service.list_page(conn, project, thread_id, page)).to_json())


# Its success path is served by api/hot.py before FastAPI: keep the two alike (tests/test_hot_reads.py).
@router.get("/threads/{thread_id}/runs/{run_id}")
async def get_run(thread_id: str, run_id: str, project: Project, db: DB) -> Response:
    async with db.read() as conn:
        response = raw_json_response(await service.get_raw(conn, project, thread_id, run_id))
    response.headers.update(POLL_HEADERS)
    return response


@router.post("/threads/{thread_id}/runs/{run_id}")
async def modify_run(thread_id: str, run_id: str, body: ModifyRun, project: Project, db: DB) -> Response:
    async with db.write() as conn:
        return json_response(await service.modify(conn, project, thread_id, run_id, body.metadata))


@router.post("/threads/{thread_id}/runs/{run_id}/cancel")
async def cancel_run(thread_id: str, run_id: str, request: Request, project: Project, db: DB) -> Response:
    async def cancel(conn: AsyncConnection, outbox: Outbox) -> dict[str, Any]:
        return await service.cancel(conn, project, thread_id, run_id, outbox)

    return json_response(await request.app.state.launcher.cancel(run_id, cancel))


@router.post("/threads/{thread_id}/runs/{run_id}/submit_tool_outputs")
async def submit_tool_outputs(
    thread_id: str, run_id: str, body: SubmitToolOutputs, request: Request, project: Project, db: DB
) -> Response:
    async def submit(conn: AsyncConnection, outbox: Outbox, lease: Lease | None) -> Queued:
        return await service.submit_tool_outputs(conn, project, thread_id, run_id, body, outbox, lease), None, None

    launched = await request.app.state.launcher.queue(project, submit, run_id=run_id, stream=bool(body.stream))
    return _answer(db, project, launched)


@router.get("/threads/{thread_id}/runs/{run_id}/steps")
async def list_run_steps(
    thread_id: str, run_id: str, project: Project, db: DB, page: Paging, include: Include = None
) -> Response:
    step_service.check_include(include)
    async with db.read() as conn:
        result = await step_service.list_page(conn, project, thread_id, run_id, page)
    return raw_json_response(render_page(result, include).to_json())  # what include[] asks for, nothing private


# Its success path is served by api/hot.py before FastAPI: keep the two alike (tests/test_hot_reads.py).
@router.get("/threads/{thread_id}/runs/{run_id}/steps/{step_id}")
async def get_run_step(
    thread_id: str, run_id: str, step_id: str, project: Project, db: DB, include: Include = None
) -> Response:
    step_service.check_include(include)
    async with db.read() as conn:
        raw = await step_service.get_raw(conn, project, thread_id, run_id, step_id)
    return raw_json_response(render_step(raw, include))
