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
    # One draw from the OS's CSPRNG, written in base 62: uniform (a 62**length-sized range, by rejection
    # in randbelow), and ~10x cheaper than a ``secrets.choice`` per character (several ids per run).
    n = secrets.randbelow(62**length)
    chars = []
    for _ in range(length):
        n, digit = divmod(n, 62)
        chars.append(_ALPHABET[digit])
    return "".join(chars)


def new_id(kind: str) -> str:
    return PREFIXES[kind] + random_base62()


def now() -> int:
    """Unix seconds, the unit of every ``*_at`` field in the API."""
    return int(time.time())
