"""Explicit ``null`` where OpenAI's document does not allow it is a 400 naming the param, on every field.

The fields come from the document itself (every property of every JSON request body, nested ones too), so a
field the document adds later is checked without touching this file: ``test_every_field_is_reached`` fails
until ``BODIES`` holds a body that reaches it. The nulls real clients send (../shared/spec/clients.md) are
all nullable in the document and stay accepted (tests/security/test_input_shapes.py)."""

from __future__ import annotations

import copy
import functools
from typing import Any

import pytest
import yaml

from tests.spec import spec_path

STATIC = {"type": "static", "static": {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 400}}
FN = {"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object"},
                                       "strict": True}}
FS = {"type": "file_search", "file_search": {"max_num_results": 5,
                                             "ranking_options": {"ranker": "auto", "score_threshold": 0.5}}}
TOOLS = [FN, FS, {"type": "code_interpreter"}]
RESOURCES = {"code_interpreter": {"file_ids": ["file-x"]}, "file_search": {
    "vector_store_ids": ["vs_x"], "vector_stores": [{"file_ids": ["file-x"], "chunking_strategy": STATIC,
                                                     "metadata": {}}]}}
FORMAT = {"type": "json_schema", "json_schema": {"name": "x", "description": "d", "schema": {"type": "object"},
                                                 "strict": True}}
CONTENT = [{"type": "text", "text": "hi"}, {"type": "image_file", "image_file": {"file_id": "file-x", "detail": "low"}},
           {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}}]
MESSAGE = {"role": "user", "content": CONTENT, "metadata": {},
           "attachments": [{"file_id": "file-x", "tools": [{"type": "code_interpreter"}]}]}
RUN = {"assistant_id": "asst_x", "model": "m", "instructions": "i", "tools": TOOLS, "metadata": {},
       "temperature": 1, "top_p": 1, "stream": False, "max_prompt_tokens": 1000, "max_completion_tokens": 1000,
       "truncation_strategy": {"type": "last_messages", "last_messages": 2},
       "tool_choice": {"type": "function", "function": {"name": "f"}}, "parallel_tool_calls": True,
       "response_format": FORMAT}
ASSISTANT = {"model": "m", "name": "n", "description": "d", "instructions": "i", "reasoning_effort": "low",
             "tools": TOOLS, "tool_resources": RESOURCES, "metadata": {}, "temperature": 1, "top_p": 1,
             "response_format": FORMAT}
EXPIRES = {"anchor": "last_active_at", "days": 1}
FILTER = {"type": "eq", "key": "k", "value": "v"}
SEARCH = {"query": "q", "rewrite_query": False, "max_num_results": 5, "filters": FILTER,
          "ranking_options": {"ranker": "auto", "score_threshold": 0.5}}

# operationId: (path, bodies); a field is checked in the first body that reaches it.
BODIES: dict[str, tuple[str, list[dict[str, Any]]]] = {
    "createAssistant": ("/assistants", [ASSISTANT]),
    "modifyAssistant": ("/assistants/asst_x", [{**ASSISTANT, "tool_resources": {
        "code_interpreter": {"file_ids": []}, "file_search": {"vector_store_ids": []}}}]),
    "createThread": ("/threads", [{"messages": [MESSAGE], "tool_resources": RESOURCES, "metadata": {}}]),
    "createThreadAndRun": ("/threads/runs", [{
        **RUN, "tool_resources": {"code_interpreter": {"file_ids": []},
                                                             "file_search": {"vector_store_ids": []}},
        "thread": {"messages": [MESSAGE], "tool_resources": RESOURCES, "metadata": {}}}]),
    "modifyThread": ("/threads/thread_x", [{"tool_resources": {
        "code_interpreter": {"file_ids": []}, "file_search": {"vector_store_ids": []}}, "metadata": {}}]),
    "createMessage": ("/threads/thread_x/messages", [MESSAGE]),
    "modifyMessage": ("/threads/thread_x/messages/msg_x", [{"metadata": {}}]),
    "createRun": ("/threads/thread_x/runs", [{**RUN, "reasoning_effort": "low", "additional_instructions": "a",
                                               "additional_messages": [MESSAGE]}]),
    "modifyRun": ("/threads/thread_x/runs/run_x", [{"metadata": {}}]),
    "submitToolOuputsToRun": ("/threads/thread_x/runs/run_x/submit_tool_outputs", [{
        "tool_outputs": [{"tool_call_id": "c", "output": "o"}], "stream": False}]),
    "createVectorStore": ("/vector_stores", [{"file_ids": [], "name": "n", "description": "d",
                                              "expires_after": EXPIRES, "chunking_strategy": STATIC,
                                              "metadata": {}}]),
    "modifyVectorStore": ("/vector_stores/vs_x", [{"name": "n", "expires_after": EXPIRES, "metadata": {}}]),
    "createVectorStoreFileBatch": ("/vector_stores/vs_x/file_batches", [
        {"file_ids": ["file-x"], "chunking_strategy": STATIC, "attributes": {}},
        {"files": [{"file_id": "file-x", "chunking_strategy": STATIC, "attributes": {}}]}]),
    "createVectorStoreFile": ("/vector_stores/vs_x/files", [{"file_id": "file-x", "chunking_strategy": STATIC,
                                                             "attributes": {}}]),
    "updateVectorStoreFileAttributes": ("/vector_stores/vs_x/files/file-x", [{"attributes": {}}]),
    "searchVectorStore": ("/vector_stores/vs_x/search", [
        SEARCH, {**SEARCH, "filters": {"type": "and", "filters": [FILTER]}}]),
}


