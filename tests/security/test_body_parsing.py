"""A JSON body is read and parsed once, by api/request_body.py, and the route gets that value: FastAPI does
not parse it a second time (a 30 MiB body parsed twice was twice the CPU and memory)."""

from __future__ import annotations

import json

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from assistd.api.request_body import ParsedBodyRoute, RequestBody, parse_json


class Body(BaseModel):
    n: int
    s: str


def app() -> FastAPI:
    router = APIRouter(route_class=ParsedBodyRoute)

    @router.post("/v1/echo")
    async def echo(body: Body) -> dict:
        return {"n": body.n, "s": body.s}

    made = FastAPI()
    made.include_router(router)
    made.add_middleware(RequestBody, max_bytes=1024 * 1024, timeout_seconds=5)
    return made


def test_the_route_gets_the_parsed_body_without_parsing_again(monkeypatch):
    import starlette.requests

    class NoJSON:
        @staticmethod
        def loads(*_args: object, **_kwargs: object) -> None:
            raise AssertionError("the body was parsed a second time")

    monkeypatch.setattr(starlette.requests, "json", NoJSON)  # what Request.json() parses with
    with TestClient(app()) as client:
        r = client.post("/v1/echo", content=b'{"n": 12345678901234567890123, "s": "x"}',
                        headers={"Content-Type": "application/json"})
    assert r.status_code == 200 and r.json() == {"n": 12345678901234567890123, "s": "x"}


@pytest.mark.parametrize("raw", [b'{"a": 12345678901234567890123}', b'{"a": -9223372036854775809}',
                                 b'{"a": "1234567890123456789012345"}', b'{"a": 1.5e300}'])
def test_parse_json_keeps_python_values(raw):
    assert parse_json(raw) == json.loads(raw)


@pytest.mark.parametrize("raw", [b'{"a": NaN}', b'{"a": Infinity}', b'{"a": "\\ud800"}', b"\xff{}",
                                 b'{"a": 1} x'])
def test_parse_json_is_strict(raw):
    with pytest.raises(ValueError):
        parse_json(raw)
