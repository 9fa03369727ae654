"""Storage: files (upload with progress, download, delete), vector stores (create, add files with their
ingestion status updating live, search), and the drill-down store → file → its chunks."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from assistd.api.files import NOT_DOWNLOADABLE
from assistd.console.paging import nav_links, page_items, page_params
from assistd.console.web import Member, page, render
from assistd.pagination import PageParams
from assistd.services import files as file_service
from assistd.services import vector_store_files as store_file_service
from assistd.services import vector_stores as store_service
from assistd.services.store_file_stats import chunk_counts

router = APIRouter()


@router.get("/storage/files")
@page
async def files_page(request: Request, who: Member) -> Response:
    params = page_params(request)
    async with request.app.state.db.read() as conn:
        result = await file_service.list_files(conn, who.project_id, params)
    older, newer = nav_links(request, params, result)
    return render(request, who, "files.html", files=page_items(result), older=older, newer=newer, nav="storage",
                  tab="files", not_downloadable=NOT_DOWNLOADABLE)


@router.get("/storage/vector_stores")
@page
async def stores_page(request: Request, who: Member) -> Response:
    params = page_params(request)
    async with request.app.state.db.read() as conn:
        result = await store_service.list_stores(conn, who.project_id, params)
    older, newer = nav_links(request, params, result)
    return render(request, who, "vector_stores.html", stores=page_items(result), older=older, newer=newer,
                  nav="storage", tab="stores")


@router.get("/storage/vector_stores/{store_id}")
@page
async def store_page(request: Request, who: Member, store_id: str) -> Response:
    params = page_params(request, default_limit=50)
    async with request.app.state.db.read() as conn:
        store = await store_service.get_store(conn, who.project_id, store_id)
        result = await store_file_service.list_files(conn, who.project_id, store_id, params)
        files = {f["id"]: f for f in page_items(await file_service.list_files(conn, who.project_id,
                                                                          PageParams(limit=100)))}
        store_files = page_items(result)
        chunks = await chunk_counts(conn, who.project_id, store_id, [f["id"] for f in store_files])
    older, newer = nav_links(request, params, result)
    attached = {f["id"] for f in store_files}
    return render(request, who, "vector_store.html", store=store, store_files=store_files, names=files, chunks=chunks,
                  candidates=[f for f in files.values() if f["id"] not in attached], older=older, newer=newer,
                  nav="storage", tab="stores")


@router.get("/storage/vector_stores/{store_id}/chunk_counts")
@page
async def store_chunk_counts(request: Request, who: Member, store_id: str) -> Response:
    """``{file_id: chunks}`` for ``?file_id=…`` (repeatable), for the store page's live rows."""
    wanted = request.query_params.getlist("file_id")[:100]
    async with request.app.state.db.read() as conn:
        counts = await chunk_counts(conn, who.project_id, store_id, wanted)
    return JSONResponse(counts, headers={"Cache-Control": "no-store"})


@router.get("/storage/vector_stores/{store_id}/files/{file_id}")
@page
async def store_file_page(request: Request, who: Member, store_id: str, file_id: str) -> Response:
    async with request.app.state.db.read() as conn:
        store = await store_service.get_store(conn, who.project_id, store_id)
        store_file = orjson.loads(await store_file_service.get_file(conn, who.project_id, store_id, file_id))
        content = await store_file_service.file_content(conn, who.project_id, store_id, file_id)
        try:
            file = await file_service.get_file(conn, who.project_id, file_id)
        except Exception:  # deleted or expired since: the store's row still shows
            file = None
    return render(request, who, "vector_store_file.html", store=store, sf=store_file, file=file,
                  chunks=content["data"], nav="storage", tab="stores")
