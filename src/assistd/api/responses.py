"""JSON responses built from dicts or from JSON already stored."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response


class JSONBytes(Response):
    media_type = "application/json"


def json_response(obj: Any, status_code: int = 200) -> Response:
    return JSONBytes(orjson.dumps(obj), status_code=status_code)


def raw_json_response(raw: str | bytes, status_code: int = 200) -> Response:
    """Hand stored JSON to the client as is: a hot read never decodes and re-encodes it."""
    return JSONBytes(raw.encode() if isinstance(raw, str) else raw, status_code=status_code)
