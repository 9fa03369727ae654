"""How many chunks each of a vector store's files was indexed into (the console's store page)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from assistd.retrieval.tables import retrieval_chunks
from assistd.services import vector_stores as stores


async def chunk_counts(conn: AsyncConnection, project_id: str, store_id: str, file_ids: Sequence[str]
                       ) -> dict[str, int]:
    """``{file_id: chunks}`` for these files of the store (0 for a file not indexed yet); 404 for a store
    of another project."""
    await stores.get_store(conn, project_id, store_id)
    if not file_ids:
        return {}
    ch = retrieval_chunks.c
    rows = await conn.execute(select(ch.file_id, func.count()).where(
        ch.vector_store_id == store_id, ch.file_id.in_(list(file_ids))).group_by(ch.file_id))
    counts = {file_id: 0 for file_id in file_ids}
    counts.update({file_id: int(n) for file_id, n in rows})
    return counts
