"""OpenAI's error envelope, built in one place.

Every failure leaves the server as ``{"error": {"message", "type", "param", "code"}}`` with the status the
hosted API used. Services raise :class:`APIError` (or a subclass); the app turns it into a response.
"""

from __future__ import annotations

from typing import Any

import orjson


class APIError(Exception):
    status_code = 400
    type = "invalid_request_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status_code: int | None = None,
        type: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        if status_code is not None:
            self.status_code = status_code
        if type is not None:
            self.type = type

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.param, self.code)


class InvalidRequest(APIError):
    """400: the request is malformed or breaks a rule of the API."""


class NotFound(APIError):
    status_code = 404

    def __init__(self, kind: str, object_id: str, *, param: str | None = None) -> None:
        super().__init__(f"No {kind} found with id '{object_id}'.", param=param)


class Unauthorized(APIError):
    status_code = 401


class Conflict(APIError):
    """The request is fine but the object's state forbids it (e.g. a thread with an active run)."""

    status_code = 400


class RateLimited(APIError):
    """429 ``rate_limit_exceeded``, with the ``retry-after`` the official SDKs wait before retrying."""

    status_code = 429

    def __init__(self, message: str, *, kind: str, retry_after: int) -> None:
        super().__init__(message, code="rate_limit_exceeded", type=kind)
        self.retry_after = retry_after


class ServiceUnavailable(APIError):
    """503 ``server_error``: something the server depends on is out of reach for now; retry after a moment."""

    status_code = 503
    type = "server_error"
    retry_after = 1

    def __init__(self, reason: str) -> None:
        super().__init__(f"The server is temporarily unable to serve this request: {reason}. Please retry shortly.")


def error_body(message: str, type: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def error_json(message: str, type: str, param: str | None = None, code: str | None = None) -> bytes:
    return orjson.dumps(error_body(message, type, param, code))
