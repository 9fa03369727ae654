"""The outermost ASGI layer: a request id on every response, one access log line and the HTTP metrics.

It wraps everything else (api/hot.py's fast GETs included), so every answer — a 401 from
api/authenticate.py, a 413 from api/request_body.py, a hot read, a FastAPI route, a stream — is counted
once and logged once. Metrics are labelled by route template: FastAPI's matched route (``scope["route"]``),
the template a hot read names (``ROUTE_KEY``), or ``other`` for paths no route matched (never the raw path,
which holds ids).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from assistd.observability import context, metrics, tracing

ROUTE_KEY = "assistd.route"  # set by layers that answer without FastAPI's router (api/hot.py)
UNMATCHED = "other"

access_log = logging.getLogger("assistd.access")


def route_template(scope: Scope) -> str:
    # FastAPI keeps an included router's routes unprefixed (scope["route"].path is "/assistants/{id}");
    # the route it resolved, with the "/v1" prefix, is its effective route context.
    fastapi_scope = scope.get("fastapi")
    if fastapi_scope:
        effective = fastapi_scope.get("effective_route_context")
        path = getattr(effective, "path_format", None)
        if path:
            return path
    route = scope.get("route")
    if route is not None:
        path = getattr(route, "path", None)
        if path:
            return path
    return scope.get(ROUTE_KEY) or UNMATCHED


class Observe:
    def __init__(self, app: ASGIApp, *, access: bool = True) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                incoming = value
                break
        request_id = context.request_id_for(incoming)
        scope[context.REQUEST_ID_KEY] = request_id
        header = (b"x-request-id", request_id.encode())
        started = time.perf_counter()
        status = 500  # what a crash before any response is answered with by the server
        token = context.enter_request(scope)
        span = trace_token = None
        if tracing.TRACER is not None:
            span, trace_token = _server_span(scope)

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = route_template(scope)
            if metrics.ENABLED:
                metrics.observe_http(route, scope["method"], status, seconds)
            if self.access:
                _log_access(scope, route, status, seconds)
            if span is not None:
                span.update_name(f"{scope['method']} {route}")
                span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                tracing.detach(trace_token)
                tracing.end(span, error=str(status) if status >= 500 else None)
            context.leave_request(token)


def _server_span(scope: Scope) -> tuple[Any, Any]:
    carrier = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]
               if name in (b"traceparent", b"tracestate")}
    span = tracing.start_span(scope["method"], kind="SERVER", parent=tracing.extract(carrier), attributes={
        "http.request.method": scope["method"], "url.path": scope["path"], "url.scheme": scope.get("scheme", "http"),
        "assistd.request_id": scope[context.REQUEST_ID_KEY]})
    return span, tracing.attach(span)


def _log_access(scope: Scope, route: str, status: int, seconds: float) -> None:
    client: Any = scope.get("client")
    access_log.info(
        "%s %s %d %.1fms", scope["method"], scope["path"], status, seconds * 1000,
        extra={"method": scope["method"], "path": scope["path"], "route": route, "status": status,
               "duration_ms": round(seconds * 1000, 3), "client": client[0] if client else None},
    )
