"""Sizes the 32 MB body limit alone does not make cheap: a thread is created with at most 32 messages
(the hosted API's limit; additional_messages alike) and a message's text is at most 256,000 characters.
100,000 one-word messages in one body were stored in one write transaction, holding every other write."""

from __future__ import annotations

import contextlib
from typing import Any

import openai
import pytest

from assistd.schemas.messages import MAX_MESSAGES, MAX_TEXT


@pytest.fixture(scope="module")
def ids(client) -> dict[str, str]:
    return {"assistant": client.beta.assistants.create(model="gpt-4o-mini").id,
            "thread": client.beta.threads.create().id}


def msg(content: Any = "hi") -> dict[str, Any]:
    return {"role": "user", "content": content}


def _many(n: int) -> list[dict[str, Any]]:
    return [msg() for _ in range(n)]


MESSAGE_LISTS = [
    ("thread", "/threads", lambda a, ms: {"messages": ms}, "messages"),
    ("thread-and-run", "/threads/runs", lambda a, ms: {"assistant_id": a, "thread": {"messages": ms}},
     "thread.messages"),
    ("run additional", "/threads/{thread}/runs", lambda a, ms: {"assistant_id": a, "additional_messages": ms},
     "additional_messages"),
]


def _cancel(client, body: dict[str, Any]) -> None:
    if body.get("object") == "thread.run":
        with contextlib.suppress(openai.BadRequestError):
            client.beta.threads.runs.cancel(body["id"], thread_id=body["thread_id"])


@pytest.mark.parametrize(("route", "body", "param"), [m[1:] for m in MESSAGE_LISTS], ids=[m[0] for m in MESSAGE_LISTS])
def test_message_lists_are_bounded(http, client, ids, route, body, param):
    path = route.format(**ids)
    r = http.post(path, json=body(ids["assistant"], _many(MAX_MESSAGES + 1)))
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param
    r = http.post(path, json=body(ids["assistant"], _many(MAX_MESSAGES)))
    assert r.status_code == 200, r.text
    _cancel(client, r.json())


@pytest.mark.parametrize(("content", "param"), [
    ("x" * (MAX_TEXT + 1), "content"),
    ([{"type": "text", "text": "x" * (MAX_TEXT + 1)}], "content[0].text"),
])
def test_message_text_is_bounded(http, ids, content, param):
    r = http.post(f"/threads/{ids['thread']}/messages", json=msg(content))
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param
    r = http.post("/threads", json={"messages": [msg(content)]})
    assert r.status_code == 400 and r.json()["error"]["param"] == f"messages[0].{param}", r.text


def test_text_at_the_limit_is_accepted(http, client):
    # A thread of its own: the shared one may still hold a run being cancelled by the tests above.
    thread = client.beta.threads.create().id
    r = http.post(f"/threads/{thread}/messages", json=msg("x" * MAX_TEXT))
    assert r.status_code == 200, r.text
