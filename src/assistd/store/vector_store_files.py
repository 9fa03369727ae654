"""Vector-store-file rows as the run engine reads them, beside what services/vector_store_files.py writes."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from assistd.store.tables import vector_store_files


async def any_in_progress(conn: AsyncConnection, project_id: str, store_ids: Sequence[str]) -> bool:
    """Why: a file_search waits while the thread's stores still ingest files (tools/file_search.py)."""
    if not store_ids:
        return False
    count = (await conn.execute(select(func.count()).select_from(vector_store_files).where(
        vector_store_files.c.vector_store_id.in_(list(store_ids)),
        vector_store_files.c.project_id == project_id,
        vector_store_files.c.status == "in_progress"))).scalar_one()
    return bool(count > 0)
