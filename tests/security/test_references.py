"""References to objects that do not exist, or exist in another project, are refused where they are given
(404 naming the param, as the hosted API answered "No vector store found with id …"), never accepted
and left for a run to fail on later with a server_error — and never usable to reach another project."""

from __future__ import annotations

import contextlib
from typing import Any

import openai
import pytest

MISSING = "missing"


@pytest.fixture(scope="module")
def refs(client, client_b) -> dict[str, str]:
    """Ids of project A's own objects and of project B's (which A must not be able to name)."""
    t = client.beta.threads.create()
    return {
        "store": client.vector_stores.create(name="mine").id,
        "file": client.files.create(file=("a.txt", b"mine"), purpose="assistants").id,
        "image": client.files.create(file=("a.png", b"\x89PNG\r\n\x1a\n"), purpose="vision").id,
        "assistant": client.beta.assistants.create(model="gpt-4o-mini").id,
        "thread": t.id,
        "b_store": client_b.vector_stores.create(name="theirs").id,
        "b_file": client_b.files.create(file=("b.txt", b"theirs"), purpose="assistants").id,
        "missing_store": "vs_" + "0" * 24,
        "missing_file": "file-" + "0" * 22,
    }


def fs(store: str) -> dict[str, Any]:
    return {"file_search": {"vector_store_ids": [store]}}


def ci(file: str) -> dict[str, Any]:
    return {"code_interpreter": {"file_ids": [file]}}


def image(file: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "text", "text": "see"},
                                        {"type": "image_file", "image_file": {"file_id": file}}]}


def attach(file: str, tool: str = "file_search") -> dict[str, Any]:
    return {"role": "user", "content": "see", "attachments": [{"file_id": file, "tools": [{"type": tool}]}]}


# (name, route, body builder from the id to test, param). "{assistant}" / "{thread}" are A's own.
CASES: list[tuple[str, str, Any, str]] = [
    ("assistant store", "/assistants", lambda i: {"model": "m", "tool_resources": fs(i)},
     "tool_resources.file_search.vector_store_ids"),
    ("assistant modify store", "/assistants/{assistant}", lambda i: {"tool_resources": fs(i)},
     "tool_resources.file_search.vector_store_ids"),
    ("assistant code file", "/assistants", lambda i: {"model": "m", "tool_resources": ci(i)},
     "tool_resources.code_interpreter.file_ids"),
    ("assistant helper file", "/assistants",
     lambda i: {"model": "m", "tool_resources": {"file_search": {"vector_stores": [{"file_ids": [i]}]}}},
     "tool_resources.file_search.vector_stores[0].file_ids"),
    ("thread store", "/threads", lambda i: {"tool_resources": fs(i)},
     "tool_resources.file_search.vector_store_ids"),
    ("thread modify store", "/threads/{thread}", lambda i: {"tool_resources": fs(i)},
     "tool_resources.file_search.vector_store_ids"),
    ("thread modify code file", "/threads/{thread}", lambda i: {"tool_resources": ci(i)},
     "tool_resources.code_interpreter.file_ids"),
    ("thread image", "/threads", lambda i: {"messages": [image(i)]}, "messages[0].content[1].image_file.file_id"),
    ("thread attachment", "/threads", lambda i: {"messages": [attach(i)]}, "messages[0].attachments"),
    ("message image", "/threads/{thread}/messages", image, "content[1].image_file.file_id"),
    ("message attachment", "/threads/{thread}/messages", attach, "attachments"),
    ("message code attachment", "/threads/{thread}/messages", lambda i: attach(i, "code_interpreter"),
     "attachments"),
    ("thread-and-run store", "/threads/runs",
     lambda i: {"assistant_id": "{assistant}", "tool_resources": fs(i)}, "tool_resources.file_search.vector_store_ids"),
    ("thread-and-run thread store", "/threads/runs",
     lambda i: {"assistant_id": "{assistant}", "thread": {"tool_resources": fs(i)}},
     "thread.tool_resources.file_search.vector_store_ids"),
    ("thread-and-run thread image", "/threads/runs",
     lambda i: {"assistant_id": "{assistant}", "thread": {"messages": [image(i)]}},
     "thread.messages[0].content[1].image_file.file_id"),
    ("thread-and-run thread attachment", "/threads/runs",
     lambda i: {"assistant_id": "{assistant}", "thread": {"messages": [attach(i)]}},
     "thread.messages[0].attachments"),
    ("run additional image", "/threads/{thread}/runs",
     lambda i: {"assistant_id": "{assistant}", "additional_messages": [image(i)]},
     "additional_messages[0].content[1].image_file.file_id"),
]


def _kind(param: str | None, body: Any) -> str:
    """What a case refers to: a vector store or a file."""
    return "store" if param is None or param.endswith("vector_store_ids") else "file"


def fill(value: Any, refs: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**refs) if "{" in value else value
    if isinstance(value, list):
        return [fill(v, refs) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, refs) for k, v in value.items()}
    return value


@pytest.mark.parametrize("whose", ["missing", "other project"])
@pytest.mark.parametrize(("route", "body", "param"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_unknown_and_foreign_references_are_404s(http, refs, route, body, param, whose):
    kind = _kind(param, body)
    ref = refs[f"missing_{kind}"] if whose == "missing" else refs[f"b_{kind}"]
    r = http.post(route.format(**refs), json=fill(body(ref), refs))
    assert r.status_code == 404, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and ref in error["message"], error
    if param is not None:
        assert error["param"] == param, error


@pytest.mark.parametrize(("route", "body", "param"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_own_references_are_accepted(http, client, refs, route, body, param):
    kind = _kind(param, body)
    kind = "image" if kind == "file" and "image_file" in str(body(MISSING)) else kind
    r = http.post(route.format(**refs), json=fill(body(refs[kind]), refs))
    assert r.status_code == 200, r.text
    if r.json().get("object") == "thread.run":  # leave the thread free for the next case
        run = r.json()
        with contextlib.suppress(openai.BadRequestError):  # it may have ended already
            client.beta.threads.runs.cancel(run["id"], thread_id=run["thread_id"])


@pytest.mark.parametrize("route", ["/assistants", "/threads", "/threads/runs"])
def test_file_search_resources_need_a_store_on_create(http, refs, route):
    """The spec's create shapes require ``vector_store_ids`` or ``vector_stores`` (issue 15)."""
    body = {"model": "m"} if route == "/assistants" else {"assistant_id": refs["assistant"]} \
        if route == "/threads/runs" else {}
    r = http.post(route, json={**body, "tool_resources": {"file_search": {}}})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "tool_resources.file_search.vector_store_ids"


def test_file_search_resources_may_be_emptied_on_modify(http, refs):
    r = http.post(f"/assistants/{refs['assistant']}", json={"tool_resources": {"file_search": {}}})
    assert r.status_code == 200, r.text
    assert r.json()["tool_resources"]["file_search"] == {"vector_store_ids": []}
