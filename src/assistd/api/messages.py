"""/v1/threads/{thread_id}/messages"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from starlette.responses import Response

from assistd.api.deps import DB, Paging, Project
from assistd.api.request_body import ParsedBodyRoute
from assistd.api.responses import json_response, raw_json_response
from assistd.schemas.messages import CreateMessage, ModifyMessage
from assistd.services import messages as service

router = APIRouter(prefix="/threads/{thread_id}/messages", tags=["messages"], route_class=ParsedBodyRoute)


@router.post("")
async def create_message(thread_id: str, body: CreateMessage, project: Project, db: DB) -> Response:
    async with db.write() as conn:
        return json_response(await service.create(conn, project, thread_id, body))


@router.get("")
async def list_messages(
    thread_id: str,
    project: Project,
    db: DB,
    page: Paging,
    run_id: Annotated[str | None, Query(description="only messages made by this run")] = None,
) -> Response:
    async with db.read() as conn:
        result = await service.list_page(conn, project, thread_id, page, run_id=run_id)
        return raw_json_response(result.to_json())


# Its success path is served by api/hot.py before FastAPI: keep the two alike (tests/test_hot_reads.py).
@router.get("/{message_id}")
async def get_message(thread_id: str, message_id: str, project: Project, db: DB) -> Response:
    async with db.read() as conn:
        return raw_json_response(await service.get_raw(conn, project, thread_id, message_id))


@router.post("/{message_id}")
async def modify_message(
    thread_id: str, message_id: str, body: ModifyMessage, project: Project, db: DB
) -> Response:
    async with db.write() as conn:
        return json_response(await service.modify(conn, project, thread_id, message_id, body))


@router.delete("/{message_id}")
async def delete_message(thread_id: str, message_id: str, project: Project, db: DB) -> Response:
    async with db.write() as conn:
        return json_response(await service.delete(conn, project, thread_id, message_id))
