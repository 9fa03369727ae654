"""What a log line knows about where it was written: the request, its project, the thread/run/step.

Two context variables: the HTTP request being served (its ASGI scope, read lazily: the project is found by
api/authenticate.py and the path ids by the router only after the request began) and the ids a run's
task binds while executing it (``bind``). Each asyncio task has its own copy.
"""

from __future__ import annotations

import os
import re
from collections.abc import MutableMapping
from contextvars import ContextVar, Token
from typing import Any

REQUEST_ID_KEY = "assistd.request_id"
PROJECT_KEY = "assistd.project_id"  # set by api/authenticate.py (same string)

# An incoming x-request-id is echoed only if it is short and plain: it ends up in logs and headers.
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")

_PATH_IDS = ("thread_id", "run_id", "step_id", "assistant_id", "message_id", "file_id", "vector_store_id")

_request: ContextVar[MutableMapping[str, Any] | None] = ContextVar("assistd_request", default=None)
_bound: ContextVar[dict[str, str] | None] = ContextVar("assistd_ids", default=None)


# A new id is ``req_`` and 32 random hex digits, as the hosted API's were: unpredictable, so an id says
# nothing about how many requests a process served. They are cut from one os.urandom read per 256 ids (a
# system call per request cost ~0.8 µs on the hot GET); a forked child drops the parent's unused ones.
_ID_BATCH = 256
_ids: list[str] = []


def _new_request_id() -> str:
    if not _ids:
        raw = os.urandom(16 * _ID_BATCH).hex()
        _ids.extend("req_" + raw[i:i + 32] for i in range(0, len(raw), 32))
    return _ids.pop()


os.register_at_fork(after_in_child=_ids.clear)


def request_id_for(incoming: bytes | None) -> str:
    if incoming is not None:
        text = incoming.decode("latin-1")
        if _VALID_REQUEST_ID.fullmatch(text):
            return text
    return _new_request_id()


def enter_request(scope: MutableMapping[str, Any]) -> Token[MutableMapping[str, Any] | None]:
    return _request.set(scope)


def leave_request(token: Token[MutableMapping[str, Any] | None]) -> None:
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
