"""/v1/vector_stores: stores, their files, file batches, file content and search.

HTTP only: parse, call the services in one transaction, answer. Attaching files commits their ingestion
jobs with them, and wakes the job runners (here and in every worker) once it has committed (``Outbox``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from assistd.api.deps import DB, Paging, Project
from assistd.api.request_body import ParsedBodyRoute
from assistd.api.responses import json_response, raw_json_response
from assistd.errors import InvalidRequest
from assistd.schemas.vector_stores import (
    FILE_STATUSES,
    CreateFileBatch,
    CreateVectorStore,
    CreateVectorStoreFile,
    ModifyVectorStore,
    SearchVectorStore,
    UpdateFileAttributes,
)
from assistd.services import query_rewrite, vector_search
from assistd.services import vector_store_files as file_service
from assistd.services import vector_stores as service
from assistd.services.outbox import Outbox

router = APIRouter(prefix="/vector_stores", tags=["vector stores"], route_class=ParsedBodyRoute)

# The SDKs' *_and_poll helpers wait this long between reads while a file or batch is in progress.
POLL_HEADERS = {"openai-poll-after-ms": "200"}


def _polled(obj: dict) -> Response:
    response = json_response(obj)
    if obj.get("status") == "in_progress":
        response.headers.update(POLL_HEADERS)
    return response


def _status_filter(value: str | None) -> str | None:
    if value is None:  # an empty ``filter=`` is no status either: a 400 like any other
        return None
    if value not in FILE_STATUSES:
        raise InvalidRequest(f"Invalid value: '{value[:100]}'. Supported values are: 'in_progress', 'completed', "
                             "'failed', and 'cancelled'.", param="filter")
    return value


StatusFilter = Annotated[str | None, Query(description="in_progress, completed, failed or cancelled")]


# --- stores ------------------------------------------------------------------------------------------------

@router.post("")
async def create_vector_store(body: CreateVectorStore, request: Request, project: Project, db: DB) -> Response:
    outbox = Outbox()
    async with db.write() as conn:
        store = await service.create_store(
            conn, project, name=body.name, file_ids=body.file_ids or [], chunking_strategy=body.chunking_strategy,
            metadata=body.metadata, expires_after=body.expires_after, description=body.description)
        if body.file_ids:
            outbox.wake_jobs()
    await outbox.flush(request.app.state.bus)
    return json_response(store)


@router.get("")
async def list_vector_stores(project: Project, db: DB, page: Paging) -> Response:
    async with db.read() as conn:
        return raw_json_response((await service.list_stores(conn, project, page)).to_json())


@router.get("/{vector_store_id}")
async def get_vector_store(vector_store_id: str, project: Project, db: DB) -> Response:
    async with db.read() as conn:
        return _polled(await service.get_store(conn, project, vector_store_id))


@router.post("/{vector_store_id}")
async def modify_vector_store(vector_store_id: str, body: ModifyVectorStore, project: Project, db: DB) -> Response:
    async with db.write() as conn:
        return json_response(await service.modify_store(
            conn, project, vector_store_id, fields=body.model_fields_set, name=body.name, metadata=body.metadata,
            expires_after=body.expires_after))


@router.delete("/{vector_store_id}")
async def delete_vector_store(vector_store_id: str, project: Project, db: DB) -> Response:
    async with db.write() as conn:
        return json_response(await service.delete_store(conn, project, vector_store_id))


@router.post("/{vector_store_id}/search")
async def search_vector_store(vector_store_id: str, body: SearchVectorStore, request: Request, project: Project,
                              db: DB) -> Response:
    retrieval: vector_search.Retrieval = request.app.state.retrieval
    queries = [body.query] if isinstance(body.query, str) else list(body.query)
    if body.rewrite_query:  # the queries searched, and answered in `search_query`, are the model's
        async with db.read() as conn:  # an unknown store is a 404 before any model is called
            await service.require_stores(conn, project, [vector_store_id], None)
        settings = request.app.state.settings
        queries = await query_rewrite.rewrite_all(request.app.state.router, settings.rewrite_model, queries)
    hits = await vector_search.search(db, retrieval.index, retrieval.embedder(), project, [vector_store_id],
                                      queries, max_num_results=body.max_num_results, filters=body.filters,
                                      ranking_options=body.ranking_options)
    return json_response({"object": "vector_store.search_results.page", "search_query": queries,
                          "data": [vector_search.result_item(hit) for hit in hits],
                          "has_more": False, "next_page": None})


# --- files -------------------------------------------------------------------------------------------------

@router.post("/{vector_store_id}/files")
async def create_vector_store_file(vector_store_id: str, body: CreateVectorStoreFile, request: Request,
                                   project: Project, db: DB) -> Response:
    outbox = Outbox()
    async with db.write() as conn:
        obj = await file_service.create_file(conn, project, vector_store_id, body)
        outbox.wake_jobs()
    await outbox.flush(request.app.state.bus)
    return _polled(obj)


@router.get("/{vector_store_id}/files")
async def list_vector_store_files(vector_store_id: str, project: Project, db: DB, page: Paging,
                                  filter: StatusFilter = None) -> Response:
    status = _status_filter(filter)
    async with db.read() as conn:
        result = await file_service.list_files(conn, project, vector_store_id, page, status)
    return raw_json_response(result.to_json())


@router.get("/{vector_store_id}/files/{file_id}")
async def get_vector_store_file(vector_store_id: str, file_id: str, project: Project, db: DB) -> Response:
    async with db.read() as conn:
        raw = await file_service.get_file(conn, project, vector_store_id, file_id)
    response = raw_json_response(raw)
    if '"status":"in_progress"' in raw:
        response.headers.update(POLL_HEADERS)
    return response


@router.post("/{vector_store_id}/files/{file_id}")
async def update_vector_store_file(vector_store_id: str, file_id: str, body: UpdateFileAttributes,
                                   project: Project, db: DB) -> Response:
    async with db.write() as conn:
        return json_response(await file_service.update_attributes(conn, project, vector_store_id, file_id,
                                                                  body.attributes))


@router.delete("/{vector_store_id}/files/{file_id}")
async def delete_vector_store_file(vector_store_id: str, file_id: str, project: Project, db: DB) -> Response:
    async with db.write() as conn:
        return json_response(await file_service.delete_file(conn, project, vector_store_id, file_id))


@router.get("/{vector_store_id}/files/{file_id}/content")
async def vector_store_file_content(vector_store_id: str, file_id: str, project: Project, db: DB) -> Response:
    async with db.read() as conn:
        return json_response(await file_service.file_content(conn, project, vector_store_id, file_id))


# --- file batches ------------------------------------------------------------------------------------------

@router.post("/{vector_store_id}/file_batches")
async def create_file_batch(vector_store_id: str, body: CreateFileBatch, request: Request, project: Project,
                            db: DB) -> Response:
    outbox = Outbox()
    async with db.write() as conn:
        batch = await file_service.create_batch(conn, project, vector_store_id, body)
        outbox.wake_jobs()
    await outbox.flush(request.app.state.bus)
    return _polled(batch)


@router.get("/{vector_store_id}/file_batches/{batch_id}")
async def get_file_batch(vector_store_id: str, batch_id: str, project: Project, db: DB) -> Response:
    async with db.read() as conn:
        return _polled(await file_service.get_batch(conn, project, vector_store_id, batch_id))


@router.post("/{vector_store_id}/file_batches/{batch_id}/cancel")
async def cancel_file_batch(vector_store_id: str, batch_id: str, project: Project, db: DB) -> Response:
    async with db.write() as conn:
        return json_response(await file_service.cancel_batch(conn, project, vector_store_id, batch_id))


@router.get("/{vector_store_id}/file_batches/{batch_id}/files")
async def list_file_batch_files(vector_store_id: str, batch_id: str, project: Project, db: DB, page: Paging,
                                filter: StatusFilter = None) -> Response:
    status = _status_filter(filter)
    async with db.read() as conn:
        result = await file_service.list_files(conn, project, vector_store_id, page, status, batch_id=batch_id)
    return raw_json_response(result.to_json())
