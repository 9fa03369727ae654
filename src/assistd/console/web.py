"""What every console page shares: who is visiting (session → project), templates, CSRF, headers.

Pages read through ``services/`` with the visitor's project, exactly as the API does with a key's: an id
of another project is simply not found. A page handler raises nothing of its own: :func:`page` turns the
API's errors into an HTML page with the API's words (404 → the not-found page).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from assistd.api.authenticate import origin_of
from assistd.console.sessions import COOKIE, SESSION_SECONDS, Session, SessionSigner
from assistd.errors import APIError, Unauthorized

log = logging.getLogger("assistd.console")

PACKAGE_DIR = Path(__file__).parent
STATIC_DIR = PACKAGE_DIR / "static"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"


class SignInRequired(Exception):
    pass


class CsrfRefused(Exception):
    pass


@dataclass(frozen=True)
class Visitor:
    session: Session
    project_id: str | None  # None: not signed in (and not dev mode)
    dev_mode: bool  # in without a key (keyless dev mode)
    fresh: bool  # the session is new: its cookie must be sent
    csrf: str


@dataclass(frozen=True)
class Member(Visitor):
    """A visitor who sees a project: signed in, or anyone in dev mode. What page handlers are given."""

    project_id: str


@dataclass(slots=True)
class ConsoleState:
    """Held on ``app.state.console``."""

    signer: SessionSigner
    templates: Environment
    static_versions: dict[str, str]


def console_state(request: Request) -> ConsoleState:
    return request.app.state.console


async def visitor(request: Request) -> Visitor:
    state = console_state(request)
    session = state.signer.load(request.cookies.get(COOKIE))
    fresh = session is None
    if session is None:
        session = state.signer.new(None)
    project = session.project_id
    if project is not None and (session.key_hash is None or
                                await request.app.state.auth.project_for_hash(session.key_hash) != project):
        project = None  # its key was revoked (or all keys were): signed out, whatever the cookie's expiry
    dev = False
    if project is None:
        # Keyless dev mode, by the API's own rule (loopback only unless ASSISTD_DEV_MODE=1, never from
        # another site's page): such a visitor is in the default project without signing in.
        try:
            project = await request.app.state.auth.project_for(None, origin_of(request.scope))
            dev = True
        except Unauthorized:
            pass
    return Visitor(session, project, dev, fresh, state.signer.csrf_token(session))


async def signed_in(request: Request) -> Member:
    who = await visitor(request)
    if who.project_id is None:
        raise SignInRequired
    return Member(who.session, who.project_id, who.dev_mode, who.fresh, who.csrf)


FORM_MAX_BYTES = 16 * 1024


class FormTooLarge(Exception):
    pass


async def read_form(request: Request) -> dict[str, str]:
    """A small urlencoded form (sign-in, sign-out). Read with a size cap: /console bodies skip the API's
    body-size middleware (they are not JSON), so nothing else bounds them."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_MAX_BYTES:
            raise FormTooLarge
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=20)
    return {name: values[0] for name, values in fields.items()}


def check_csrf(request: Request, who: Visitor, form_token: str | None = None) -> None:
    token = request.headers.get(CSRF_HEADER) or form_token
    if not console_state(request).signer.csrf_ok(who.session, token):
        raise CsrfRefused


def is_https(request: Request) -> bool:
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return forwarded == "https" or request.url.scheme == "https"


def set_session_cookie(request: Request, response: Response, session: Session | None) -> None:
    state = console_state(request)
    if session is None:
        response.delete_cookie(COOKIE, path="/console", httponly=True, samesite="strict",
                               secure=is_https(request))
        return
    response.set_cookie(COOKIE, state.signer.dump(session), max_age=SESSION_SECONDS, path="/console",
                        httponly=True, samesite="strict", secure=is_https(request))


def render(request: Request, who: Visitor | None, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    state = console_state(request)
    html = state.templates.get_template(template).render(
        request=request, who=who, csrf=who.csrf if who else "",
        scripted_model=getattr(request.app.state, "scripted_model", False), **context)
    response = HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})
    if who is not None and who.fresh:
        set_session_cookie(request, response, who.session)
    return response


Handler = Callable[..., Awaitable[Response]]


def page(handler: Handler) -> Handler:
    """Sign-in required; the API's errors become pages with the API's message."""

    @functools.wraps(handler)
    async def wrapper(request: Request, *args: Any, **kwargs: Any) -> Response:
        try:
            who = await signed_in(request)
        except SignInRequired:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/console/sign-in?next={quote(target, safe='')}", status_code=303)
        try:
            return await handler(request, who, *args, **kwargs)
        except CsrfRefused:
            return render(request, who, "error.html", 403, title="Refused",
                          message="This request did not carry the page's CSRF token. Reload the page and retry.")
        except APIError as exc:
            if exc.status_code == 404:
                return render(request, who, "not_found.html", 404, message=exc.message)
            return render(request, who, "error.html", exc.status_code, title="Error", message=exc.message)

    # FastAPI reads the signature: hide the injected visitor from it.
    sig = inspect.signature(handler)
    params = [p for name, p in sig.parameters.items() if name != "who"]
    wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    return wrapper


# --- templates --------------------------------------------------------------------------------------


def _timestamp(value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "—"
    when = dt.datetime.fromtimestamp(value, dt.UTC)
    if isinstance(value, float):  # a millisecond time (console/views.py)
        return when.strftime("%Y-%m-%d %H:%M:%S.") + f"{when.microsecond // 1000:03d}"
    return when.strftime("%Y-%m-%d %H:%M:%S")


def _pretty(value: Any) -> str:
    """JSON text pretty-printed (a string that holds JSON is parsed first); other strings as they are."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return value
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        return "—"
    if isinstance(seconds, int):  # stored times are whole seconds
        return "<1 s" if seconds == 0 else f"{seconds} s" if seconds < 120 else f"{seconds / 60:.1f} min"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.2f} s"
    return f"{seconds / 60:.1f} min"


def make_templates(static_versions: dict[str, str]) -> Environment:
    env = Environment(loader=FileSystemLoader(PACKAGE_DIR / "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["ts"] = _timestamp
    env.filters["pretty"] = _pretty
    env.filters["duration"] = _duration
    env.filters["zip"] = lambda a, b: list(zip(a, b, strict=False))

    def static(name: str) -> Markup:
        return Markup(f"/console/static/{name}?v={static_versions.get(name, '0')}")

    env.globals["static"] = static
    return env


def static_versions() -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:12] for p in STATIC_DIR.iterdir() if p.is_file()}
