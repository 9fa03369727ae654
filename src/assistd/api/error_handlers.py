"""Every failure as OpenAI's envelope: API errors, validation, unknown routes, wrong methods, crashes.

Validation errors become 400 ``invalid_request_error`` with ``param`` naming the offending field the way
the hosted API did (``tools[0].function.name``), never FastAPI's 422.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
from typing import Any

import asyncpg
import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from assistd.api.request_body import JSON_INVALID
from assistd.api.responses import json_response
from assistd.errors import APIError, RateLimited, ServiceUnavailable, error_body

log = logging.getLogger("assistd")

_TYPE_NAMES = {
    "string_type": "a string", "int_type": "an integer", "int_parsing": "an integer",
    "float_type": "a number", "float_parsing": "a number", "bool_type": "a boolean",
    "bool_parsing": "a boolean", "dict_type": "an object", "list_type": "an array",
    "model_type": "an object", "model_attributes_type": "an object",
}

def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _param_path(loc: tuple[Any, ...], body: Any, *, missing: bool) -> tuple[str, int]:
    """Walk ``loc`` through the request body, skipping the union tags pydantic inserts.

    A tag can also be a key of the body (``tools[0]`` of type ``function`` holds a ``function``), so the walk
    tries both: the path kept is the one that reaches the error's own key, then the one matching most steps.
    Returns the dotted/indexed path and how many steps matched the body (used to pick the most specific of
    several union errors).
    """
    items = list(loc[1:] if loc and loc[0] in ("body", "query", "path") else loc)
    seen: dict[tuple[int, int], tuple[bool, int, list[str]]] = {}  # keeps the walk linear in len(loc)²

    def walk(i: int, current: Any) -> tuple[bool, int, list[str]]:
        if i == len(items):
            return False, 0, []
        if (i, id(current)) not in seen:
            seen[i, id(current)] = choose(i, current)
        return seen[i, id(current)]

    def choose(i: int, current: Any) -> tuple[bool, int, list[str]]:
        key = items[i]
        last = i == len(items) - 1
        skip = walk(i + 1, current)
        step: tuple[bool, int, list[str]] | None = None
        if isinstance(key, int) and isinstance(current, list) and 0 <= key < len(current):
            step = _prepend(f"[{key}]", walk(i + 1, current[key]), last)
        elif isinstance(key, str) and isinstance(current, dict) and key in current:
            step = _prepend(f".{key}", walk(i + 1, current[key]), last)
        elif missing and last and isinstance(key, str):
            step = (True, 1, [f".{key}"])
        return skip if step is None or step[:2] < skip[:2] else step

    _, matched, parts = walk(0, body)
    return "".join(parts).lstrip("."), matched


def _prepend(part: str, rest: tuple[bool, int, list[str]], last: bool) -> tuple[bool, int, list[str]]:
    reached, matched, parts = rest
    return reached or last, matched + 1, [part, *parts]


def validation_error(exc: RequestValidationError) -> APIError:
    errors = exc.errors()
    body = getattr(exc, "body", None)
    if any(e.get("type") == "json_invalid" for e in errors):
        return APIError(JSON_INVALID)
    if body is None and any(e.get("loc") == ("body",) and e.get("type") == "missing" for e in errors):
        return APIError("You must provide a JSON body.")
    scored = []
    for err in errors:
        kind = err.get("type", "")
        param, matched = _param_path(tuple(err.get("loc", ())), body, missing=kind == "missing")
        scored.append((matched, not _wrong_branch(err), err, param))
    # The most specific error (deepest in the body) explains a union failure best; at equal depth, the
    # branch the value's JSON type picked (an empty `content` array is too short, not "not a string").
    _, _, err, param = max(scored, key=lambda s: s[:2])
    ctx = err.get("ctx") or {}
    if err.get("type") == "openai" and ctx.get("param"):
        # ctx's param starts at the field that raised it (``metadata.k``); keep where that field sits
        # (``messages[0].metadata`` → ``messages[0].metadata.k``).
        field = str(err["loc"][-1]) if err.get("loc") else ""
        prefix = param[: -len(field)] if field and param.endswith(field) else ""
        param = prefix + ctx["param"] if ctx["param"].startswith(field) else ctx["param"]
    elif err.get("type") in ("union_tag_not_found", "union_tag_invalid"):
        param = f"{param}.{str(ctx.get('discriminator', 'type')).strip(chr(39))}".lstrip(".")
    return APIError(_message(err, param), param=param or None)


def _wrong_branch(err: dict[str, Any]) -> bool:
    """A union member that failed only because the value is of another JSON type."""
    kind = err.get("type", "")
    return kind in _TYPE_NAMES or (kind == "literal_error" and not isinstance(err.get("input"), str))


def _message(err: dict[str, Any], param: str) -> str:
    kind = err.get("type", "")
    ctx = err.get("ctx") or {}
    value = err.get("input")
    if kind == "openai":
        # The message names the field as its validator saw it; name it where it sits in the body.
        return err["msg"].replace(f"'{ctx.get('param')}'", f"'{param}'", 1) if ctx.get("param") else err["msg"]
    if kind == "missing":
        return f"Missing required parameter: '{param}'."
    if kind == "extra_forbidden":
        return f"Unrecognized request argument supplied: {param}"
    if kind in ("string_too_long", "string_too_short"):
        which = "long" if kind.endswith("long") else "short"
        bound = ctx.get("max_length" if which == "long" else "min_length")
        edge = "maximum" if which == "long" else "minimum"
        return (f"Invalid '{param}': string too {which}. Expected a string with {edge} length {bound}, "
                f"but got a string with length {len(value) if isinstance(value, str) else '?'} instead.")
    if kind in ("too_long", "too_short"):
        which = "long" if kind == "too_long" else "short"
        bound = ctx.get("max_length" if which == "long" else "min_length")
        edge = "maximum" if which == "long" else "minimum"
        size = ctx.get("actual_length", len(value) if isinstance(value, (list, dict, str)) else "?")
        return (f"Invalid '{param}': array too {which}. Expected an array with {edge} length {bound}, "
                f"but got an array with length {size} instead.")
    if kind in ("less_than_equal", "less_than", "greater_than_equal", "greater_than"):
        above = kind.startswith("less")
        op = {"less_than_equal": "<=", "less_than": "<", "greater_than_equal": ">=", "greater_than": ">"}[kind]
        bound = ctx.get({"<=": "le", "<": "lt", ">=": "ge", ">": "gt"}[op])
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)
        number = "integer" if isinstance(value, int) and not isinstance(value, bool) else "decimal"
        return (f"Invalid '{param}': {number} {'above maximum' if above else 'below minimum'} value. "
                f"Expected a value {op} {bound}, but got {value} instead.")
    if kind == "string_pattern_mismatch":
        return (f"Invalid '{param}': string does not match pattern. Expected a string that matches the "
                f"pattern '{ctx.get('pattern')}'.")
    if kind in ("literal_error", "enum"):
        return f"Invalid value: '{value}'. Supported values are: {ctx.get('expected')}."
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tag = ctx.get("tag", "")
        expected = ctx.get("expected_tags", "")
        if kind == "union_tag_not_found":
            return f"Missing required parameter: '{param}'."
        return f"Invalid value: '{tag}'. Supported values are: {expected}."
    if kind in _TYPE_NAMES and not param:
        return f"Invalid body: expected {_TYPE_NAMES[kind]}, but got {_json_kind(value)} instead."
    if kind in _TYPE_NAMES:
        return f"Invalid type for '{param}': expected {_TYPE_NAMES[kind]}, but got {_json_kind(value)} instead."
    return f"Invalid '{param}': {err.get('msg', 'invalid value')}."


def install(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> Response:
        response = json_response(exc.body(), exc.status_code)
        if isinstance(exc, (RateLimited, ServiceUnavailable)):
            response.headers["retry-after"] = str(exc.retry_after)
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> Response:
        err = validation_error(exc)
        return json_response(err.body(), err.status_code)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> Response:
        where = f"({request.method} {request.url.path})"
        if exc.status_code == 404:
            message = f"Invalid URL {where}"
        elif exc.status_code == 405:
            message = f"Invalid method for URL {where}"
        else:
            message = str(exc.detail)
        return json_response(error_body(message, "invalid_request_error"), exc.status_code)

    @app.exception_handler(Exception)
    async def _crash(_: Request, exc: Exception) -> Response:
        if reason := unavailable(exc):
            log.warning("answering 503, %s (%s: %s)", reason, type(exc).__name__, exc)
            response = json_response(error_body(
                f"The server is temporarily unable to serve this request: {reason}. Please retry shortly.",
                "server_error"), 503)
            response.headers["retry-after"] = "1"
            return response
        log.exception("unhandled error", exc_info=exc)
        return json_response(
            error_body("The server had an error while processing your request. Sorry about that!",
                       "server_error"),
            500,
        )

    # A database restarting or unreachable, or a full disk, is an outage to retry (503), not a bug (500).
    # Registered for the likely classes so the route's middleware stack sees an answer, and checked again
    # for anything else: what a middleware raises (authentication reads the database) reaches only `_crash`.
    for kind in (sqlalchemy.exc.DBAPIError, sqlalchemy.exc.TimeoutError, OSError, asyncpg.PostgresError,
                 asyncpg.InterfaceError):
        app.add_exception_handler(kind, _crash)


def unavailable(exc: BaseException) -> str | None:
    """Why the request cannot be served for now (the database is out of reach, storage is full), or None
    when ``exc`` is something else (a bug)."""
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and (
            exc.connection_invalidated or isinstance(exc, sqlalchemy.exc.InterfaceError)):
        return "its database cannot be reached"
    seen: BaseException | None = exc
    for _ in range(4):  # SQLAlchemy's error -> the driver adapter's -> the driver's own
        if seen is None:
            return None
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return "its storage is full"
        if isinstance(seen, sqlite3.OperationalError) and "disk is full" in str(seen):
            return "its storage is full"
        if isinstance(seen, (sqlalchemy.exc.TimeoutError, OSError, asyncpg.PostgresConnectionError,
                             asyncpg.CannotConnectNowError, asyncpg.InterfaceError)):
            return "its database cannot be reached"
        if isinstance(seen, asyncpg.InsufficientResourcesError):  # e.g. max_connections reached
            return "its database is out of connections"
        seen = getattr(seen, "orig", None) or seen.__cause__
    return None
