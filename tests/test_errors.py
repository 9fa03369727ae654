"""The error envelope over raw HTTP: malformed bodies, unknown routes and ids, hostile payloads, no 422s."""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

import httpx
import pytest

from tests.conftest import KEY_A
from tests.spec import assert_schema


def error_of(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text[:500])
    assert r.headers["content-type"].startswith("application/json")
    return assert_schema(r.json(), "ErrorResponse")["error"]


@pytest.fixture(scope="module")
def ids(client) -> dict[str, str]:
    t = client.beta.threads.create(messages=[{"role": "user", "content": "x"}])
    return {"a": client.beta.assistants.create(model="m").id, "t": t.id,
            "m": client.beta.threads.messages.list(t.id).data[0].id}


JSON = {"Content-Type": "application/json"}  # what every SDK sends with a JSON body

BODY_ROUTES = ["/assistants", "/assistants/{a}", "/threads", "/threads/{t}", "/threads/{t}/messages",
               "/threads/{t}/messages/{m}"]


@pytest.mark.parametrize("path", BODY_ROUTES)
@pytest.mark.parametrize("raw", [b"{bad", b'{"model": "m",}', b"nul", b"{'model': 'm'}", b"\xff\xfe{}",
                                 b'{"model": NaN}', b'{"model": "m", "temperature": Infinity}',
                                 b'{"model": "m", "name": "\\ud800"}', b'{"metadata": {"k": "\\udc00x"}}',
                                 b"[" * 2000 + b"]" * 2000, b'{"a": 1} trailing'])
def test_bad_json_is_400(http, ids, path, raw):
    r = http.post(path.format(**ids), content=raw, headers=JSON)
    error = error_of(r, 400)
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith("We could not parse the JSON body of your request.")


@pytest.mark.parametrize("path", ["/assistants", "/assistants/{a}", "/threads/{t}", "/threads/{t}/messages",
                                  "/threads/{t}/messages/{m}"])
def test_missing_body_is_400(http, ids, path):
    error = error_of(http.post(path.format(**ids)), 400)
    assert error["message"] == "You must provide a JSON body." and error["param"] is None


@pytest.mark.parametrize("raw", [b"[]", b'[{"model": "m"}]', b'"model"', b"42", b"true", b"null"])
@pytest.mark.parametrize("path", ["/assistants", "/threads/{t}/messages", "/assistants/{a}"])
def test_non_object_body_is_400(http, ids, path, raw):
    error = error_of(http.post(path.format(**ids), content=raw, headers=JSON), 400)
    assert error["type"] == "invalid_request_error" and error["param"] is None
    assert error["message"].startswith("Invalid body: expected an object, but got ")


def test_thread_create_with_non_object_body(http):
    for raw in (b"[]", b'"x"', b"1"):
        error_of(http.post("/threads", content=raw, headers=JSON), 400)


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/nope"), ("POST", "/nope"), ("GET", "/assistants/x/y"), ("GET", "/threads/t/messages/m/z"),
    ("GET", "/v2/assistants"), ("DELETE", "/threads/t/runs/x/y/z"),
])
def test_unknown_route_is_404(http, method, path):
    error = error_of(http.request(method, path), 404)
    assert error["message"] == f"Invalid URL ({method} /v1{path})"
    assert error["type"] == "invalid_request_error"


def test_unknown_route_outside_v1_is_404(base_url):
    r = httpx.get(base_url.removesuffix("/v1") + "/nothing-here", headers={"Authorization": f"Bearer {KEY_A}"})
    error_of(r, 404)


@pytest.mark.parametrize(("method", "path"), [
    ("PUT", "/assistants"), ("PATCH", "/assistants/{a}"), ("DELETE", "/assistants"), ("GET", "/threads"),
    ("DELETE", "/threads/{t}/messages"), ("PUT", "/threads/{t}/messages/{m}"),
])
def test_wrong_method_is_405(http, ids, method, path):
    path = path.format(**ids)
    error = error_of(http.request(method, path), 405)
    assert error["message"] == f"Invalid method for URL ({method} /v1{path})"


def test_body_over_32_mib_is_413(http):
    big = b'{"model": "m", "instructions": "' + b"x" * (33 * 1024 * 1024) + b'"}'
    r = http.post("/assistants", content=big, headers=JSON)
    error = error_of(r, 413)
    assert error["type"] == "invalid_request_error" and "too large" in error["message"]


def test_body_over_32_mib_without_length_is_413(http):
    def chunks():
        yield b'{"model": "m", "instructions": "'
        for _ in range(33):
            yield b"x" * (1024 * 1024)
        yield b'"}'

    error_of(http.post("/assistants", content=chunks(), headers=JSON), 413)


def test_body_under_limit_is_read(http):
    # Just under 32 MiB but far over instructions' 256,000: read whole, then refused by validation.
    big = b'{"model": "m", "instructions": "' + b"x" * (31 * 1024 * 1024) + b'"}'
    error = error_of(http.post("/assistants", content=big, headers=JSON), 400)
    assert error["param"] == "instructions"


