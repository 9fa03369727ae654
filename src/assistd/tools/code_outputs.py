"""An execution's images and written files saved as files (purpose ``assistants_output``).

The bytes (up to 20 files of up to the upload limit each) are read and copied into the blob store before
any transaction opens; one short transaction then records their rows. Holding the write transaction while
copying would stall every other write of the server (SQLite has one writer) for as long as the copy takes.
Bytes without a row (a crash between the two, or a failed record) are invisible, and removed on failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from assistd.blobstore import BlobStore
from assistd.errors import APIError
from assistd.services import files as file_service
from assistd.store.db import Database
from assistd.tools.code_interpreter.results import ExecutionResult

log = logging.getLogger("assistd.runner")

MAX_FILES_PER_EXECUTION = 20
PURPOSE = "assistants_output"


@dataclass
class SavedOutputs:
    images: list[str] = field(default_factory=list)  # file ids, in the execution's order
    written: dict[str, str] = field(default_factory=dict)  # /mnt/data-relative name → file id
    skipped: list[str] = field(default_factory=list)  # names not saved: too many, too large, unreadable


@dataclass(frozen=True)
class _Stored:
    file_id: str
    filename: str
    size: int
    image: bool


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _store(blobs: BlobStore, data: bytes) -> tuple[str, int]:
    file_id = file_service.new_file_id()
    return file_id, await file_service.store_upload(blobs, file_id, _chunks(data))


async def save_outputs(db: Database, blobs: BlobStore, project_id: str, call_id: str, result: ExecutionResult,
                       run_id: str = "") -> SavedOutputs:
    """Copy the outputs' bytes (outside any transaction), then record them in one transaction."""
    saved = SavedOutputs()
    if not result.images and not result.files_created:
        return saved
    limit = file_service.max_file_bytes()
    stored: list[_Stored] = []
    try:
        for i, png in enumerate(result.images):
            file_id, size = await _store(blobs, png)
            stored.append(_Stored(file_id, f"{call_id}-image-{i}.png", size, image=True))
        for k, created in enumerate(result.files_created):
            if k >= MAX_FILES_PER_EXECUTION or created.size > limit:
                saved.skipped.append(created.name)
                continue
            try:
                data = await asyncio.to_thread(created.read_bytes, limit)
                file_id, size = await _store(blobs, data)
            except (OSError, APIError, ValueError) as exc:
                log.warning("run %s: output file %s not saved: %s", run_id, created.name, exc)
                saved.skipped.append(created.name)
                continue
            stored.append(_Stored(file_id, created.name, size, image=False))
        async with db.write() as conn:
            for item in stored:
                await file_service.record_file(conn, project_id, item.file_id, filename=item.filename,
                                               purpose=PURPOSE, size=item.size)
    except BaseException:
        for item in stored:  # no row will point at them
            with contextlib.suppress(Exception):
                await blobs.delete(item.file_id)
        raise
    for item in stored:
        if item.image:
            saved.images.append(item.file_id)
        else:
            saved.written[item.filename] = item.file_id
    return saved
