"""/v1/threads"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from assistd.api.deps import DB, Project
from assistd.api.request_body import ParsedBodyRoute
from assistd.api.responses import json_response, raw_json_response
from assistd.errors import APIError
from assistd.schemas.threads import CreateThread, ModifyThread
from assistd.services import threads as service
from assistd.services.outbox import Outbox

router = APIRouter(prefix="/threads", tags=["threads"], route_class=ParsedBodyRoute)


@router.post("")
async def create_thread(request: Request, project: Project, db: DB, body: CreateThread | None = None) -> Response:
    # The body is optional (none is an empty thread), but a JSON ``null`` is not the object the document
    # allows: FastAPI reads both as None, so the bytes tell them apart.
    if body is None and (await request.body()).strip():
        raise APIError("Invalid body: expected an object, but got null instead.")
    async with db.write() as conn:
        return json_response(await service.create(conn, project, body or CreateThread()))


# Its success path is served by api/hot.py before FastAPI: keep the two alike (tests/test_hot_reads.py).
@router.get("/{thread_id}")
async def get_thread(thread_id: str, project: Project, db: DB) -> Response:
    async with db.read() as conn:
        return raw_json_response(await service.get_raw(conn, project, thread_id))


@router.post("/{thread_id}")
async def modify_thread(thread_id: str, body: ModifyThread, project: Project, db: DB) -> Response:
    async with db.write() as conn:
        return json_response(await service.modify(conn, project, thread_id, body))


@router.delete("/{thread_id}")
async def delete_thread(thread_id: str, request: Request, project: Project, db: DB) -> Response:
    async with db.write() as conn:
        deleted = await service.delete(conn, project, thread_id)
    outbox = Outbox()
    outbox.forget_thread(thread_id)  # its terminal steps may be cached (services/steps.py), its code session open
    await outbox.flush(request.app.state.bus)
    return json_response(deleted)
