"""A project's files, for the console: a page per file (what links to a file — citations, attachments,
search results — opens), and its bytes under the API's rule (``api.files.NOT_DOWNLOADABLE``: files uploaded
for assistants are not given back): always an ``application/octet-stream`` attachment with ``nosniff`` (an
uploaded HTML or SVG file is never rendered from our origin), and, for ``<img>`` tags, raster images only
(PNG, JPEG, GIF, WebP, recognised by their first bytes), sandboxed."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse

from assistd.api.files import NOT_DOWNLOADABLE, content_disposition
from assistd.console.web import Member, page, render
from assistd.errors import APIError, InvalidRequest
from assistd.services import files as file_service

router = APIRouter()

IMAGE_MAX_BYTES = 20 * 1024 * 1024
_NOSNIFF = {"X-Content-Type-Options": "nosniff", "Cache-Control": "private, no-store"}


def image_type(head: bytes) -> str | None:
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def _downloadable(file: dict) -> None:
    if file["purpose"] in NOT_DOWNLOADABLE:  # the API's words (api/files.py)
        raise InvalidRequest(f"Not allowed to download files of purpose: {file['purpose']}.")


@router.get("/files/{file_id}")
@page
async def file_page(request: Request, who: Member, file_id: str) -> Response:
    async with request.app.state.db.read() as conn:
        file = await file_service.get_file(conn, who.project_id, file_id)
    return render(request, who, "file.html", file=file, downloadable=file["purpose"] not in NOT_DOWNLOADABLE,
                  nav="storage", tab="files")


@router.get("/files/{file_id}/download")
@page
async def download(request: Request, who: Member, file_id: str) -> Response:
    async with request.app.state.db.read() as conn:
        file = await file_service.get_file(conn, who.project_id, file_id)
    _downloadable(file)
    chunks = await file_service.open_content(request.app.state.blobs, file)
    headers = {**_NOSNIFF, "Content-Disposition": content_disposition(file["filename"]),
               "Content-Length": str(file["bytes"])}
    return StreamingResponse(chunks, media_type="application/octet-stream", headers=headers)


@router.get("/files/{file_id}/image")
@page
async def image(request: Request, who: Member, file_id: str) -> Response:
    async with request.app.state.db.read() as conn:
        file = await file_service.get_file(conn, who.project_id, file_id)
    _downloadable(file)
    try:
        data = await file_service.read_content(request.app.state.blobs, file, IMAGE_MAX_BYTES)
    except APIError:
        data = b""
    media = image_type(data[:16])
    if media is None:
        return Response("not a raster image", status_code=415, media_type="text/plain", headers=_NOSNIFF)
    return Response(data, media_type=media, headers={
        **_NOSNIFF, "Content-Disposition": "inline", "Content-Security-Policy": "default-src 'none'; sandbox"})
