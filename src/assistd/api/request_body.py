"""Request bodies: refused with 413 over the configured size (before being read into memory), read as
JSON whatever Content-Type says — the hosted API did, and clients such as curl's ``-d`` send form types —
and checked to be strict JSON before any route sees them.

Python's ``json`` module, which FastAPI parses with, takes ``NaN``, ``Infinity`` and lone UTF-16
surrogates (``"\\ud800"``); none can be stored or sent back (orjson refuses them), so such a body is a 400
here instead of a 500 later.
"""

from __future__ import annotations

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from assistd.errors import error_json

# The hosted API's words for a body that is not JSON (also used by api.error_handlers).
JSON_INVALID = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your "
    "HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)"
)


class BodyTooLarge(Exception):
    pass


class RequestBody:
    def __init__(self, app: ASGIApp, max_bytes: int, exempt_prefixes: tuple[str, ...] = ()) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.exempt = exempt_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.exempt):
            await self.app(scope, receive, send)
            return
        headers = [(n, v) for n, v in scope["headers"] if n != b"content-type"]
        headers.append((b"content-type", b"application/json"))
        scope = {**scope, "headers": headers}
        for name, value in headers:
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = False
                if too_big:
                    await self._too_large(send)
                    return
        if scope["method"] == "POST":
            # Read the body whole (routes would anyway), check it, then replay it to the app.
            chunks: list[bytes] = []
            seen = 0
            while True:
                message = await receive()
                if message["type"] != "http.request":  # client went away
                    return
                chunk = message.get("body", b"")
                seen += len(chunk)
                if seen > self.max_bytes:
                    await self._too_large(send)
                    return
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
            body = b"".join(chunks)
            if body.strip():
                try:
                    orjson.loads(body)
                except orjson.JSONDecodeError:
                    await self._refuse(send, 400, JSON_INVALID)
                    return
            await self.app(scope, _replay(body, receive), send)
            return

        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
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
                await self._too_large(send)

    async def _too_large(self, send: Send) -> None:
        await self._refuse(send, 413, f"Request body too large: the limit is {self.max_bytes} bytes.")

    async def _refuse(self, send: Send, status: int, message: str) -> None:
        body = error_json(message, "invalid_request_error")
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


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
