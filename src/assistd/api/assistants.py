"""/v1/assistants"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from assistd.api.deps import DB, Paging, Project
from assistd.api.request_body import ParsedBodyRoute
from assistd.api.responses import json_response, raw_json_response
from assistd.schemas.assistants import CreateAssistant, ModifyAssistant
from assistd.services import assistants as service

router = APIRouter(prefix="/assistants", tags=["assistants"], route_class=ParsedBodyRoute)


@router.post("")
async def create_assistant(body: CreateAssistant, project: Project, db: DB) -> Response:
    async with db.write() as conn:
        return json_response(await service.create(conn, project, body))


@router.get("")
async def list_assistants(project: Project, db: DB, page: Paging) -> Response:
    async with db.read() as conn:
        return raw_json_response((await service.list_page(conn, project, page)).to_json())


# Its success path is served by api/hot.py before FastAPI: keep the two alike (tests/test_hot_reads.py).
@router.get("/{assistant_id}")
async def get_assistant(assistant_id: str, project: Project, db: DB) -> Response:
    async with db.read() as conn:
        return raw_json_response(await service.get_raw(conn, project, assistant_id))


@router.post("/{assistant_id}")
async def modify_assistant(assistant_id: str, body: ModifyAssistant, project: Project, db: DB) -> Response:
    async with db.write() as conn:
        return json_response(await service.modify(conn, project, assistant_id, body))


@router.delete("/{assistant_id}")
async def delete_assistant(assistant_id: str, project: Project, db: DB) -> Response:
    async with db.write() as conn:
        return json_response(await service.delete(conn, project, assistant_id))
