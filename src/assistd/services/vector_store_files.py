"""Vector store files and file batches: attach, list, read, update attributes, detach, cancel.

Every write locks the store row first (see vector_stores' locking order) and ends with
``vector_stores.refresh`` (and ``refresh_batch``), saying which statuses its files left or entered, so
counts and status never lag a file's status.
Deleting a File (``DELETE /v1/files/{id}``, or its expiry) detaches it from every store it is in
(``on_file_deleted``, which services/file_removal.py runs in the delete transaction).
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from assistd import ids
from assistd.errors import NotFound
from assistd.pagination import Page, PageParams
from assistd.retrieval.tables import retrieval_chunks
from assistd.schemas.vector_stores import CreateFileBatch, CreateVectorStoreFile
from assistd.services import files as file_service
from assistd.services import vector_stores as stores
from assistd.store import objects
from assistd.store.tables import file_batches, vector_store_files

c = vector_store_files.c


async def _row(conn: AsyncConnection, project_id: str, store_id: str, file_id: str) -> Any:
    if not objects.storable(store_id, file_id):
        return None
    return (await conn.execute(select(c.seq, c.status, c.batch_id, c.data).where(
        c.vector_store_id == store_id, c.id == file_id, c.project_id == project_id))).first()


async def _require_row(conn: AsyncConnection, project_id: str, store_id: str, file_id: str) -> Any:
    row = await _row(conn, project_id, store_id, file_id)
    if row is None:
        raise NotFound("vector store file", file_id)
    return row


async def save_file(conn: AsyncConnection, obj: dict[str, Any]) -> None:
    await conn.execute(vector_store_files.update()
                       .where(c.vector_store_id == obj["vector_store_id"], c.id == obj["id"])
                       .values(status=obj["status"], data=objects.dumps(obj)))


# --- files -------------------------------------------------------------------------------------------------

async def create_file(conn: AsyncConnection, project_id: str, store_id: str, req: CreateVectorStoreFile
                      ) -> dict[str, Any]:
    [obj] = await stores.attach_files(conn, project_id, store_id, [req.file_id], param="file_id",
                                      chunking_strategy=req.chunking_strategy, attributes=req.attributes)
    return obj


async def get_file(conn: AsyncConnection, project_id: str, store_id: str, file_id: str) -> str:
    await stores.get_store(conn, project_id, store_id)
    data: str = (await _require_row(conn, project_id, store_id, file_id)).data
    return data


async def list_files(conn: AsyncConnection, project_id: str, store_id: str, page: PageParams,
                     status: str | None = None, batch_id: str | None = None) -> Page:
    await stores.get_store(conn, project_id, store_id)
    scope: dict[str, Any] = {"vector_store_id": store_id, "project_id": project_id}
    if batch_id is not None:
        await get_batch(conn, project_id, store_id, batch_id)
        scope["batch_id"] = batch_id
    filters = [] if status is None else [c.status == status]
    return await objects.list_page(conn, vector_store_files, page, filters=filters, **scope)


async def update_attributes(conn: AsyncConnection, project_id: str, store_id: str, file_id: str,
                            attributes: dict[str, Any] | None) -> dict[str, Any]:
    if await stores.lock_store(conn, project_id, store_id) is None:
        raise NotFound("vector store", store_id)
    obj: dict[str, Any] = orjson.loads((await _require_row(conn, project_id, store_id, file_id)).data)
    obj["attributes"] = dict(attributes or {})
    await save_file(conn, obj)
    # Filters read the index's copy; a file still being ingested gets the row's when it is indexed.
    await stores.process_index().update_attributes(conn, store_id, file_id, obj["attributes"])
    return obj


async def delete_file(conn: AsyncConnection, project_id: str, store_id: str, file_id: str) -> dict[str, Any]:
    """Detach the file (its chunks go with it); the File itself stays."""
    store = await stores.lock_store(conn, project_id, store_id)
    if store is None:
        raise NotFound("vector store", store_id)
    row = await _require_row(conn, project_id, store_id, file_id)
    await _detach(conn, store, file_id, row.batch_id, row.status)
    return {"id": file_id, "object": "vector_store.file.deleted", "deleted": True}


async def _detach(conn: AsyncConnection, store: dict[str, Any], file_id: str, batch_id: str | None,
                  status: str) -> None:
    await conn.execute(vector_store_files.delete().where(c.vector_store_id == store["id"], c.id == file_id))
    await stores.process_index().delete_file(conn, store["id"], file_id)
    await stores.refresh(conn, store, moved={status: -1})
    await stores.refresh_batch(conn, batch_id, moved={status: -1})


async def file_content(conn: AsyncConnection, project_id: str, store_id: str, file_id: str) -> dict[str, Any]:
    """``VectorStoreFileContentResponse``: the file's parsed text, chunk by chunk, as indexed."""
    await stores.get_store(conn, project_id, store_id)
    await _require_row(conn, project_id, store_id, file_id)
    ch = retrieval_chunks.c
    rows = await conn.execute(select(ch.text).where(ch.vector_store_id == store_id, ch.file_id == file_id)
                              .order_by(ch.chunk_index))
    return {"object": "vector_store.file_content.page", "data": [{"type": "text", "text": t} for (t,) in rows],
            "has_more": False, "next_page": None}


