"""Request bodies: refused with 413 over the configured size (before being read into memory), and read as
JSON whatever Content-Type says — the hosted API did, and clients such as curl's ``-d`` send form types.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from assistd.errors import error_json


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
                    await self._refuse(send)
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
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = error_json(
            f"Request body too large: the limit is {self.max_bytes} bytes.", "invalid_request_error"
        )
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
