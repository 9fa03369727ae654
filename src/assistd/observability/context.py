"""What a log line knows about where it was written: the request, its project, the thread/run/step.

Two context variables: the HTTP request being served (its ASGI scope, read lazily: the project is found by
api/authenticate.py and the path ids by the router only after the request began) and the ids a run's
task binds while executing it (``bind``). Each asyncio task has its own copy.
"""

from __future__ import annotations

import itertools
import os
import re
import secrets
from collections.abc import Iterator
from contextvars import ContextVar, Token
from typing import Any

REQUEST_ID_KEY = "assistd.request_id"
PROJECT_KEY = "assistd.project_id"  # set by api/authenticate.py (same string)

# An incoming x-request-id is echoed only if it is short and plain: it ends up in logs and headers.
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")

_PATH_IDS = ("thread_id", "run_id", "step_id", "assistant_id", "message_id", "file_id", "vector_store_id")

_request: ContextVar[dict[str, Any] | None] = ContextVar("assistd_request", default=None)
_bound: ContextVar[dict[str, str] | None] = ContextVar("assistd_ids", default=None)


# A new id is ``req_`` and 32 hex digits: 16 drawn at random once per process, then a counter from a random
# start (16 digits: it stays between 2**63 and 2**64). Unique across processes (64 random bits each, drawn
# again in a forked child) and within one (the counter), without os.urandom's system call per request.
_id_prefix = ""
_id_counter: Iterator[int] = iter(())


def _draw_id_source() -> None:
    global _id_prefix, _id_counter
    _id_prefix = "req_" + secrets.token_hex(8)
    _id_counter = itertools.count((1 << 63) | secrets.randbits(62))


_draw_id_source()
os.register_at_fork(after_in_child=_draw_id_source)


def request_id_for(incoming: bytes | None) -> str:
    if incoming is not None:
        text = incoming.decode("latin-1")
        if _VALID_REQUEST_ID.fullmatch(text):
            return text
    return _id_prefix + hex(next(_id_counter))[2:]


def enter_request(scope: dict[str, Any]) -> Token[dict[str, Any] | None]:
    return _request.set(scope)


def leave_request(token: Token[dict[str, Any] | None]) -> None:
    _request.reset(token)


def bind(**ids: str | None) -> None:
    """Adds ids (project, thread_id, run_id, step_id) to every log line this task writes from now on."""
    merged = dict(_bound.get() or {})
    merged.update({key: value for key, value in ids.items() if value is not None})
    _bound.set(merged)


def current() -> dict[str, str]:
    """The ids known here, for a log line: request id, project, thread/run/step ids."""
    out: dict[str, str] = {}
    scope = _request.get()
    if scope is not None:
        out["request_id"] = scope.get(REQUEST_ID_KEY, "")
        project = scope.get(PROJECT_KEY)
        if project:
            out["project"] = project
        params = scope.get("path_params")
        if params:
            for name in _PATH_IDS:
                if name in params:
                    out[name] = params[name]
    bound = _bound.get()
    if bound:
        out.update(bound)
    return out