@functools.cache
def _document() -> dict[str, Any]:
    return yaml.safe_load(spec_path().read_text())


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = _document()["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _nullable(schema: dict[str, Any]) -> bool:
    """The document's ways of allowing null: ``nullable: true``, ``allOf [.., {nullable}]``, a null branch."""
    if schema.get("nullable") is True or {"nullable": True} in schema.get("allOf", []):
        return True
    kind = schema.get("type")
    if kind == "null" or (isinstance(kind, list) and "null" in kind):
        return True
    return any(_nullable(_resolve(part)) for key in ("anyOf", "oneOf") for part in schema.get(key, [])
               if _resolve(part).get("type") == "null" or "$ref" not in part)


def _fields(schema: dict[str, Any], path: str, out: dict[str, bool], depth: int = 0) -> None:
    """Every property path (``tools[].function.name``) under ``schema``: whether the document allows null."""
    if depth > 12:
        return
    schema = _resolve(schema)
    for key in ("allOf", "anyOf", "oneOf"):
        for part in schema.get(key, []):
            _fields(part, path, out, depth + 1)
    if "items" in schema:
        _fields(schema["items"], f"{path}[]", out, depth + 1)
    for name, prop in (schema.get("properties") or {}).items():
        where = f"{path}.{name}" if path else name
        out[where] = out.get(where, False) or _nullable(prop) or _nullable(_resolve(prop))
        _fields(prop, where, out, depth + 1)


def request_fields() -> list[tuple[str, str, bool]]:
    """(operationId, field path, nullable) for every property of every JSON request body in the document."""
    rows = []
    for item in _document()["paths"].values():
        for op in item.values():
            if not isinstance(op, dict):
                continue
            body = (op.get("requestBody") or {}).get("content", {}).get("application/json")
            if body:
                out: dict[str, bool] = {}
                _fields(body["schema"], "", out)
                rows += [(op["operationId"], path, nullable) for path, nullable in out.items()]
    return rows


def _set_null(body: Any, parts: list[str], shown: str = "") -> str | None:
    """Set the field at ``parts`` to null in ``body`` (each ``[]`` at the first item that reaches it)."""
    head, rest = parts[0], parts[1:]
    if head == "[]":
        for i, item in enumerate(body if isinstance(body, list) else []):
            if (found := _set_null(item, rest, f"{shown}[{i}]")) is not None:
                return found
        return None
    if not isinstance(body, dict) or head not in body:
        return None
    shown = f"{shown}.{head}".lstrip(".")
    if not rest:
        body[head] = None
        return shown
    return _set_null(body[head], rest, shown)


def _split(path: str) -> list[str]:
    return [part for piece in path.replace("[]", ".[]").split(".") for part in [piece] if part]


def _with_null(operation: str, path: str) -> tuple[str, dict[str, Any], str] | None:
    route, bodies = BODIES[operation]
    for body in bodies:
        body = copy.deepcopy(body)
        if (param := _set_null(body, _split(path))) is not None:
            return route, body, param
    return None


REFUSED = [(op, path) for op, path, nullable in request_fields() if not nullable]


def test_every_field_is_reached():
    missing = [f"{op}: {path}" for op, path in REFUSED if op not in BODIES or _with_null(op, path) is None]
    assert not missing, f"add a body reaching these fields to BODIES: {missing}"


@pytest.mark.parametrize(("operation", "path"), REFUSED, ids=[f"{op}:{path}" for op, path in REFUSED])
def test_nulls_the_document_does_not_allow_are_400s(http, operation, path):
    found = _with_null(operation, path)
    if found is None:
        pytest.skip("not reached (test_every_field_is_reached says which)")
    route, body, param = found
    r = http.post(route, json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert r.json()["error"]["param"] == param, r.text


def test_a_null_body_is_a_400(http):
    """``createThread``'s body is optional; an absent body is an empty thread, but ``null`` is not an object."""
    r = http.post("/threads", content=b"null", headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["type"] == "invalid_request_error"
