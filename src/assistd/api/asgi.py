"""Small helpers for the ASGI layers that answer before FastAPI (authenticate, request_body, hot)."""

from __future__ import annotations

from starlette.types import Scope, Send

from assistd.errors import error_json

# A refused request whose unread body is larger than this closes its connection: what is still in flight
# would otherwise be read (and dropped) for nothing. Smaller ones are already in uvicorn's buffer (its
# flow-control high-water mark is 64 KiB), and closing with them unread could reset the connection under
# the client before it reads our answer.
CLOSE_ABOVE_BYTES = 64 * 1024


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of a (lower-case) request header, or None."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def declared_length(scope: Scope) -> int | None:
    """The body size the request announces: Content-Length, 0 without one, None if chunked or unparsable."""
    length: int | None = 0
    for key, value in scope["headers"]:
        if key == b"transfer-encoding":
            return None
        if key == b"content-length":
            length = int(value) if value.isdigit() else None
    return length


def close_after_refusal(scope: Scope) -> bool:
    length = declared_length(scope)
    return length is None or length > CLOSE_ABOVE_BYTES


async def send_error(send: Send, status: int, message: str, *, code: str | None = None,
                     close: bool = False) -> None:
    """Answer with OpenAI's error envelope; ``close`` ends the connection after it (the body is unread)."""
    body = error_json(message, "invalid_request_error", None, code)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
