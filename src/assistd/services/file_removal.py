"""Removing files together with what depends on them: a deleted (or expired) File leaves every vector store
it is in, in the transaction that deletes it. Its bytes go after the commit (``files.discard_blob``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from assistd.services import files
from assistd.services.vector_store_files import on_file_deleted

DEPENDENTS: tuple[files.DeleteHook, ...] = (on_file_deleted,)


async def remove_file(conn: AsyncConnection, project_id: str, file_id: str) -> dict[str, Any] | None:
    """Delete the file's row and its attachments; the removed file, or None."""
    return await files.remove_file(conn, project_id, file_id, DEPENDENTS)


async def purge_expired(conn: AsyncConnection, project_id: str) -> list[dict[str, Any]]:
    """Remove a batch of the project's expired files and their attachments."""
    return await files.purge_expired(conn, project_id, on_delete=DEPENDENTS)
