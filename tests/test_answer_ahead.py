"""Runs whose model is offered no tool: their answer's message and step are inserted while the model is
called, announced with its first text (runner/answer_steps.py). Streams and stored records must be exactly
as when they are created with the first text, whatever the turn ends with."""

from __future__ import annotations

from typing import Any

import pytest
from openai import OpenAI

from tests.test_streaming import (
    TEXT_RUN,
    check_one_run,
    check_steps_closed,
    new_thread,
    stream_post,
    wait_terminal,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def plain(client: OpenAI) -> Any:
    return client.beta.assistants.create(model="gpt-4o-mini", name="no tools", instructions="Be brief.")


def stored(client: OpenAI, thread_id: str, run_id: str) -> tuple[list[dict], list[dict]]:
    steps = [s.model_dump() for s in client.beta.threads.runs.steps.list(run_id, thread_id=thread_id)]
    answers = [m.model_dump() for m in client.beta.threads.messages.list(thread_id) if m.role == "assistant"]
    return steps, answers


def no_answer_events(names: list[str]) -> None:
    assert not [n for n in names if n.startswith(("thread.message.", "thread.run.step."))], names


@pytest.mark.parametrize("path", ["run", "thread-and-run"])
def test_text_answer_streams_and_stores_alike(http, client, plain, path):
    reply = "one two three four five"
    if path == "run":
        thread = new_thread(client, f"[reply: {reply}]")
        s = stream_post(http, f"/threads/{thread.id}/runs", {"assistant_id": plain.id, "stream": True})
    else:
        s = stream_post(http, "/threads/runs", {"assistant_id": plain.id, "stream": True, "thread": {
            "messages": [{"role": "user", "content": f"[reply: {reply}]"}]}})
    assert s.names() == (TEXT_RUN if path == "run" else ["thread.created", *TEXT_RUN])
    assert s.text() == reply
    check_steps_closed(s, client)
    ids = check_one_run(s)
    steps, answers = stored(client, ids["thread_id"], ids["run_id"])
    assert [a["id"] for a in answers] == [s.first("thread.message.created")["id"]]
    assert answers[0]["content"][0]["text"]["value"] == reply and answers[0]["status"] == "completed"
    assert s.first("thread.message.created")["created_at"] <= s.first("thread.run.step.completed")["completed_at"]


def test_empty_answer_is_the_prepared_one(http, client, plain):
    thread = new_thread(client, "[reply: ]")
    s = stream_post(http, f"/threads/{thread.id}/runs", {"assistant_id": plain.id, "stream": True})
    assert s.names() == [n for n in TEXT_RUN if n != "thread.message.delta…"]
    check_steps_closed(s, client)
    steps, answers = stored(client, thread.id, check_one_run(s)["run_id"])
    assert [a["id"] for a in answers] == [s.first("thread.message.completed")["id"]]
    assert answers[0]["content"] == [{"type": "text", "text": {"value": "", "annotations": []}}]


def test_upstream_error_before_the_first_token_leaves_no_answer(http, client, plain):
    thread = new_thread(client, "[error: 400]")
    s = stream_post(http, f"/threads/{thread.id}/runs", {"assistant_id": plain.id, "stream": True})
    assert s.names()[-2:] == ["thread.run.failed", "done"]
    no_answer_events(s.names())
    assert stored(client, thread.id, check_one_run(s)["run_id"]) == ([], [])


def test_cut_after_the_first_tokens_keeps_them_on_the_failed_answer(http, client, plain):
    thread = new_thread(client, "[stream-error] [reply: one two three four five six]")
    s = stream_post(http, f"/threads/{thread.id}/runs", {"assistant_id": plain.id, "stream": True})
    assert s.names()[-4:] == ["thread.message.incomplete", "thread.run.step.failed", "thread.run.failed", "done"]
    check_steps_closed(s, client)
    _, answers = stored(client, thread.id, check_one_run(s)["run_id"])
    assert len(answers) == 1 and answers[0]["content"][0]["text"]["value"] == s.text() == "one two"


def test_cancel_before_the_first_token_leaves_no_answer(http, client, plain):
    thread = new_thread(client, "[delay: 5] [reply: too late]")
    runs: list[dict] = []

    def on_event(name: str, data: Any) -> None:
        if name == "thread.run.in_progress":
            runs.append(client.beta.threads.runs.cancel(data["id"], thread_id=thread.id).model_dump())

    s = stream_post(http, f"/threads/{thread.id}/runs", {"assistant_id": plain.id, "stream": True},
                    on_event=on_event)
    assert runs and s.names()[-3:] == ["thread.run.cancelling", "thread.run.cancelled", "done"]
    no_answer_events(s.names())
    assert stored(client, thread.id, runs[0]["id"]) == ([], [])


def test_a_tool_call_nobody_offered_replaces_the_prepared_answer(http, client, plain):
    """A model may call a function it was not given: the answer prepared for its text is dropped."""
    thread = new_thread(client, '[tool: get_weather {"city": "Paris"}]')
    s = stream_post(http, f"/threads/{thread.id}/runs", {"assistant_id": plain.id, "stream": True})
    assert s.names()[-2:] == ["thread.run.requires_action", "done"]
    assert not [n for n in s.names() if n.startswith("thread.message.")]
    run_id = check_one_run(s)["run_id"]
    steps, answers = stored(client, thread.id, run_id)
    assert [st["type"] for st in steps] == ["tool_calls"] and answers == []
    client.beta.threads.runs.cancel(run_id, thread_id=thread.id)
    assert wait_terminal(client, thread.id, run_id).status == "cancelled"


def test_a_prompt_over_max_prompt_tokens_leaves_no_answer(http, client, plain):
    """The run ends incomplete before the model is called: the answer inserted with the run goes too."""
    s = stream_post(http, "/threads/runs", {"assistant_id": plain.id, "stream": True, "max_prompt_tokens": 256,
                                            "thread": {"messages": [{"role": "user", "content": "word " * 400}]}})
    assert s.names()[-2:] == ["thread.run.incomplete", "done"]
    no_answer_events(s.names())
    ids = check_one_run(s)
    assert stored(client, ids["thread_id"], ids["run_id"]) == ([], [])
