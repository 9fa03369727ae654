"""What an ingestion's outcome does to a vector store's rows: the file the job was queued for, and its
result recorded — its chunks indexed and the file ``completed``, or the file ``failed`` with
``last_error`` — with the store's and the batch's counts.

A job was queued (``vector_stores.add_files``) for one row of ``vector_store_files``, named by its ``seq``:
while that row is still ``in_progress`` the job waits for it; once it was detached, re-attached or
cancelled the job has nothing to record. ``index.add`` replaces a file's chunks, so recording twice
cannot duplicate them. Called by the ``ingest_file`` job's handler.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from assistd.retrieval import HybridIndex, IndexedChunk
from assistd.services import vector_stores as stores
from assistd.store import objects
from assistd.store.tables import vector_store_files


def usage_bytes(chunks: list[IndexedChunk]) -> int:
    """What the index holds for these chunks (text + float32 vector), as ``HybridIndex.usage_bytes`` counts."""
    return sum(len(ch.text) + 4 * len(ch.embedding) for ch in chunks)


async def waiting_file(conn: AsyncConnection, project_id: str, store_id: str, file_id: str, seq: int
                       ) -> tuple[dict[str, Any], str | None] | None:
    """The vector store file a job was queued for (and its batch id), while it still waits for the job."""
    c = vector_store_files.c
    row = (await conn.execute(select(c.seq, c.status, c.batch_id, c.data).where(
        c.vector_store_id == store_id, c.id == file_id, c.project_id == project_id))).first()
    if row is None or row.seq != seq or row.status != "in_progress":
        return None
    return orjson.loads(row.data), row.batch_id


async def record_outcome(
    conn: AsyncConnection, index: HybridIndex, project_id: str, store_id: str, file_id: str, seq: int, *,
    filename: str, chunks: list[IndexedChunk], error: dict[str, str] | None,
) -> None:
    """In the job's write transaction: lock the store, and if the file still waits for this job, index its
    ``chunks`` and mark it ``completed`` — or ``failed`` with ``error`` —, moving the counts."""
    store = await stores.lock_store(conn, project_id, store_id)
    if store is None:
        return
    waiting = await waiting_file(conn, project_id, store_id, file_id, seq)
    if waiting is None:
        return
    obj, batch_id = waiting
    if error is None:
        await index.add(conn, store_id, file_id, filename, chunks, obj.get("attributes") or {})
        obj.update(status="completed", last_error=None, usage_bytes=usage_bytes(chunks))
    else:
        obj.update(status="failed", last_error=error, usage_bytes=0)
    await conn.execute(vector_store_files.update()
                       .where(vector_store_files.c.vector_store_id == store_id, vector_store_files.c.id == file_id)
                       .values(status=obj["status"], data=objects.dumps(obj)))
    moved = {"in_progress": -1, obj["status"]: 1}
    await stores.refresh(conn, store, moved=moved)
    await stores.refresh_batch(conn, batch_id, moved=moved)
