"""``/console/api/v1/…``: the browser's way to the API, signed in by the console session.

The request is handed to the app as the same request to ``/v1/…`` — same routes, validation, error
envelope, streaming — with the session's project put in the ASGI scope under
``api.authenticate.PROJECT_KEY`` (where the key check leaves a key's project; ``api/deps.py`` and
``api/hot.py`` read it), where no client can put it. The ``/v1`` routes themselves never read cookies,
so a cookie alone authenticates nothing there; here a state-changing request must also carry the page's
CSRF token in ``X-CSRF-Token``.
"""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from assistd.api.authenticate import PROJECT_KEY
from assistd.console.web import CSRF_HEADER, console_state, visitor
from assistd.errors import error_body

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_DROPPED_HEADERS = frozenset({b"cookie", b"authorization", CSRF_HEADER.encode()})


async def _refuse(send: Send, status: int, message: str, code: str) -> None:
    body = orjson.dumps(error_body(message, "invalid_request_error", None, code))
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class ApiRelay:
    """Mounted at ``/console/api``."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope)
        who = await visitor(request)
        if who.project_id is None:
            await _refuse(send, 401, "Sign in to the console first.", "not_signed_in")
            return
        if scope["method"] not in _SAFE_METHODS and not console_state(request).signer.csrf_ok(
                who.session, request.headers.get(CSRF_HEADER)):
            await _refuse(send, 403, "Missing or wrong CSRF token (X-CSRF-Token).", "csrf_failed")
            return
        root = scope.get("root_path", "")
        rest = scope["path"][len(root):] if root and scope["path"].startswith(root) else scope["path"]
        if not rest.startswith("/v1/"):
            await _refuse(send, 404, "Only /console/api/v1/… is relayed.", "not_found")
            return
        inner = {
            **{k: v for k, v in scope.items() if k not in ("path_params", "endpoint", "route")},
            "path": rest,
            "raw_path": rest.encode(),
            "root_path": "",
            "headers": [(k, v) for k, v in scope["headers"] if k not in _DROPPED_HEADERS],
            PROJECT_KEY: who.project_id,
        }
        await scope["app"](inner, receive, send)
