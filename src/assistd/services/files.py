"""Files: stored bytes (a blob store) plus an ``OpenAIFile`` row per file, scoped to a project.

The blob key is the file id, generated here and never derived from the client's filename. Bytes are
written before the row and removed after it: a crash can orphan a blob (harmless, invisible) but never
leave a row without its bytes. Expired files answer 404 at once and are removed lazily (on access and on
the project's next upload).

For other services (no web imports here):
  create_file(conn, blobs, project_id, filename, purpose, chunks, expires_after_seconds=None) -> dict
  get_file(conn, project_id, file_id, param=None) -> dict           NotFound (with ``param``) when missing
  require_files(conn, project_id, file_ids, param) -> list[dict]    NotFound naming ``param`` for the first
  open_content(blobs, file) / read_content(blobs, file, max_bytes)  the bytes, streamed or whole
  remove_file / purge_expired(..., on_delete=hooks): ``await hook(conn, project_id, file_id)`` inside the
  delete transaction (services/file_removal.py passes what depends on files: vector store attachments).

The upload size limit is 512 MB, as the hosted API's; ``ASSISTD_MAX_FILE_BYTES`` lowers (or raises) it,
which the tests use to check the limit without sending half a gigabyte.
"""

from __future__ import annotations

import logging
import os
import unicodedata
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import orjson
from sqlalchemy import delete, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from assistd import ids
from assistd.blobstore import BlobNotFound, BlobStore, TooLarge
from assistd.errors import APIError, NotFound
from assistd.pagination import Page, PageParams
from assistd.schemas.files import STORED_PURPOSES, check_purpose
from assistd.store import objects
from assistd.store.tables import files

log = logging.getLogger("assistd")

DEFAULT_MAX_FILE_BYTES = 512 * 1024 * 1024
BATCH_DEFAULT_EXPIRY_SECONDS = 30 * 24 * 3600  # "files with purpose=batch expire after 30 days" by default
MAX_FILENAME_CHARS = 255
PURGE_BATCH = 20  # expired files removed per upload: bounded work on the request path

DeleteHook = Callable[[AsyncConnection, str, str], Awaitable[None]]


def max_file_bytes() -> int:
    """Read per call, so a test (or an operator) can set it without a settings field."""
    raw = os.environ.get("ASSISTD_MAX_FILE_BYTES", "")
    return int(raw) if raw.strip() else DEFAULT_MAX_FILE_BYTES


class FileExpired(NotFound):
    """A file past its ``expires_at``: a 404 to clients; the HTTP layer then removes it."""

    def __init__(self, file: dict[str, Any], *, param: str | None = None) -> None:
        super().__init__("file", file["id"], param=param)
        self.file = file


def too_large(limit: int) -> APIError:
    return APIError(f"File too large: the limit is {limit} bytes.", param="file", code="file_too_large",
                    status_code=413)


def display_filename(raw: str | None) -> str:
    """The name shown back to clients: the last path segment, without control characters, bounded.

    For display only: storage never uses it, so ``../../etc/passwd`` is harmless either way."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co"))
    name = name.strip()[:MAX_FILENAME_CHARS]
    return name if name not in ("", ".", "..") else "file"


def blob_key(file: dict[str, Any]) -> str:
    key: str = file["id"]
    return key


def is_expired(file: dict[str, Any], now: int | None = None) -> bool:
    expires_at = file.get("expires_at")
    return expires_at is not None and expires_at <= (ids.now() if now is None else now)


def new_file_id() -> str:
    return ids.new_id("file")


async def store_upload(blobs: BlobStore, file_id: str, chunks: AsyncIterator[bytes],
                       max_bytes: int | None = None) -> int:
    """Stream the bytes into the blob store under ``file_id``; 413 past the limit, nothing kept."""
    limit = max_file_bytes() if max_bytes is None else max_bytes
    try:
        return await blobs.put(file_id, chunks, limit)
    except TooLarge:
        raise too_large(limit) from None


async def record_file(
    conn: AsyncConnection, project_id: str, file_id: str, *, filename: str | None, purpose: str, size: int,
    expires_after_seconds: int | None = None,
) -> dict[str, Any]:
    """Insert the row of bytes already stored by ``store_upload``."""
    check_purpose(purpose, STORED_PURPOSES)
    created_at = ids.now()
    if expires_after_seconds is None and purpose == "batch":
        expires_after_seconds = BATCH_DEFAULT_EXPIRY_SECONDS
    expires_at = None if expires_after_seconds is None else created_at + expires_after_seconds
    obj: dict[str, Any] = {
        "id": file_id,
        "object": "file",
        "bytes": size,
        "created_at": created_at,
        "filename": display_filename(filename),
        "purpose": purpose,
        "status": "processed",
    }
    # Left out rather than null: the spec types expires_at as a (non-nullable) integer.
    if expires_at is not None:
        obj["expires_at"] = expires_at
    await objects.insert_object(conn, files, obj, project_id=project_id, purpose=purpose, blob_key=file_id,
                                expires_at=expires_at)
    return obj


async def create_file(
    conn: AsyncConnection, blobs: BlobStore, project_id: str, filename: str | None, purpose: str,
    chunks: AsyncIterator[bytes], expires_after_seconds: int | None = None,
) -> dict[str, Any]:
    """Store bytes and insert the row in the caller's transaction (e.g. code_interpreter outputs, purpose
    ``assistants_output``). The bytes are written while ``conn``'s transaction is open: fine for local
    outputs; the HTTP upload stores first and opens its transaction after (see api/files.py)."""
    check_purpose(purpose, STORED_PURPOSES)
    file_id = new_file_id()
    size = await store_upload(blobs, file_id, chunks)
    try:
        return await record_file(conn, project_id, file_id, filename=filename, purpose=purpose, size=size,
                                 expires_after_seconds=expires_after_seconds)
    except BaseException:
        await blobs.delete(file_id)
        raise


async def get_file(conn: AsyncConnection, project_id: str, file_id: str, *, param: str | None = None
                   ) -> dict[str, Any]:
    file = await objects.get_object(conn, files, file_id, project_id=project_id)
    if file is None:
        raise NotFound("file", file_id, param=param)
    if is_expired(file):
        raise FileExpired(file, param=param)
    return file


async def find_files(conn: AsyncConnection, project_id: str, file_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The project's unexpired files among ``file_ids``, by id, in one query per thousand ids (one parameter
    per id, and a body may name more ids than a statement may bind)."""
    wanted = [fid for fid in dict.fromkeys(file_ids) if objects.storable(fid)]
    found: dict[str, dict[str, Any]] = {}
    now = ids.now()
    for start in range(0, len(wanted), 1000):
        rows = await conn.execute(select(files.c.data).where(files.c.project_id == project_id,
                                                             files.c.id.in_(wanted[start:start + 1000])))
        for (raw,) in rows:
            file = orjson.loads(raw)
            if not is_expired(file, now):
                found[file["id"]] = file
    return found