async def on_file_deleted(conn: AsyncConnection, project_id: str, file_id: str) -> None:
    """Detach a deleted File from every store of its project (in the transaction deleting it)."""
    rows = (await conn.execute(select(c.vector_store_id, c.batch_id, c.status).where(
        c.id == file_id, c.project_id == project_id))).all()
    for store_id, batch_id, status in sorted(rows, key=lambda r: r[0]):
        store = await stores.lock_store(conn, project_id, store_id)
        if store is not None:
            await _detach(conn, store, file_id, batch_id, status)


# --- batches -----------------------------------------------------------------------------------------------

async def create_batch(conn: AsyncConnection, project_id: str, store_id: str, req: CreateFileBatch
                       ) -> dict[str, Any]:
    store = await stores.lock_store(conn, project_id, store_id)
    if store is None:
        raise NotFound("vector store", store_id)
    if stores.is_expired(store):
        raise stores.VectorStoreExpired(store_id)
    if req.files is not None:  # per-file settings; the global ones are ignored (as the spec says)
        items = [(f.file_id, f.chunking_strategy, f.attributes, f"files[{i}]") for i, f in enumerate(req.files)]
    else:
        items = [(fid, req.chunking_strategy, req.attributes, "file_ids") for fid in req.file_ids or []]
    found = await _require_files(conn, project_id, [(fid, where) for fid, _, _, where in items])
    specs = []
    for (_, chunking, attributes, where), file in zip(items, found, strict=True):
        max_tokens, overlap = stores.resolve_chunking(
            chunking, f"{where}.chunking_strategy" if where != "file_ids" else "chunking_strategy")
        specs.append(stores.FileSpec(file, max_tokens, overlap, dict(attributes or {})))
    batch: dict[str, Any] = {"id": ids.new_id("file_batch"), "object": "vector_store.files_batch",
                             "created_at": ids.now(), "vector_store_id": store_id, "status": "in_progress",
                             "file_counts": {"in_progress": 0, "completed": 0, "failed": 0, "cancelled": 0,
                                             "total": 0}}
    await objects.insert_object(conn, file_batches, batch, project_id=project_id, vector_store_id=store_id)
    await stores.add_files(conn, project_id, store, specs, batch_id=batch["id"])
    await stores.refresh(conn, store, moved={})
    return await stores.refresh_batch(conn, batch["id"]) or batch


async def _require_files(conn: AsyncConnection, project_id: str, wanted: list[tuple[str, str]]
                         ) -> list[dict[str, Any]]:
    """All files in one query; when one is missing, the 404 names where it was given (``files[3].file_id``)."""
    try:
        return await file_service.require_files(conn, project_id, [fid for fid, _ in wanted], "file_ids")
    except NotFound:
        for fid, where in wanted:
            param = where if where == "file_ids" else f"{where}.file_id"
            await file_service.require_files(conn, project_id, [fid], param)
        raise


async def get_batch(conn: AsyncConnection, project_id: str, store_id: str, batch_id: str) -> dict[str, Any]:
    await stores.get_store(conn, project_id, store_id)
    batch = await objects.get_object(conn, file_batches, batch_id, project_id=project_id, vector_store_id=store_id)
    if batch is None:
        raise NotFound("vector store file batch", batch_id)
    return batch


async def cancel_batch(conn: AsyncConnection, project_id: str, store_id: str, batch_id: str) -> dict[str, Any]:
    """Files of the batch still in progress become ``cancelled`` (their jobs then skip them); the batch
    becomes ``cancelled``. A batch already finished is returned as it is."""
    store = await stores.lock_store(conn, project_id, store_id)
    if store is None:
        raise NotFound("vector store", store_id)
    batch = await objects.get_for_update(conn, file_batches, batch_id, project_id=project_id,
                                         vector_store_id=store_id)
    if batch is None:
        raise NotFound("vector store file batch", batch_id)
    if batch["status"] != "in_progress":
        return batch
    rows = await conn.execute(select(c.data).where(c.batch_id == batch_id, c.vector_store_id == store_id,
                                                   c.status == "in_progress"))
    cancelled = rows.all()
    for (raw,) in cancelled:
        obj = orjson.loads(raw)
        obj["status"] = "cancelled"
        await save_file(conn, obj)
    batch["status"] = "cancelled"
    await objects.save_object(conn, file_batches, batch)
    await stores.refresh(conn, store, moved={"in_progress": -len(cancelled), "cancelled": len(cancelled)})
    return await stores.refresh_batch(conn, batch_id) or batch
