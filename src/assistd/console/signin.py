"""Sign in with an API key, sign out, the console's front door and its static files."""

from __future__ import annotations

import mimetypes
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from assistd.api.authenticate import origin_of
from assistd.console.web import (
    CSRF_FIELD,
    STATIC_DIR,
    CsrfRefused,
    FormTooLarge,
    check_csrf,
    console_state,
    read_form,
    render,
    set_session_cookie,
    visitor,
)
from assistd.errors import Unauthorized
from assistd.services.auth import hash_secret

router = APIRouter()


def _safe_next(target: str | None) -> str:
    """Only a path inside the console: never another site (``//evil``, ``https://…``)."""
    if not target:
        return "/console/threads"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/console") or "\\" in target:
        return "/console/threads"
    return target


@router.get("")
async def front_door() -> Response:
    return RedirectResponse("/console/threads", status_code=303)


@router.get("/sign-in")
async def sign_in_page(request: Request, next: str | None = None) -> Response:
    who = await visitor(request)
    if who.dev_mode or who.project_id is not None:
        return RedirectResponse(_safe_next(next), status_code=303)
    return render(request, who, "signin.html", next=_safe_next(next), error=None)


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    who = await visitor(request)
    try:
        form = await read_form(request)
    except (FormTooLarge, ValueError):
        return render(request, who, "signin.html", 413, next="/console/threads", error="This form is too large.")
    target = _safe_next(form.get("next"))
    try:
        check_csrf(request, who, form.get(CSRF_FIELD))
    except CsrfRefused:
        return render(request, who, "signin.html", 403, next=target,
                      error="This form expired (its CSRF token did not match). Please try again.")
    key = (form.get("api_key") or "").strip()
    try:
        if not key:
            raise Unauthorized("Enter an API key.")
        project = await request.app.state.auth.project_for(f"Bearer {key}", origin_of(request.scope))
    except Unauthorized as exc:
        return render(request, who, "signin.html", 401, next=target, error=exc.message)
    signer = console_state(request).signer
    response = RedirectResponse(target, status_code=303)
    # A new nonce (no fixation), and the key's hash: the session is checked against the key on every request.
    set_session_cookie(request, response, signer.new(project, hash_secret(key)))
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    who = await visitor(request)
    try:
        form = await read_form(request)
        check_csrf(request, who, form.get(CSRF_FIELD))
    except (FormTooLarge, ValueError, CsrfRefused):
        return render(request, who, "error.html", 403, title="Refused",
                      message="This request did not carry the page's CSRF token. Reload the page and retry.")
    response = RedirectResponse("/console/sign-in", status_code=303)
    set_session_cookie(request, response, None)
    return response


_STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".svg": "image/svg+xml"}


@router.get("/static/{name}")
async def static(request: Request, name: str) -> Response:
    versions = console_state(request).static_versions
    if name not in versions:  # only the package's own files, by exact name
        return Response("not found", status_code=404, media_type="text/plain")
    path = STATIC_DIR / name
    media = _STATIC_TYPES.get(path.suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"
    etag = f'"{versions[name]}"'
    # URLs carry ?v=<content hash>: a changed file is a new URL, so caching for a year is safe.
    headers = {"Cache-Control": "public, max-age=31536000, immutable", "ETag": etag}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(path.read_bytes(), media_type=media, headers=headers)
