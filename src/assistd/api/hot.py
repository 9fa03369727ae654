"""The hot GETs answered before FastAPI: retrieve an assistant, a thread, a message, a run, a run step.

Polling clients call these over and over (the SDKs' ``create_and_poll`` reads the run every
``openai-poll-after-ms``; dashboards re-read steps), and FastAPI's per-request machinery — middleware,
routing over every route, dependency solving — costs several times the work itself. ``HotReads`` is an
outer ASGI layer: a GET whose path has one of these shapes is authenticated, read with one statement
(``objects.read_row``; terminal steps from ``TerminalStepCache``) and answered directly.

Only the success path lives here. Anything else — no or a wrong key (api/authenticate.py answers it), an
unknown id (404 wording depends on which parent is missing), an invalid ``include[]``, a request with a body,
a database error — is handed to the FastAPI app unchanged, whose routes stay the single definition of
behaviour (and of the OpenAPI document). The answer is byte-for-byte what the FastAPI route sends.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from starlette.datastructures import QueryParams
from starlette.datastructures import State as AppState
from starlette.types import ASGIApp, Receive, Scope, Send

from assistd.api.authenticate import PROJECT_KEY, origin_of
from assistd.api.runs import POLL_HEADERS
from assistd.errors import APIError
from assistd.observability.http import ROUTE_KEY
from assistd.services import steps as step_service
from assistd.services.step_render import render_step
from assistd.store import objects
from assistd.store.tables import assistants, messages, runs, threads

log = logging.getLogger("assistd.api")

# What the FastAPI routes answer with (api/responses.py JSONBytes; api/runs.py POLL_HEADERS).
_JSON = (b"content-type", b"application/json")
_POLL = [(name.encode(), value.encode()) for name, value in POLL_HEADERS.items()]

Reader = Callable[[AppState, str, list[str], bytes], Awaitable[bytes | None]]


async def _assistant(state: AppState, project: str, parts: list[str], _query: bytes) -> bytes | None:
    row = await objects.read_row(state.db, assistants, parts[3], project_id=project)
    return None if row is None else row[0].encode()


async def _thread(state: AppState, project: str, parts: list[str], _query: bytes) -> bytes | None:
    row = await objects.read_row(state.db, threads, parts[3], project_id=project)
    return None if row is None else row[0].encode()


async def _message(state: AppState, project: str, parts: list[str], _query: bytes) -> bytes | None:
    row = await objects.read_row(state.db, messages, parts[5], project_id=project, thread_id=parts[3])
    return None if row is None else row[0].encode()


async def _run(state: AppState, project: str, parts: list[str], _query: bytes) -> bytes | None:
    row = await objects.read_row(state.db, runs, parts[5], project_id=project, thread_id=parts[3])
    return None if row is None else row[0].encode()


async def _step(state: AppState, project: str, parts: list[str], query: bytes) -> bytes | None:
    include: list[str] = []
    if query:
        include = QueryParams(query).getlist("include[]")
        if include and any(value not in step_service.INCLUDABLE for value in include):
            return None  # the route words the 400
    body = await step_service.find_raw(state.db, state.step_cache, project, parts[3], parts[5], parts[7])
    # What include[] asks for and nothing private (file_search results), as the route shows it.
    return None if body is None else render_step(body, include)


# The FastAPI route each reader stands in for: the metrics' route label (observability/http.py).
TEMPLATES: dict[Reader, str] = {
    _assistant: "/v1/assistants/{assistant_id}",
    _thread: "/v1/threads/{thread_id}",
    _message: "/v1/threads/{thread_id}/messages/{message_id}",
    _run: "/v1/threads/{thread_id}/runs/{run_id}",
    _step: "/v1/threads/{thread_id}/runs/{run_id}/steps/{step_id}",
}


def match(path: str) -> tuple[Reader, list[str]] | None:
    """The reader for a hot GET path (segments split on ``/``), or None. Mirrors the FastAPI routes:
    ``/v1/assistants/{a}``, ``/v1/threads/{t}``, ``/v1/threads/{t}/messages/{m}``,
    ``/v1/threads/{t}/runs/{r}``, ``/v1/threads/{t}/runs/{r}/steps/{s}`` (ids never empty)."""
    parts = path.split("/")
    n = len(parts)
    if n < 4 or n > 8 or n == 5 or n == 7 or parts[0] or parts[1] != "v1" or not parts[3]:
        return None
    if n == 4:
        if parts[2] == "assistants":
            return _assistant, parts
        return (_thread, parts) if parts[2] == "threads" else None
    if parts[2] != "threads" or not parts[5]:
        return None
    if n == 6:
        if parts[4] == "runs":
            return _run, parts
        return (_message, parts) if parts[4] == "messages" else None
    if parts[4] == "runs" and parts[6] == "steps" and parts[7]:
        return _step, parts
    return None


class HotReads:
    """ASGI middleware, outermost: answers the hot GETs' success path, hands everything else on."""

    def __init__(self, app: ASGIApp, state: AppState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and not scope.get("root_path"):
            found = match(scope["path"])
            if found is not None:
                body = await self._answer(scope, *found)
                if body is not None:
                    headers = [(b"content-length", str(len(body)).encode()), _JSON]
                    if found[0] is _run:
                        headers += _POLL
                    scope[ROUTE_KEY] = TEMPLATES[found[0]]
                    await send({"type": "http.response.start", "status": 200, "headers": headers})
                    await send({"type": "http.response.body", "body": body})
                    return
        await self.app(scope, receive, send)

    async def _answer(self, scope: Scope, reader: Reader, parts: list[str]) -> bytes | None:
        """The 200 body, or None to let the FastAPI route answer (whatever the reason)."""
        authorization = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                if authorization is None:
                    authorization = value.decode("latin-1")
            elif name == b"content-length" or name == b"transfer-encoding":
                return None  # a GET with a body: the route's middleware decides about it
        state: Any = self.state
        if not getattr(state, "ready", False):
            return None
        try:
            # The console's relay (console/relay.py) sets the signed-in session's project in the scope.
            project = scope.get(PROJECT_KEY)
            if project is None:
                project = await state.auth.project_for(authorization, partial(origin_of, scope))
                scope[PROJECT_KEY] = project  # if the route answers after all, the key is not checked again
            return await reader(state, project, parts, scope["query_string"])
        except APIError:
            return None  # 401: the route words it
        except Exception:
            log.debug("hot read failed; the route answers instead", exc_info=True)
            return None
