"""Request bodies, read once, after the key was checked (api/authenticate.py runs first).

* Over the configured size: 413, before being read into memory when Content-Length says so.
* A body that sends nothing for ``body_timeout_seconds`` is dropped (408, connection closed), on every
  route, uploads included: a half-sent body cannot pin memory or a task for longer than that.
* JSON bodies must say ``Content-Type: application/json`` (charset and other parameters allowed; no
  Content-Type at all for an empty body). Every SDK and client in clients.md does; a browser page can only
  send a cross-site request without a CORS preflight with ``text/plain``, form or no types, so this shuts
  request forgery against a keyless local server.
* The JSON is parsed once, here (``parse_json``; in a worker thread when large), and handed to the route
  through the scope (``ParsedBodyRoute``): FastAPI does not read or parse it again.

Python's ``json`` module, which FastAPI would parse with, takes ``NaN``, ``Infinity`` and lone UTF-16
surrogates (``"\\ud800"``); none can be stored or sent back (orjson refuses them), so such a body is a 400
here instead of a 500 later.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import Request
from fastapi.routing import APIRoute
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from assistd.api.asgi import close_after_refusal, declared_length, header, send_error

log = logging.getLogger("assistd.api")

# The hosted API's words for a body that is not JSON (also used by api.error_handlers).
JSON_INVALID = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your "
    "HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)"
)
JSON_PREFIX = "/v1/"  # the JSON API; other paths (the console) read their own bodies
PARSED_KEY = "assistd.json"  # scope key: (raw bytes, parsed value)
PARSE_IN_THREAD_BYTES = 512 * 1024  # larger bodies are parsed in a worker thread
_LONG_DIGITS = re.compile(rb"\d{19}")


class BodyTooLarge(Exception):
    pass


class BodyTimeout(Exception):
    pass


def unsupported_content_type(content_type: str) -> str:
    shown = content_type[:100]
    return (f"Unsupported content type: '{shown}'. This API method only accepts 'application/json' requests, "
            f"but you specified the header 'Content-Type: {shown}'. Please try again with a supported "
            "content type.")


def is_json(content_type: str) -> bool:
    return content_type.partition(";")[0].strip().lower() == "application/json"


class RequestBody:
    def __init__(self, app: ASGIApp, max_bytes: int, timeout_seconds: float,
                 exempt_prefixes: tuple[str, ...] = ()) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout_seconds
        self.exempt = exempt_prefixes  # routes that read their own (multipart) bodies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        receive = self._timed(receive)
        if scope["path"].startswith(self.exempt):
            await self._pass_through(scope, receive, send, limit=None)
            return
        length = declared_length(scope)
        if length is not None and length > self.max_bytes:
            await self._too_large(send, close=True)
            return
        if scope["method"] != "POST" or not scope["path"].startswith(JSON_PREFIX):  # e.g. the console's forms
            await self._pass_through(scope, receive, send, limit=self.max_bytes)
            return
        content_type = header(scope, b"content-type")
        if (content_type is not None or length != 0) and not is_json(content_type or ""):
            message = (unsupported_content_type(content_type) if content_type is not None else
                       "You must send a JSON body with the header 'Content-Type: application/json'.")
            await send_error(send, 400, message, close=close_after_refusal(scope))
            return
        try:
            body = await self._read(receive)
        except BodyTooLarge:
            await self._too_large(send, close=True)
            return
        except BodyTimeout:
            await self._timed_out(scope, send)
            return
        if body is None:  # the client went away
            return
        if body.strip():
            try:
                if len(body) > PARSE_IN_THREAD_BYTES:
                    value = await asyncio.to_thread(parse_json, body)
                else:
                    value = parse_json(body)
            except (orjson.JSONDecodeError, ValueError, RecursionError):
                await send_error(send, 400, JSON_INVALID)
                return
            scope[PARSED_KEY] = (body, value)
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.max_bytes:
                raise BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _pass_through(self, scope: Scope, receive: Receive, send: Send, *, limit: int | None) -> None:
        """The app reads the body itself, within ``limit`` bytes and the timeout."""
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if limit is not None and message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._too_large(send, close=True)
        except BodyTimeout:
            if not started:
                await self._timed_out(scope, send)

    def _timed(self, receive: Receive) -> Receive:
        """``receive`` that raises BodyTimeout when the body stops arriving (never once it is complete:
        afterwards the app only waits on it for the client to go away, which may take any time)."""
        complete = False
        timeout = self.timeout

        async def timed_receive() -> Message:
            nonlocal complete
            if complete:
                return await receive()
            try:
                async with asyncio.timeout(timeout):
                    message = await receive()
            except TimeoutError:
                raise BodyTimeout from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                complete = True
            return message

        return timed_receive

    async def _timed_out(self, scope: Scope, send: Send) -> None:
        log.info("dropped %s %s: its body sent nothing for %ss", scope["method"], scope["path"], self.timeout)
        await send_error(send, 408, f"The request body stopped arriving: nothing was received for "
                         f"{self.timeout:g} seconds.", close=True)

    async def _too_large(self, send: Send, *, close: bool) -> None:
        await send_error(send, 413, f"Request body too large: the limit is {self.max_bytes} bytes.", close=close)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive channel that yields the buffered body once, then defers to the real one (disconnects)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def parse_json(body: bytes) -> Any:
    """Strict JSON (no NaN, no lone surrogates, UTF-8) with Python's values: orjson turns integers beyond
    64 bits into floats, so a body holding one (19 digits in a row, maybe inside a string) is read again by
    ``json``, exact, as FastAPI would have; the routes' validation then words the range error."""
    value = orjson.loads(body)
    if _LONG_DIGITS.search(body):
        value = json.loads(body)
    return value


class ParsedBodyRoute(APIRoute):
    """A FastAPI route that takes the body ``RequestBody`` already parsed instead of parsing it again."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            parsed = request.scope.get(PARSED_KEY)
            if parsed is not None:
                # Starlette's Request caches the body and its JSON under these names.
                request._body, request._json = parsed
            return await handler(request)

        return handle
