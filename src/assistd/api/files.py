"""/v1/files: upload (multipart, streamed to the blob store), list, retrieve, delete, download.

The upload route takes the raw Request: FastAPI's form parsing would spool the file (to memory, then to
a temporary file) before the route ran, and answer 422s. Here the body is parsed as it arrives and the
file part goes straight into the blob store; the row is inserted afterwards in a short transaction, so no
database lock is held while bytes travel.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from starlette.requests import ClientDisconnect
from starlette.responses import Response, StreamingResponse

from assistd.api.deps import DB, Project
from assistd.api.multipart import MultipartReader
from assistd.api.request_body import ParsedBodyRoute
from assistd.api.responses import json_response, raw_json_response
from assistd.blobstore import BlobStore
from assistd.errors import APIError, InvalidRequest, NotFound
from assistd.pagination import parse_page_params
from assistd.schemas.files import (
    FILE_FIELD,
    MAX_TEXT_FIELD_BYTES,
    UPLOAD_PURPOSES,
    CreateFileForm,
    parse_list_limit,
)
from assistd.services import file_removal
from assistd.services import files as service
from assistd.store.db import Database

router = APIRouter(prefix="/files", tags=["files"], route_class=ParsedBodyRoute)

FORM_OVERHEAD_BYTES = 4 * 1024 * 1024  # boundaries, part headers, text fields: the body beyond the file
DRAIN_SECONDS = 30.0


def _blobs(request: Request) -> BlobStore:
    return request.app.state.blobs


# The route reads the raw stream, so FastAPI cannot infer the body: describe it for /docs by hand.
_UPLOAD_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file", "purpose"],
    "properties": {
        "file": {"type": "string", "format": "binary"},
        "purpose": {"type": "string", "enum": list(UPLOAD_PURPOSES)},
        "expires_after[anchor]": {"type": "string", "enum": ["created_at"]},
        "expires_after[seconds]": {"type": "integer", "minimum": 3600, "maximum": 2592000},
    }}}}}}


@router.post("", openapi_extra=_UPLOAD_BODY)
async def upload_file(request: Request, project: Project, db: DB) -> Response:
    blobs = _blobs(request)
    limit = service.max_file_bytes()
    too_large = service.too_large(limit)
    reader = MultipartReader(request.stream(), request.headers.get("content-type"),
                             max_body_bytes=limit + FORM_OVERHEAD_BYTES, too_large=too_large)
    file_id = service.new_file_id()
    stored = False
    try:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit + FORM_OVERHEAD_BYTES:
            raise too_large  # refused before a byte is read
        form = CreateFileForm()
        filename: str | None = None
        size = 0
        while (part := await reader.next_part()) is not None:
            if part.name == FILE_FIELD:
                if stored:
                    raise InvalidRequest("Only one 'file' can be uploaded per request.", param="file")
                filename = part.filename
                size = await service.store_upload(blobs, file_id, reader.iter_data(), limit)
                stored = True
            else:
                form.add(part.name, await reader.read_text(part.name, MAX_TEXT_FIELD_BYTES))
        purpose, expires_after_seconds = form.finish(file_given=stored)
        async with db.write() as conn:
            file = await service.record_file(conn, project, file_id, filename=filename, purpose=purpose,
                                             size=size, expires_after_seconds=expires_after_seconds)
            expired = await file_removal.purge_expired(conn, project)
    except ClientDisconnect:
        if stored:
            await blobs.delete(file_id)
        return Response(status_code=400)  # nobody is listening any more
    except BaseException as exc:
        if stored:
            await blobs.delete(file_id)
        if isinstance(exc, APIError) and not _awaits_continue(request, reader):
            await reader.drain(DRAIN_SECONDS)
        raise
    for old in expired:
        await service.discard_blob(blobs, old)
    return json_response(file)


def _awaits_continue(request: Request, reader: MultipartReader) -> bool:
    """A client waiting for "100 Continue" has sent no body yet: draining would only invite it to."""
    return not reader.started and request.headers.get("expect", "").lower() == "100-continue"


@router.get("")
async def list_files(
    project: Project,
    db: DB,
    purpose: Annotated[str | None, Query(description="only files with this purpose")] = None,
    limit: Annotated[str | None, Query(description="1 to 10,000, default 10,000")] = None,
    order: Annotated[str | None, Query(description="asc or desc (default)")] = None,
    after: Annotated[str | None, Query(description="file id to start after")] = None,
    before: Annotated[str | None, Query(description="file id to end before")] = None,
) -> Response:
    page = dataclasses.replace(parse_page_params(None, order, after, before), limit=parse_list_limit(limit))
    async with db.read() as conn:
        result = await service.list_files(conn, project, page, purpose=purpose or None)
    return raw_json_response(result.to_json())


async def _get(request: Request, db: Database, project: str, file_id: str) -> dict:
    try:
        async with db.read() as conn:
            return await service.get_file(conn, project, file_id)
    except service.FileExpired:
        await _remove(request, db, project, file_id)
        raise


async def _remove(request: Request, db: Database, project: str, file_id: str) -> dict | None:
    async with db.write() as conn:
        file = await file_removal.remove_file(conn, project, file_id)
    # After the commit: were the transaction rolled back, the row would still need its bytes.
    if file is not None:
        await service.discard_blob(_blobs(request), file)
    return file


@router.get("/{file_id}")
async def retrieve_file(file_id: str, request: Request, project: Project, db: DB) -> Response:
    return json_response(await _get(request, db, project, file_id))


@router.delete("/{file_id}")
async def delete_file(file_id: str, request: Request, project: Project, db: DB) -> Response:
    file = await _remove(request, db, project, file_id)
    if file is None or service.is_expired(file):  # an expired file is cleaned up, but was already gone
        raise NotFound("file", file_id)
    return json_response(service.deleted_response(file_id))


# The hosted API refused to give back what was uploaded for assistants (its outputs, `assistants_output`,
# and every other purpose download).
NOT_DOWNLOADABLE = frozenset({"assistants"})

# Declared for /docs. OpenAI's document says `application/json` (a string); what the hosted API sent, and
# the SDKs read, is the file's bytes as application/octet-stream, and so do we.
_BINARY = {"schema": {"type": "string", "format": "binary"}}
_DOWNLOAD_RESPONSE = {200: {"description": "The file's bytes, as an attachment",
                            "content": {"application/octet-stream": _BINARY}}}


@router.get("/{file_id}/content", response_class=StreamingResponse,
            responses=_DOWNLOAD_RESPONSE)  # type: ignore[arg-type]
async def download_file(file_id: str, request: Request, project: Project, db: DB) -> Response:
    file = await _get(request, db, project, file_id)
    if file["purpose"] in NOT_DOWNLOADABLE:
        raise InvalidRequest(f"Not allowed to download files of purpose: {file['purpose']}.")
    chunks = await service.open_content(_blobs(request), file)
    # Never what the name suggests: a file uploaded as page.html must not become a page of this origin
    # (the console is served from it), so no sniffing, no inline display.
    headers = {"Content-Disposition": content_disposition(file["filename"]),
               "Content-Length": str(file["bytes"]),
               "X-Content-Type-Options": "nosniff"}
    return StreamingResponse(chunks, media_type="application/octet-stream", headers=headers)


def content_disposition(filename: str) -> str:
    """``attachment`` with an ASCII fallback name and the exact one in RFC 6266/5987 form.

    The fallback keeps only printable ASCII minus quote and backslash, so no filename can end the quoted
    string or the header (the stored name has no control characters either, see display_filename)."""
    fallback = "".join(ch if " " <= ch <= "~" and ch not in '"\\' else "_" for ch in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
