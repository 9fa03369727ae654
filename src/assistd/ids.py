"""Object ids shaped like OpenAI's: a type prefix and 24 random base62 characters."""

from __future__ import annotations

import secrets
import string
import time

_ALPHABET = string.ascii_letters + string.digits

PREFIXES = {
    "assistant": "asst_",
    "thread": "thread_",
    "message": "msg_",
    "run": "run_",
    "step": "step_",
    "file": "file-",
    "vector_store": "vs_",
    "file_batch": "vsfb_",
    "tool_call": "call_",
    "project": "proj_",
    "api_key": "key_",
}


def random_base62(length: int = 24) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def new_id(kind: str) -> str:
    return PREFIXES[kind] + random_base62()


def now() -> int:
    """Unix seconds, the unit of every ``*_at`` field in the API."""
    return int(time.time())
