"""Per-project rate limits as an ASGI layer: ``x-ratelimit-*`` on every ``/v1`` answer, 429 over a limit.

It sits outside the hot GETs (api/hot.py) so they are limited and carry the headers too; it finds the
project itself (a cached lookup: services/auth.py) and leaves an unauthenticated request to
api/authenticate.py, untouched. Decisions are services/rate_limits.py's.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from assistd.api.asgi import close_after_refusal, header
from assistd.api.authenticate import PREFIX, PROJECT_KEY, origin_of
from assistd.errors import APIError
from assistd.observability import metrics


def creates_run(scope: Scope) -> bool:
    """POST /v1/threads/runs or /v1/threads/{thread_id}/runs."""
    if scope["method"] != "POST":
        return False
    parts = scope["path"].rstrip("/").split("/")
    return parts[-1] == "runs" and (len(parts) == 4 or (len(parts) == 5 and parts[2] == "threads"))


class RateLimit:
    def __init__(self, app: ASGIApp, state: Any) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limits = getattr(self.state, "rate_limits", None)
        if scope["type"] != "http" or limits is None or not scope["path"].startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        project = scope.get(PROJECT_KEY)
        if project is None:
            try:
                project = await self.state.auth.project_for(header(scope, b"authorization"),
                                                            partial(origin_of, scope))
            except APIError:
                await self.app(scope, receive, send)  # the key check answers 401
                return
            scope[PROJECT_KEY] = project
        decision = None if limits.known_unlimited(project) else await limits.check(project,
                                                                                  creates_run=creates_run(scope))
        if decision is None:
            await self.app(scope, receive, send)
            return
        if decision.refusal is not None:
            refusal = decision.refusal
            if metrics.ENABLED:
                metrics.rate_limited.labels(refusal.kind).inc()
            body = orjson.dumps({"error": {"message": refusal.message, "type": refusal.kind, "param": None,
                                           "code": "rate_limit_exceeded"}})
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                       (b"retry-after", str(refusal.retry_after).encode()), *decision.headers]
            if close_after_refusal(scope):
                headers.append((b"connection", b"close"))
            await send({"type": "http.response.start", "status": 429, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        extra = decision.headers

        async def send_with_limits(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_limits)