@pytest.mark.parametrize(("method", "path", "kind"), [
    *[(m, "/assistants/{x}", "assistant") for m in ("GET", "POST", "DELETE")],
    *[(m, "/threads/{x}", "thread") for m in ("GET", "POST", "DELETE")],
    *[(m, "/threads/{x}/messages", "thread") for m in ("GET", "POST")],
    *[(m, "/threads/{t}/messages/{x}", "message") for m in ("GET", "POST", "DELETE")],
])
def test_unknown_ids_are_404(http, ids, method, path, kind):
    missing = {"assistant": "asst_abc123", "thread": "thread_abc123", "message": "msg_abc123"}[kind]
    body = {"role": "user", "content": "x"} if path.endswith("/messages") else {}
    r = http.request(method, path.format(x=missing, **ids), json=body if method == "POST" else None)
    error = error_of(r, 404)
    assert error["message"] == f"No {kind} found with id '{missing}'."
    assert error["type"] == "invalid_request_error" and error["param"] is None


def test_openai_beta_header_accepted_not_required(base_url):
    for headers in ({}, {"OpenAI-Beta": "assistants=v2"}, {"OpenAI-Beta": "assistants=v1"}):
        r = httpx.post(f"{base_url}/assistants", json={"model": "m"},
                       headers={"Authorization": f"Bearer {KEY_A}", **headers})
        assert r.status_code == 200, r.text


def deep(n: int) -> Any:
    value: Any = "x"
    for _ in range(n):
        value = {"k": value}
    return value


HOSTILE: list[tuple[str, Any]] = [
    ("/assistants", {"model": "m", "tools": [{"type": "function", "function": {"name": "f",
                                                                             "parameters": deep(500)}}]}),
    ("/assistants", {"model": "m", "metadata": deep(50)}),
    ("/assistants", {"model": "m", "tools": [{"type": "function", "function": {
        "name": "f", "parameters": {"big": 10**30, "neg": -(10**30), "f": 1e308}}}]}),
    ("/assistants", {"model": "m", "temperature": 10**400}),
    ("/assistants", {"model": 10**100}),
    ("/assistants", {"model": "m", "tools": [{"type": "file_search", "file_search": {"max_num_results": 10**30}}]}),
    ("/assistants", {"model": "m", "name": True}),
    ("/assistants", {"model": "m", "temperature": None, "top_p": {"x": 1}}),
    ("/assistants", {"model": ["m"]}),
    ("/assistants", {"model": {"id": "m"}}),
    ("/assistants", {"model": "m", "tools": [None]}),
    ("/assistants", {"model": "m", "tools": [{"type": None}]}),
    ("/assistants", {"model": "m", "tools": [{"type": ["function"]}]}),
    ("/assistants", {"model": "m", "tools": [{"type": "function", "function": "f"}]}),
    ("/assistants", {"model": "m", "tool_resources": {"code_interpreter": "x"}}),
    ("/assistants", {"model": "m", "tool_resources": {"file_search": {"vector_stores": [{"file_ids": "f"}]}}}),
    ("/assistants", {"model": "m", "tool_resources": {"file_search": {"vector_stores": "x"}}}),
    ("/assistants", {"model": "m", "response_format": {"type": "json_schema", "json_schema": "x"}}),
    ("/assistants", {"model": "m", "response_format": [{"type": "text"}]}),
    ("/assistants", {"model": "m", "metadata": {"k": None}}),
    ("/assistants", {"model": "m", "metadata": "k=v"}),
    ("/assistants", {"": 1, "model": "m"}),
    ("/threads", {"messages": [None]}),
    ("/threads", {"messages": [{"role": "user", "content": [None]}]}),
    ("/threads", {"messages": [{"role": "user", "content": [{"type": "text", "text": None}]}]}),
    ("/threads", {"messages": [{"role": "user", "content": "x", "attachments": "f"}]}),
    ("/threads", {"messages": [{"role": "user", "content": "x", "attachments": [{"file_id": 1}]}]}),
    ("/threads", {"messages": [{"role": ["user"], "content": "x"}]}),
    ("/threads", {"messages": {"role": "user", "content": "x"}}),
    ("/threads", {"tool_resources": {"file_search": {"vector_store_ids": [None]}}}),
    ("/threads/{t}/messages", {"role": "user", "content": {"type": "text", "text": "x"}}),
    ("/threads/{t}/messages", {"role": "user", "content": [{"type": "image_url", "image_url": "http://x"}]}),
    ("/threads/{t}/messages", {"role": "user", "content": [{"type": "image_file", "image_file": {"file_id": 5}}]}),
    ("/threads/{t}/messages/{m}", {"metadata": 5}),
    ("/assistants/{a}", {"tools": [{"type": "function", "function": {"name": "x" * 10_000}}]}),
    ("/threads/{t}", {"tool_resources": {"code_interpreter": {"file_ids": [[]]}}}),
]


