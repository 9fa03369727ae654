"""Listing a project's threads (the API has no list-threads endpoint; the console needs one), filtered by
metadata key/value, by the assistant of one of its runs, or by the status of one of its runs."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, cast, select, type_coerce
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection

from assistd.errors import InvalidRequest
from assistd.pagination import Page, PageParams
from assistd.store import objects
from assistd.store.tables import runs, threads

RUN_STATUSES = ("queued", "in_progress", "requires_action", "cancelling", "cancelled", "failed", "completed",
                "incomplete", "expired")


def _json(conn: AsyncConnection, column: Any) -> Any:
    # Objects are stored as JSON text: PostgreSQL must be told to parse it; SQLite's JSON functions take text.
    return cast(column, JSONB) if conn.dialect.name == "postgresql" else type_coerce(column, JSON)


async def list_threads(
    conn: AsyncConnection, project_id: str, page: PageParams, *, metadata_key: str | None = None,
    metadata_value: str | None = None, assistant_id: str | None = None, run_status: str | None = None,
) -> Page:
    filters: list[Any] = []
    if metadata_key:
        if '"' in metadata_key or "\\" in metadata_key or len(metadata_key) > 64:
            raise InvalidRequest("A metadata key to filter by has at most 64 characters and no \" or \\.",
                                 param="metadata_key")
        if not objects.storable(metadata_key, metadata_value):
            return Page(items=[], first_id=None, last_id=None, has_more=False)
        value = _json(conn, threads.c.data)[("metadata", metadata_key)].as_string()
        filters.append(value == metadata_value if metadata_value is not None else value.is_not(None))
    if assistant_id or run_status:
        if run_status and run_status not in RUN_STATUSES:
            raise InvalidRequest(f"Invalid run status '{run_status}'; expected one of {', '.join(RUN_STATUSES)}.",
                                 param="run_status")
        if not objects.storable(assistant_id):
            return Page(items=[], first_id=None, last_id=None, has_more=False)
        conditions = [runs.c.project_id == project_id]
        if run_status:
            conditions.append(runs.c.status == run_status)
        if assistant_id:
            conditions.append(_json(conn, runs.c.data)["assistant_id"].as_string() == assistant_id)
        filters.append(threads.c.id.in_(select(runs.c.thread_id).where(*conditions)))
    return await objects.list_page(conn, threads, page, filters=filters, project_id=project_id)
