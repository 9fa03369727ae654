"""/v1/threads/{thread_id}/runs, /v1/threads/runs, and run steps."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Query, Request
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from assistd.api.deps import DB, Paging, Project
from assistd.api.request_body import ParsedBodyRoute
from assistd.api.responses import json_response, raw_json_response
from assistd.api.sse import run_events, sse_response
from assistd.events.base import Event, Subscription, run_channel
from assistd.events.prelude import PreludeSubscription
from assistd.runner.pool import WAKE_CHANNEL
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
    return request.app.state.settings.run_ttl_seconds


async def _after_commit(request: Request, outbox: Outbox, run_id: str, *, cancel: bool = False,
                        lease: Lease | None = None) -> None:
    """Publish the transaction's events, then get the run executed: by this process's pool when the
    transaction started it under ``lease``, else by whichever pool claims it first."""
    bus = request.app.state.bus
    await outbox.flush(bus)
    pool = request.app.state.pool
    if lease is not None and lease.started is not None:
        pool.start_reserved(lease)
        return
    if lease is not None:
        pool.release(lease)
    if pool is not None:
        pool.cancel_local(run_id) if cancel else pool.wake()
    if not cancel:  # pools in other processes (`assistd worker`) claim now rather than at their next poll
        await bus.publish(WAKE_CHANNEL, Event("wake", {"run_id": run_id}))


async def _subscribe(request: Request, run_id: str) -> Subscription:
    return await request.app.state.bus.subscribe(run_channel(run_id))


def _stream(request: Request, db: Database, project: str, run: dict, sub: Subscription) -> Response:
    """The run's events as SSE; ``sub`` already hands out this request's own events first."""
    async def load_run() -> dict | None:
        async with db.read() as conn:
            return await service.get(conn, project, run["thread_id"], run["id"])

    return sse_response(run_events(sub, load_run))


# What a transaction that queues a run returns: the run (as queued), and what it knows of the run's steps
# and of its thread's messages (None: not known), for the run's first turn when this process executes it.
Queued = tuple[dict, list[dict] | None, list[dict] | None]


async def _commit_and_answer(
    request: Request, db: Database, project: str, outbox: Outbox, stream: bool | None,
    action: Callable[[AsyncConnection, Lease | None], Awaitable[Queued]],
) -> Response:
    """Run ``action`` in one transaction, publish its events, wake the workers, and answer with the run —
    or, with ``stream``, with its events: the subscription is taken before the commit, so not even a worker
    in another process can start the run before we listen. With a slot free in this process's pool, the
    action stores the run started under a lease of it: no claim round, no start transaction, no wait."""
    sub = None
    pool = request.app.state.pool
    lease = pool.lease() if pool is not None else None
    committed = False
    run: dict = {}
    try:
        async with db.write() as conn:
            run, steps, thread = await action(conn, lease)
            if lease is not None and lease.started is not None:
                await pool.reserve(conn, lease, project, steps=steps, thread=thread)
            if stream:
                sub = await _subscribe(request, run["id"])
        committed = True
        if sub is not None:  # its own events first, whatever a worker elsewhere publishes before they are flushed
            sub = PreludeSubscription(sub, outbox.items)
        await _after_commit(request, outbox, run["id"], lease=lease)
    except BaseException:
        if sub is not None:  # no stream will read it
            await sub.close()
        if lease is not None:  # run it if it was committed started, else free the slot
            pool.start_reserved(lease) if committed and lease.started is not None else pool.release(lease)
        raise
    if sub is None:
        return json_response(run)
    return _stream(request, db, project, run, sub)


@router.post("/threads/runs")
async def create_thread_and_run(body: CreateThreadAndRun, request: Request, project: Project, db: DB) -> Response:
    outbox = Outbox()

    async def create(conn: AsyncConnection, lease: Lease | None) -> Queued:
        _, run, messages = await service.create_thread_and_run(conn, project, body, outbox, _ttl(request), lease)
        return run, [], messages

    return await _commit_and_answer(request, db, project, outbox, body.stream, create)


@router.post("/threads/{thread_id}/runs")
async def create_run(
    thread_id: str, body: CreateRun, request: Request, project: Project, db: DB, include: Include = None
) -> Response:
    step_service.check_include(include)
    outbox = Outbox()

    async def create(conn: AsyncConnection, lease: Lease | None) -> Queued:
        return await service.create(conn, project, thread_id, body, outbox, _ttl(request), lease), [], None

    return await _commit_and_answer(request, db, project, outbox, body.stream, create)


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
    outbox = Outbox(run_id)
    async with db.write() as conn:
        run = await service.cancel(conn, project, thread_id, run_id, outbox)
    await _after_commit(request, outbox, run_id, cancel=True)
    return json_response(run)


@router.post("/threads/{thread_id}/runs/{run_id}/submit_tool_outputs")
async def submit_tool_outputs(
    thread_id: str, run_id: str, body: SubmitToolOutputs, request: Request, project: Project, db: DB
) -> Response:
    outbox = Outbox(run_id)

    async def submit(conn: AsyncConnection, lease: Lease | None) -> Queued:
        return await service.submit_tool_outputs(conn, project, thread_id, run_id, body, outbox, lease), None, None

    return await _commit_and_answer(request, db, project, outbox, body.stream, submit)


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
