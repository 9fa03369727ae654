"""Variants of the reference classes in test_references.py: an attachment is a reference whatever its
``tools`` say (none, an empty list), in every body that carries messages."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="module")
def ids(client, client_b) -> dict[str, str]:
    return {
        "assistant": client.beta.assistants.create(model="gpt-4o-mini").id,
        "thread": client.beta.threads.create().id,
        "b_file": client_b.files.create(file=("b.txt", b"theirs"), purpose="assistants").id,
        "missing_file": "file-" + "0" * 22,
    }


def message(file_id: str, tools: Any) -> dict[str, Any]:
    attachment: dict[str, Any] = {"file_id": file_id}
    if tools is not None:
        attachment["tools"] = tools
    return {"role": "user", "content": "see", "attachments": [attachment]}


ROUTES = [
    ("message", "/threads/{thread}/messages", lambda m: m, "attachments"),
    ("thread", "/threads", lambda m: {"messages": [m]}, "messages[0].attachments"),
    ("thread-and-run", "/threads/runs", lambda m: {"assistant_id": "{assistant}", "thread": {"messages": [m]}},
     "thread.messages[0].attachments"),
    ("run additional", "/threads/{thread}/runs",
     lambda m: {"assistant_id": "{assistant}", "additional_messages": [m]}, "additional_messages[0].attachments"),
]


def _fill(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**ids) if "{" in value else value
    if isinstance(value, list):
        return [_fill(v, ids) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    return value


@pytest.mark.parametrize("tools", [None, []], ids=["no tools", "empty tools"])
@pytest.mark.parametrize("whose", ["missing_file", "b_file"])
@pytest.mark.parametrize(("route", "body", "param"), [r[1:] for r in ROUTES], ids=[r[0] for r in ROUTES])
def test_attachment_without_tools_is_still_a_reference(http, ids, route, body, param, whose, tools):
    r = http.post(route.format(**ids), json=_fill(body(message(ids[whose], tools)), ids))
    assert r.status_code == 404, r.text
    error = r.json()["error"]
    assert error["param"] == param and ids[whose] in error["message"], error
