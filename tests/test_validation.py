"""Every limit of the spec one under / at / one over, and the 400 each breach answers.

A case is (path, body, param): param ``None`` means the request must succeed; otherwise it must be a 400
``invalid_request_error`` whose ``param`` names the field, with a body that is a valid ``ErrorResponse``.
Paths with ``{t}`` / ``{m}`` / ``{a}`` get a fresh thread / message / assistant of project A.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.spec import assert_schema

A, T, M, TM = "/assistants", "/threads", "/threads/{t}/messages", "/threads/{t}/messages/{m}"
MOD_A, MOD_T = "/assistants/{a}", "/threads/{t}"


def fn(name: str = "f", **extra: Any) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, **extra}}


def nested(depth: int) -> dict[str, Any]:
    """A JSON object nested ``depth`` levels deep (itself counts as one)."""
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def meta(n: int) -> dict[str, str]:
    return {f"k{i}": "v" for i in range(n)}


def msg(**fields: Any) -> dict[str, Any]:
    return {"role": "user", "content": "hi", **fields}


def asst(**fields: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", **fields}


RESPONSE_FORMAT_SCHEMA = {"type": "json_schema", "json_schema": {
    "name": "answer", "description": "d", "strict": True,
    "schema": {"type": "object", "properties": {"x": {"type": "integer"}}}}}

CASES: list[tuple[str, str, dict[str, Any], str | None]] = [
    # metadata: ≤16 pairs, keys ≤64, values ≤512 — on every body that takes it
    *[(f"{path} metadata 16", path, body(metadata=meta(16)), None) for path, body in
      [(A, asst), (T, dict), (M, msg), (MOD_A, dict), (MOD_T, dict), (TM, dict)]],
    *[(f"{path} metadata 17", path, body(metadata=meta(17)), "metadata") for path, body in
      [(A, asst), (T, dict), (M, msg), (MOD_A, dict), (MOD_T, dict), (TM, dict)]],
    ("key 63", A, asst(metadata={"k" * 63: "v"}), None),
    ("key 64", A, asst(metadata={"k" * 64: "v"}), None),
    ("key 65", A, asst(metadata={"k" * 65: "v"}), "metadata"),
    ("key 65 message", M, msg(metadata={"k" * 65: "v"}), "metadata"),
    ("value 511", A, asst(metadata={"k": "v" * 511}), None),
    ("value 512", T, {"metadata": {"k": "v" * 512}}, None),
    ("value 513", T, {"metadata": {"k": "v" * 513}}, "metadata.k"),
    ("value 513 modify message", TM, {"metadata": {"k": "v" * 513}}, "metadata.k"),
    ("metadata not an object", A, asst(metadata=["a"]), "metadata"),
    ("metadata value not a string", T, {"metadata": {"n": 1}}, "metadata.n"),
    ("nested thread message metadata", T, {"messages": [msg(metadata=meta(17))]}, "messages[0].metadata"),
    # assistant strings
    ("name 255", A, asst(name="n" * 255), None),
    ("name 256", A, asst(name="n" * 256), None),
    ("name 257", A, asst(name="n" * 257), "name"),
    ("name 257 modify", MOD_A, {"name": "n" * 257}, "name"),
    ("description 512", A, asst(description="d" * 512), None),
    ("description 513", A, asst(description="d" * 513), "description"),
    ("instructions 256000", A, asst(instructions="i" * 256_000), None),
    ("instructions 256001", A, asst(instructions="i" * 256_001), "instructions"),
    ("instructions 256001 modify", MOD_A, {"instructions": "i" * 256_001}, "instructions"),
    ("model missing", A, {"name": "x"}, "model"),
    ("model empty", A, asst(model=""), "model"),
    ("model not a string", A, asst(model=4), "model"),
    ("name not a string", A, asst(name=["x"]), "name"),
    # tools: ≤128, function names ≤64 matching ^[a-zA-Z0-9_-]+$
    ("127 tools", A, asst(tools=[fn(f"f{i}") for i in range(127)]), None),
    ("128 tools", A, asst(tools=[fn(f"f{i}") for i in range(128)]), None),
    ("129 tools", A, asst(tools=[fn(f"f{i}") for i in range(129)]), "tools"),
    ("129 tools modify", MOD_A, {"tools": [{"type": "code_interpreter"}] * 129}, "tools"),
    ("function name 63", A, asst(tools=[fn("f" * 63)]), None),
    ("function name 64", A, asst(tools=[fn("f" * 64)]), None),
    ("function name 65", A, asst(tools=[fn("f" * 65)]), "tools[0].function.name"),
    ("function name charset", A, asst(tools=[fn("Weather-get_2")]), None),
    ("function name space", A, asst(tools=[{"type": "code_interpreter"}, fn("get weather")]),
     "tools[1].function.name"),
    ("function name dot", A, asst(tools=[fn("a.b")]), "tools[0].function.name"),
    ("function name empty", A, asst(tools=[fn("")]), "tools[0].function.name"),
    ("function name missing", A, asst(tools=[{"type": "function", "function": {}}]), "tools[0].function.name"),
    ("function missing", A, asst(tools=[{"type": "function"}]), "tools[0].function"),
    ("function strict not bool", A, asst(tools=[fn(strict="yes")]), "tools[0].function.strict"),
    ("parameters not object", A, asst(tools=[fn(parameters="x")]), "tools[0].function.parameters"),
    ("parameters 100 deep", A, asst(tools=[fn(parameters=nested(100))]), None),
    ("parameters 101 deep", A, asst(tools=[fn(parameters=nested(101))]), "tools[0].function.parameters"),
    ("parameters 300 deep", A, asst(tools=[fn(parameters=nested(300))]), "tools[0].function.parameters"),
    ("parameters int 2**64-1", A, asst(tools=[fn(parameters={"maximum": 2**64 - 1})]), None),
    ("parameters int 2**64", A, asst(tools=[fn(parameters={"maximum": 2**64})]),
     "tools[0].function.parameters"),
    ("parameters int -2**63-1", A, asst(tools=[fn(parameters={"minimum": -(2**63) - 1})]),
     "tools[0].function.parameters"),
    ("tool type unknown", A, asst(tools=[{"type": "browser"}]), "tools[0].type"),
    ("tool type missing", A, asst(tools=[{}]), "tools[0].type"),
    ("tool not an object", A, asst(tools=["code_interpreter"]), "tools[0]"),
    ("tools not an array", A, asst(tools={"type": "code_interpreter"}), "tools"),
    ("max_num_results 1", A, asst(tools=[{"type": "file_search", "file_search": {"max_num_results": 1}}]), None),
    ("max_num_results 50", A, asst(tools=[{"type": "file_search", "file_search": {"max_num_results": 50}}]),
     None),
    ("max_num_results 0", A, asst(tools=[{"type": "file_search", "file_search": {"max_num_results": 0}}]),
     "tools[0].file_search.max_num_results"),
    ("max_num_results 51", A, asst(tools=[{"type": "file_search", "file_search": {"max_num_results": 51}}]),
     "tools[0].file_search.max_num_results"),
    ("max_num_results string", A,
     asst(tools=[{"type": "file_search", "file_search": {"max_num_results": "5"}}]),
     "tools[0].file_search.max_num_results"),
    ("score_threshold 1.5", A, asst(tools=[{"type": "file_search", "file_search": {
        "ranking_options": {"score_threshold": 1.5}}}]),
     "tools[0].file_search.ranking_options.score_threshold"),
    # temperature 0–2, top_p 0–1 (numbers, not strings or booleans)
    *[(f"temperature {v}", A, asst(temperature=v), None) for v in (0, 0.0, 1, 2, 2.0)],
    *[(f"temperature {v!r}", A, asst(temperature=v), "temperature") for v in (-0.01, 2.01, 3, "1", True)],
    ("temperature modify 2.5", MOD_A, {"temperature": 2.5}, "temperature"),
    *[(f"top_p {v}", A, asst(top_p=v), None) for v in (0, 0.5, 1)],
    *[(f"top_p {v!r}", A, asst(top_p=v), "top_p") for v in (-0.01, 1.01, "0.5", False)],
    ("temperature huge", A, asst(temperature=10**40), "temperature"),
    ("temperature 1e308", A, asst(temperature=1e308), "temperature"),
    # response_format
    ("response_format auto", A, asst(response_format="auto"), None),
    ("response_format text", A, asst(response_format={"type": "text"}), None),
    ("response_format json_object", A, asst(response_format={"type": "json_object"}), None),
    ("response_format json_schema", A, asst(response_format=RESPONSE_FORMAT_SCHEMA), None),
    ("response_format modify", MOD_A, {"response_format": {"type": "json_object"}}, None),
    ("response_format bad string", A, asst(response_format="json"), "response_format"),
    ("response_format bad type", A, asst(response_format={"type": "xml"}), "response_format.type"),
    ("response_format no type", A, asst(response_format={}), "response_format.type"),
    ("response_format number", A, asst(response_format=5), "response_format"),
    ("json_schema missing", A, asst(response_format={"type": "json_schema"}), "response_format.json_schema"),
    ("json_schema no name", A, asst(response_format={"type": "json_schema", "json_schema": {}}),
     "response_format.json_schema.name"),
    ("json_schema bad name", A, asst(response_format={"type": "json_schema", "json_schema": {"name": "a b"}}),
     "response_format.json_schema.name"),
    ("json_schema schema too deep", A, asst(response_format={"type": "json_schema", "json_schema": {
        "name": "x", "schema": nested(101)}}), "response_format.json_schema.schema"),
    ("reasoning_effort", A, asst(reasoning_effort="low"), None),
    ("reasoning_effort bad", A, asst(reasoning_effort="extreme"), "reasoning_effort"),
    # tool_resources: code_interpreter file_ids ≤20, file_search vector_store_ids ≤1
    *[(f"{path} file_ids 20", path, body(tool_resources={"code_interpreter": {"file_ids": ["<file>"] * 20}}), None)
      for path, body in [(A, asst), (T, dict), (MOD_A, dict), (MOD_T, dict)]],
    *[(f"{path} file_ids 21", path, body(tool_resources={"code_interpreter": {"file_ids": ["f"] * 21}}),
       "tool_resources.code_interpreter.file_ids")
      for path, body in [(A, asst), (T, dict), (MOD_A, dict), (MOD_T, dict)]],
    *[(f"{path} vector_store_ids 1", path, body(tool_resources={"file_search": {"vector_store_ids": ["<store>"]}}),
       None) for path, body in [(A, asst), (T, dict), (MOD_A, dict), (MOD_T, dict)]],
    *[(f"{path} vector_store_ids 2", path,
       body(tool_resources={"file_search": {"vector_store_ids": ["vs1", "vs2"]}}),
       "tool_resources.file_search.vector_store_ids")
      for path, body in [(A, asst), (T, dict), (MOD_A, dict), (MOD_T, dict)]],
    ("file_ids not array", T, {"tool_resources": {"code_interpreter": {"file_ids": "f"}}},
     "tool_resources.code_interpreter.file_ids"),
    ("file_id not string", A, asst(tool_resources={"code_interpreter": {"file_ids": [1]}}),
     "tool_resources.code_interpreter.file_ids[0]"),
    ("tool_resources not object", T, {"tool_resources": []}, "tool_resources"),
    # messages: role enum, content string or non-empty parts
    ("role user", M, msg(role="user"), None),
    ("role assistant", M, msg(role="assistant"), None),
    ("role system", M, msg(role="system"), "role"),
    ("role missing", M, {"content": "x"}, "role"),
    ("content missing", M, {"role": "user"}, "content"),
    ("content empty array", M, msg(content=[]), "content"),
    ("content number", M, msg(content=5), "content"),
    ("content one part", M, msg(content=[{"type": "text", "text": "x"}]), None),
    ("content part type", M, msg(content=[{"type": "text", "text": "x"}, {"type": "audio"}]), "content[1].type"),
    ("content part text missing", M, msg(content=[{"type": "text"}]), "content[0].text"),
    ("content part text object", M, msg(content=[{"type": "text", "text": {"value": "x"}}]), "content[0].text"),
    ("image_url missing url", M, msg(content=[{"type": "image_url", "image_url": {}}]),
     "content[0].image_url.url"),
    ("image_file detail", M, msg(content=[{"type": "image_file", "image_file": {"file_id": "f",
                                                                                "detail": "ultra"}}]),
     "content[0].image_file.detail"),
    ("attachment tool type", M, msg(attachments=[{"file_id": "f", "tools": [{"type": "function"}]}]),
     "attachments[0].tools[0].type"),
    ("attachment file_id missing", M, msg(attachments=[{"tools": []}]), "attachments[0].file_id"),
    ("attachments empty", M, msg(attachments=[]), None),
    ("thread message role", T, {"messages": [msg(), msg(role="bot")]}, "messages[1].role"),
    ("thread message content", T, {"messages": [msg(content=[])]}, "messages[0].content"),
    ("thread messages not array", T, {"messages": "hi"}, "messages"),
    # unknown fields, at the top and in nested request objects
    ("unknown assistant field", A, asst(x=1), "x"),
    ("unknown assistant modify field", MOD_A, {"file_ids": []}, "file_ids"),
    ("unknown thread field", T, {"x": 1}, "x"),
    ("unknown thread modify field", MOD_T, {"messages": []}, "messages"),
    ("unknown message field", M, msg(file_ids=["f"]), "file_ids"),
    ("unknown message modify field", TM, {"content": "x"}, "content"),
    ("unknown nested message field", T, {"messages": [msg(x=1)]}, "messages[0].x"),
]


@pytest.fixture(scope="module")
def objects_a(client) -> dict[str, str]:
    t = client.beta.threads.create(messages=[{"role": "user", "content": "hello"}])
    return {
        "a": client.beta.assistants.create(model="m").id,
        "t": t.id,
        "m": client.beta.threads.messages.list(t.id).data[0].id,
        "file": client.files.create(file=("v.txt", b"v"), purpose="assistants").id,  # file ids must exist
        "store": client.vector_stores.create(name="limits").id,  # … and store ids
    }


@pytest.mark.parametrize(("path", "body", "param"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_limit(http, objects_a, path, body, param):
    text = json.dumps(body).replace('"<file>"', json.dumps(objects_a["file"]))
    body = json.loads(text.replace('"<store>"', json.dumps(objects_a["store"])))
    r = http.post(path.format(**objects_a), json=body)
    if param is None:
        assert r.status_code == 200, r.text
        return
    assert r.status_code == 400, r.text
    error = assert_schema(r.json(), "ErrorResponse")["error"]
    assert error["type"] == "invalid_request_error", error
    assert error["param"] == param, error
    assert error["code"] is None
    assert error["message"] and "Input should be" not in error["message"], error  # our words, not pydantic's


def test_messages_say_what_was_wrong(http):
    def error(body: dict[str, Any], path: str = A) -> str:
        r = http.post(path, json=body)
        assert r.status_code == 400, r.text
        return r.json()["error"]["message"]

    assert error(asst(x=1)) == "Unrecognized request argument supplied: x"
    assert error({"name": "x"}) == "Missing required parameter: 'model'."
    assert error(asst(name="n" * 257)) == (
        "Invalid 'name': string too long. Expected a string with maximum length 256, "
        "but got a string with length 257 instead.")
    assert error(asst(temperature=2.5)) == (
        "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got 2.5 instead.")
    assert error(asst(tools=[{"type": "code_interpreter"}] * 129)) == (
        "Invalid 'tools': array too long. Expected an array with maximum length 128, "
        "but got an array with length 129 instead.")
    assert error(asst(metadata=meta(17))).startswith("Invalid 'metadata': too many properties.")
    assert error(asst(tools=[fn("a b")])).startswith(
        "Invalid 'tools[0].function.name': string does not match pattern.")
    assert error(asst(response_format={"type": "xml"})) == (
        "Invalid value: 'xml'. Supported values are: 'text', 'json_object', 'json_schema'.")
    assert error(asst(temperature="1")) == (
        "Invalid type for 'temperature': expected a number, but got a string instead.")
    assert error(msg(content=[]), "/threads") == "Unrecognized request argument supplied: role"
    t = http.post("/threads").json()["id"]
    assert error(msg(content=[]), f"/threads/{t}/messages") == (
        "Invalid 'content': array too short. Expected an array with minimum length 1, "
        "but got an array with length 0 instead.")
    assert error(msg(role="system"), f"/threads/{t}/messages") == (
        "Invalid value: 'system'. Supported values are: 'user' or 'assistant'.")


def test_failed_validation_stores_nothing(http):
    before = http.get("/assistants", params={"limit": 1}).json()["first_id"]
    assert http.post("/assistants", json=asst(name="n" * 257)).status_code == 400
    assert http.get("/assistants", params={"limit": 1}).json()["first_id"] == before