async def require_files(conn: AsyncConnection, project_id: str, file_ids: Sequence[str], param: str
                        ) -> list[dict[str, Any]]:
    """The files, in the order asked (duplicates kept); 404 naming ``param`` when one is missing, of
    another project or expired."""
    found = await find_files(conn, project_id, file_ids)
    for fid in file_ids:
        if fid not in found:
            raise NotFound("file", fid, param=param)
    return [found[fid] for fid in file_ids]


async def list_files(conn: AsyncConnection, project_id: str, page: PageParams, purpose: str | None = None
                     ) -> Page:
    filters = [or_(files.c.expires_at.is_(None), files.c.expires_at > ids.now())]
    if purpose is not None:
        if not objects.storable(purpose):
            return Page(items=[], first_id=None, last_id=None, has_more=False)
        filters.append(files.c.purpose == purpose)
    return await objects.list_page(conn, files, page, filters=filters, project_id=project_id)


async def remove_file(conn: AsyncConnection, project_id: str, file_id: str, on_delete: Sequence[DeleteHook] = ()
                      ) -> dict[str, Any] | None:
    """Delete the row (expired or not) and run the ``on_delete`` hooks; the removed file, or None.

    The blob stays until the caller's transaction has committed: then ``discard_blob``."""
    file = await objects.get_for_update(conn, files, file_id, project_id=project_id)
    if file is None or not await objects.delete_object(conn, files, file_id, project_id=project_id):
        return None
    for hook in on_delete:
        await hook(conn, project_id, file_id)
    return file


def deleted_response(file_id: str) -> dict[str, Any]:
    return {"id": file_id, "object": "file", "deleted": True}


async def purge_expired(conn: AsyncConnection, project_id: str, limit: int = PURGE_BATCH,
                        on_delete: Sequence[DeleteHook] = ()) -> list[dict[str, Any]]:
    """Remove up to ``limit`` of the project's expired files; discard their blobs after the commit."""
    rows = await conn.execute(
        select(files.c.id, files.c.data)
        .where(files.c.project_id == project_id, files.c.expires_at <= ids.now())
        .limit(limit)
    )
    removed = []
    for row in rows.all():
        # Guarded by rowcount: a concurrent purge of the same row must not run the hooks twice.
        result = await conn.execute(delete(files).where(files.c.id == row.id))
        if result.rowcount:
            for hook in on_delete:
                await hook(conn, project_id, row.id)
            removed.append(orjson.loads(row.data))
    return removed


async def discard_blob(blobs: BlobStore, file: dict[str, Any]) -> None:
    """Remove a deleted file's bytes. A failure only leaves an unreachable blob behind: logged, not raised."""
    try:
        await blobs.delete(blob_key(file))
    except Exception:
        log.exception("could not delete the blob of %s", file.get("id"))


async def open_content(blobs: BlobStore, file: dict[str, Any]) -> AsyncIterator[bytes]:
    try:
        return await blobs.open(blob_key(file))
    except BlobNotFound:
        log.error("file %s has no stored bytes", file["id"])
        raise NotFound("file", file["id"]) from None


async def read_content(blobs: BlobStore, file: dict[str, Any], max_bytes: int) -> bytes:
    try:
        return await blobs.read(blob_key(file), max_bytes)
    except BlobNotFound:
        log.error("file %s has no stored bytes", file["id"])
        raise NotFound("file", file["id"]) from None
    except TooLarge:
        raise APIError(f"File '{file['id']}' is too large: at most {max_bytes} bytes can be read.",
                       code="file_too_large") from None