@pytest.mark.parametrize(("path", "body"), HOSTILE, ids=[f"{i}" for i in range(len(HOSTILE))])
def test_hostile_payloads_are_400(http, ids, path, body):
    r = http.post(path.format(**ids), content=json.dumps(body), headers=JSON)
    error = error_of(r, 400)
    assert error["type"] == "invalid_request_error"


ACCEPTED: list[tuple[str, Any]] = [
    ("/assistants", {"model": "m", "name": "nul\u0000inside", "metadata": {"k\u0000": "v\u0000"}}),
    ("/assistants", {"model": "m", "name": "ünïcödé 名前 🤖", "description": "\u202e\ufeff",
                     "metadata": {"😀": "🎉" * 100}}),
    ("/assistants", {"model": "m", "tools": [{"type": "function", "function": {
        "name": "f", "parameters": {"maximum": 2**63, "d": -(2**63), "pi": 3.14, "x": None}}}]}),
    ("/threads", {"messages": [{"role": "user", "content": "nul\u0000byte \U0001f600"}]}),
]


@pytest.mark.parametrize(("path", "body"), ACCEPTED, ids=[f"{i}" for i in range(len(ACCEPTED))])
def test_odd_but_valid_payloads_round_trip(http, path, body):
    r = http.post(path, json=body)
    assert r.status_code == 200, r.text
    obj = r.json()
    schema = "AssistantObject" if path == "/assistants" else "ThreadObject"
    assert_schema(obj, schema)
    if path == "/assistants":
        assert http.get(f"/assistants/{obj['id']}").json() == obj
        for key in ("name", "description", "metadata"):
            if key in body:
                assert obj[key] == body[key]
        if body.get("tools"):
            assert obj["tools"][0]["function"]["parameters"] == body["tools"][0]["function"]["parameters"]
    else:
        message = http.get(f"/threads/{obj['id']}/messages").json()["data"][0]
        assert message["content"][0]["text"]["value"] == body["messages"][0]["content"]


@pytest.mark.parametrize("bad_id", ["a\u0000b", "%00", "asst_\u0000", "\U0001f600", "x" * 500, "' OR 1=1 --"])
def test_hostile_ids_are_404(http, ids, bad_id):
    quoted = urllib.parse.quote(bad_id, safe="")
    for method, path in [("GET", f"/assistants/{quoted}"), ("DELETE", f"/threads/{quoted}"),
                         ("GET", f"/threads/{ids['t']}/messages/{quoted}"),
                         ("GET", f"/threads/{quoted}/messages")]:
        r = http.request(method, path)
        assert r.status_code == 404, (method, path, r.text)
        assert_schema(r.json(), "ErrorResponse")


@pytest.mark.parametrize("param", ["after", "before", "run_id"])
def test_hostile_query_values(http, ids, param):
    for value in ["a\u0000b", "\U0001f600", "x" * 2000]:
        r = http.get(f"/threads/{ids['t']}/messages", params={param: value})
        if param == "run_id":
            assert r.status_code == 200, r.text
            assert r.json()["data"] == []
        else:
            assert error_of(r, 400)["param"] == param


def test_no_422_anywhere(http, ids):
    """FastAPI's own validation status never leaks: query, path and body problems are all 400/404."""
    probes = [
        ("GET", "/assistants?limit=x"), ("GET", "/assistants?limit=1&limit=x"), ("GET", "/assistants?order=1"),
        ("POST", "/assistants"), ("POST", "/threads/{t}/messages"),
        ("GET", "/threads/{t}/messages?limit=-5"), ("GET", "/threads/{t}/messages?run_id="),
    ]
    for method, path in probes:
        r = http.request(method, path.format(**ids))
        assert r.status_code != 422 and r.status_code < 500, (method, path, r.text)


def test_openapi_and_docs_served(base_url):
    root = base_url.removesuffix("/v1")
    r = httpx.get(f"{root}/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.") and "/v1/assistants" in doc["paths"]
    assert "/v1/threads/{thread_id}/messages" in doc["paths"]
    r = httpx.get(f"{root}/docs")
    assert r.status_code == 200 and "swagger" in r.text.lower()


def test_healthz_needs_no_key(base_url):
    r = httpx.get(base_url.removesuffix("/v1") + "/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_server_error_never_for_client_input(http):
    """A sweep of wrong types into every field of the assistant body: each is a 400 naming the field."""
    fields = ["model", "name", "description", "instructions", "tools", "tool_resources", "metadata",
              "temperature", "top_p", "response_format", "reasoning_effort"]
    wrong = [123, 1.5, True, "str", [], [1], {"x": 1}]
    for field in fields:
        for value in wrong:
            body = {"model": "m", field: value}
            r = http.post("/assistants", json=body)
            if r.status_code == 200:
                continue  # the value happened to be valid for the field (e.g. a string name)
            error = error_of(r, 400)
            assert error["param"] is not None and error["param"].split(".")[0].split("[")[0] == field, (
                field, value, error)
