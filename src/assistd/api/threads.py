"""/v1/threads"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from assistd.api.deps import DB, Project
from assistd.api.responses import json_response, raw_json_response
from assistd.schemas.threads import CreateThread, ModifyThread
from assistd.services import threads as service

router = APIRouter(prefix="/threads", tags=["threads"])


@router.post("")
async def create_thread(project: Project, db: DB, body: CreateThread | None = None) -> Response:
    async with db.write() as conn:
        return json_response(await service.create(conn, project, body or CreateThread()))


@router.get("/{thread_id}")
async def get_thread(thread_id: str, project: Project, db: DB) -> Response:
    async with db.read() as conn:
        return raw_json_response(await service.get_raw(conn, project, thread_id))


@router.post("/{thread_id}")
async def modify_thread(thread_id: str, body: ModifyThread, project: Project, db: DB) -> Response:
    async with db.write() as conn:
        return json_response(await service.modify(conn, project, thread_id, body))


@router.delete("/{thread_id}")
async def delete_thread(thread_id: str, project: Project, db: DB) -> Response:
    async with db.write() as conn:
        return json_response(await service.delete(conn, project, thread_id))
