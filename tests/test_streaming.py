"""Streaming runs (``stream: true``) against the live server, in-process event bus.

Two views of the same wire: the official SDK's helpers (``runs.stream``, ``submit_tool_outputs_stream``,
``create_and_run_stream`` with an ``AssistantEventHandler``), and the raw ``text/event-stream`` parsed here
line by line. Every event payload is validated against the spec; deltas are reassembled and compared with
what the server stored.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
import pytest
from openai import AssistantEventHandler, OpenAI

from assistd.api import sse
from assistd.events.base import Event, Subscription
from tests.spec import assert_schema, wire

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}

TEXT_RUN = [
    "thread.run.created", "thread.run.queued", "thread.run.in_progress",
    "thread.run.step.created", "thread.run.step.in_progress",
    "thread.message.created", "thread.message.in_progress", "thread.message.delta…",
    "thread.message.completed", "thread.run.step.completed", "thread.run.completed", "done",
]
TOOL_RUN = [
    "thread.run.created", "thread.run.queued", "thread.run.in_progress",
    "thread.run.step.created", "thread.run.step.in_progress", "thread.run.step.delta…",
    "thread.run.requires_action", "done",
]
AFTER_TOOL_OUTPUTS = [
    "thread.run.step.completed", "thread.run.queued", "thread.run.in_progress",
    "thread.run.step.created", "thread.run.step.in_progress",
    "thread.message.created", "thread.message.in_progress", "thread.message.delta…",
    "thread.message.completed", "thread.run.step.completed", "thread.run.completed", "done",
]
# The status each lifecycle event's object must carry.
STATUS_OF = {
    "thread.run.created": "queued", "thread.run.queued": "queued", "thread.run.in_progress": "in_progress",
    "thread.run.requires_action": "requires_action", "thread.run.cancelling": "cancelling",
    "thread.run.completed": "completed", "thread.run.incomplete": "incomplete", "thread.run.failed": "failed",
    "thread.run.cancelled": "cancelled", "thread.run.expired": "expired",
    "thread.run.step.created": "in_progress", "thread.run.step.in_progress": "in_progress",
    "thread.run.step.completed": "completed", "thread.run.step.failed": "failed",
    "thread.run.step.cancelled": "cancelled", "thread.run.step.expired": "expired",
    "thread.message.created": "in_progress", "thread.message.in_progress": "in_progress",
    "thread.message.completed": "completed", "thread.message.incomplete": "incomplete",
}


def schema_for(event: str) -> str:
    if event == "thread.created":
        return "ThreadObject"
    if event == "thread.run.step.delta":
        return "RunStepDeltaObject"
    if event.startswith("thread.run.step."):
        return "RunStepObject"
    if event.startswith("thread.run."):
        return "RunObject"
    if event == "thread.message.delta":
        return "MessageDeltaObject"
    if event.startswith("thread.message."):
        return "MessageObject"
    if event == "error":
        return "Error"
    raise AssertionError(f"unknown event {event!r}")


def check_event(name: str, data: Any) -> None:
    """One event as the spec's AssistantStreamEvent describes it."""
    if name == "done":
        assert data == "[DONE]", data
        return
    assert isinstance(data, dict), (name, data)
    assert_schema(data, schema_for(name))
    if name in STATUS_OF:
        assert data["status"] == STATUS_OF[name], (name, data["status"])


# --- raw SSE ----------------------------------------------------------------------------------------

@dataclass
class Stream:
    events: list[tuple[str, Any]] = field(default_factory=list)
    # For each ``:`` comment line: how many events had arrived before it.
    comments: list[int] = field(default_factory=list)

    def names(self) -> list[str]:
        return collapse(name for name, _ in self.events)

    def of(self, name: str) -> list[Any]:
        return [data for n, data in self.events if n == name]

    def first(self, name: str) -> Any:
        found = self.of(name)
        assert found, (name, self.names())
        return found[0]

    def text(self) -> str:
        return "".join(part["text"]["value"] for d in self.of("thread.message.delta")
                       for part in d["delta"]["content"])

    def arguments(self) -> dict[int, str]:
        """Concatenated function arguments per tool-call index, from the step deltas."""
        out: dict[int, str] = {}
        for d in self.of("thread.run.step.delta"):
            for call in d["delta"]["step_details"]["tool_calls"]:
                out[call["index"]] = out.get(call["index"], "") + call["function"].get("arguments", "")
        return out


def collapse(names: Iterable[str]) -> list[str]:
    """Runs of delta events become one ``NAME…`` entry."""
    out: list[str] = []
    for name in names:
        if name.endswith(".delta"):
            name += "…"
            if out and out[-1] == name:
                continue
        out.append(name)
    return out


def parse_sse(lines: Iterable[str]) -> Iterator[tuple[str, Any]]:
    """``(event, data)`` per dispatched event and ``(":", text)`` per comment, as the SSE spec reads them."""
    name, data = None, []
    for line in lines:
        if line == "":
            if data:
                text = "\n".join(data)
                yield name or "message", text if text == "[DONE]" else json.loads(text)
            name, data = None, []
            continue
        if line.startswith(":"):
            yield ":", line[1:]
            continue
        key, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if key == "event":
            name = value
        elif key == "data":
            data.append(value)
    assert not data, f"stream ended inside an event: {name} {data}"


def stream_post(
    http: httpx.Client, path: str, body: dict[str, Any],
    on_event: Callable[[str, Any], bool | None] | None = None,
) -> Stream:
    """POST and read the event stream to its end (or until ``on_event`` answers False: a disconnect).

    Every event is checked against the spec, and nothing may follow ``done``."""
    out = Stream()
    with http.stream("POST", path, json=body) as r:
        if r.status_code != 200:
            r.read()
            raise AssertionError(f"{r.status_code}: {r.text}")
        assert r.headers["content-type"].startswith("text/event-stream"), r.headers
        assert r.headers["cache-control"] == "no-cache"
        for name, data in parse_sse(r.iter_lines()):
            if name == ":":
                out.comments.append(len(out.events))
                continue
            assert not out.events or out.events[-1][0] != "done", f"{name} after done"
            check_event(name, data)
            out.events.append((name, data))
            if on_event is not None and on_event(name, data) is False:
                break
    return out


def check_one_run(stream: Stream) -> dict[str, Any]:
    """All run, step, message and delta events of a stream belong to one run and its objects."""
    runs = {d["id"] for n, d in stream.events if n.startswith("thread.run.") and ".step." not in n}
    assert len(runs) == 1, runs
    run_id = runs.pop()
    threads = {d["thread_id"] for n, d in stream.events
               if n.startswith(("thread.run.", "thread.message.")) and not n.endswith(".delta")}
    assert len(threads) == 1, threads
    steps = {d["id"] for n, d in stream.events if n.startswith("thread.run.step.")}
    for n, d in stream.events:
        if n.startswith("thread.run.step.") and not n.endswith(".delta"):
            assert d["run_id"] == run_id
        if n.startswith("thread.message.") and not n.endswith(".delta"):
            assert d["run_id"] == run_id and d["role"] == "assistant"
    messages = {d["id"] for n, d in stream.events if n.startswith("thread.message.")}
    created = {d["id"] for n, d in stream.events if n == "thread.message.created"}
    assert messages <= created, "an event for a message this stream never created"
    created_steps = {d["id"] for n, d in stream.events if n == "thread.run.step.created"}
    assert steps <= created_steps | _earlier_steps(stream), "an event for a step this stream never created"
    return {"run_id": run_id, "thread_id": threads.pop()}


def _earlier_steps(stream: Stream) -> set[str]:
    # After tool outputs the stream opens with the (earlier created) tool-call step completing.
    return {d["id"] for n, d in stream.events[:1] if n == "thread.run.step.completed"}


def message_text(message: Any) -> str:
    return "".join(part.text.value for part in message.content if part.type == "text")


# --- fixtures ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def assistant(client: OpenAI) -> Any:
    return client.beta.assistants.create(model="gpt-4o-mini", name="streaming", instructions="Be brief.",
                                         tools=[WEATHER])


def new_thread(client: OpenAI, text: str) -> Any:
    return client.beta.threads.create(messages=[{"role": "user", "content": text}])


def wait_terminal(client: OpenAI, thread_id: str, run_id: str, timeout: float = 15) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        run = client.beta.threads.runs.retrieve(run_id, thread_id=thread_id)
        if run.status not in ("queued", "in_progress", "cancelling"):
            return run
        assert time.monotonic() < deadline, f"run still {run.status}"
        time.sleep(0.05)


class Recorder(AssistantEventHandler):
    """Everything the SDK's handler hooks saw."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[Any] = []
        self.text_deltas: list[str] = []
        self.texts_done: list[str] = []
        self.calls_created: list[Any] = []
        self.arg_deltas: dict[int, str] = {}
        self.calls_done: list[Any] = []
        self.ended = 0

    def on_event(self, event: Any) -> None:
        self.events.append(event)
        check_event(event.event, wire(event.data))

    def on_text_delta(self, delta: Any, snapshot: Any) -> None:
        self.text_deltas.append(delta.value)

    def on_text_done(self, text: Any) -> None:
        self.texts_done.append(text.value)

    def on_tool_call_created(self, tool_call: Any) -> None:
        self.calls_created.append(tool_call)

    def on_tool_call_delta(self, delta: Any, snapshot: Any) -> None:
        self.arg_deltas[delta.index] = self.arg_deltas.get(delta.index, "") + (delta.function.arguments or "")

    def on_tool_call_done(self, tool_call: Any) -> None:
        self.calls_done.append(tool_call)

    def on_end(self) -> None:
        self.ended += 1

    def names(self) -> list[str]:
        return collapse(e.event for e in self.events)


# --- text runs --------------------------------------------------------------------------------------

def test_text_run_raw_event_order_and_reassembly(http, client, assistant):
    reply = "Grüße,  wörld — “quoted” ✓ {json: [1, 2]} and\nmore\tlines 💡 end."
    thread = new_thread(client, f"[reply: {reply}]")
    s = stream_post(http, f"/threads/{thread.id}/runs", {"assistant_id": assistant.id, "stream": True})

    assert s.names() == TEXT_RUN
    ids = check_one_run(s)
    assert ids["thread_id"] == thread.id
    deltas = s.of("thread.message.delta")
    assert len(deltas) > 1, "the reply should arrive in several deltas"
    message_id = s.first("thread.message.created")["id"]
    for d in deltas:
        assert d["id"] == message_id and d["object"] == "thread.message.delta"
        assert [(p["index"], p["type"]) for p in d["delta"]["content"]] == [(0, "text")]
    assert s.text() == reply

    # The completed message, the stored message and the stream agree to the character.
    completed = s.first("thread.message.completed")
    assert completed["content"] == [{"type": "text", "text": {"value": reply, "annotations": []}}]
    stored = client.beta.threads.messages.retrieve(message_id, thread_id=thread.id)
    assert message_text(stored) == reply and stored.status == "completed" and stored.run_id == ids["run_id"]
    step = s.first("thread.run.step.completed")
    assert step["step_details"] == {"type": "message_creation", "message_creation": {"message_id": message_id}}
    assert step["id"] == s.first("thread.run.step.created")["id"]
    run = s.first("thread.run.completed")
    assert run["usage"] and run["usage"]["completion_tokens"] > 0
    stored_run = client.beta.threads.runs.retrieve(ids["run_id"], thread_id=thread.id)
    assert wire(stored_run) == run


def test_text_run_with_sdk_stream_helper(client, assistant):
    thread = new_thread(client, "[reply: one two three four five]")
    handler = Recorder()
    with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id,
                                         event_handler=handler) as stream:
        stream.until_done()
        final = stream.get_final_run()
        messages = stream.get_final_messages()

    assert handler.names() == TEXT_RUN[:-1]  # the SDK consumes `done` itself
    assert handler.ended == 1
    assert final.status == "completed" and final.thread_id == thread.id
    assert "".join(handler.text_deltas) == "one two three four five"
    assert handler.texts_done == ["one two three four five"]
    assert [message_text(m) for m in messages] == ["one two three four five"]
    stored = client.beta.threads.messages.list(thread.id, order="desc", limit=1).data[0]
    assert stored.id == messages[0].id and message_text(stored) == "one two three four five"


def test_create_and_run_stream_starts_with_thread_created(http, client, assistant):
    # Raw: thread.created, then the run's own events.
    s = stream_post(http, "/threads/runs", {
        "assistant_id": assistant.id, "stream": True,
        "thread": {"messages": [{"role": "user", "content": "[reply: fresh thread]"}], "metadata": {"k": "v"}},
    })
    assert s.names() == ["thread.created", *TEXT_RUN]
    thread = s.events[0][1]
    assert thread["metadata"] == {"k": "v"}
    ids = check_one_run(s)
    assert ids["thread_id"] == thread["id"]
    assert s.text() == "fresh thread"
    assert client.beta.threads.retrieve(thread["id"]).id == thread["id"]

    # The SDK helper.
    handler = Recorder()
    with client.beta.threads.create_and_run_stream(
        assistant_id=assistant.id, thread={"messages": [{"role": "user", "content": "[reply: via sdk]"}]},
        event_handler=handler,
    ) as stream:
        stream.until_done()
        final = stream.get_final_run()
    assert handler.names() == ["thread.created", *TEXT_RUN[:-1]]
    assert handler.events[0].data.id == final.thread_id
    assert final.status == "completed" and "".join(handler.text_deltas) == "via sdk"


# --- function calls ---------------------------------------------------------------------------------

TWO_CALLS = '[tool: get_weather {"city": "Paris", "unit": "°C", "note": "a [bracket] \\"quote\\""}] ' \
            '[tool: get_weather {"city": "Rome"}]'


def test_function_call_run_raw_then_submit_tool_outputs_stream(http, client, assistant):
    thread = new_thread(client, TWO_CALLS)
    s = stream_post(http, f"/threads/{thread.id}/runs", {"assistant_id": assistant.id, "stream": True})
    assert s.names() == TOOL_RUN
    ids = check_one_run(s)
    step_id = s.first("thread.run.step.created")["id"]
    assert s.first("thread.run.step.created")["type"] == "tool_calls"

    # Step deltas: the first delta of each call names it; arguments follow in pieces.
    first_seen: dict[int, dict[str, Any]] = {}
    for d in s.of("thread.run.step.delta"):
        assert d["id"] == step_id and d["delta"]["step_details"]["type"] == "tool_calls"
        for call in d["delta"]["step_details"]["tool_calls"]:
            assert call["type"] == "function"
            first_seen.setdefault(call["index"], call)
    assert sorted(first_seen) == [0, 1]
    assert all(c["id"].startswith("call_") and c["function"]["name"] == "get_weather"
               for c in first_seen.values())

    run = s.first("thread.run.requires_action")
    required = run["required_action"]["submit_tool_outputs"]["tool_calls"]
    assert [c["id"] for c in required] == [first_seen[0]["id"], first_seen[1]["id"]]
    args = s.arguments()
    assert [args[0], args[1]] == [c["function"]["arguments"] for c in required]
    assert json.loads(args[0]) == {"city": "Paris", "unit": "°C", "note": 'a [bracket] "quote"'}
    assert json.loads(args[1]) == {"city": "Rome"}
    stored_step = client.beta.threads.runs.steps.retrieve(step_id, thread_id=thread.id, run_id=ids["run_id"])
    assert [c.function.arguments for c in stored_step.step_details.tool_calls] == [args[0], args[1]]
    assert [c.id for c in stored_step.step_details.tool_calls] == [c["id"] for c in required]

    # Tool outputs with stream: the same run goes on to completion.
    s2 = stream_post(http, f"/threads/{thread.id}/runs/{ids['run_id']}/submit_tool_outputs", {
        "stream": True, "tool_outputs": [{"tool_call_id": required[0]["id"], "output": "sunny"},
                                         {"tool_call_id": required[1]["id"], "output": "rainy"}]})
    assert s2.names() == AFTER_TOOL_OUTPUTS
    assert check_one_run(s2)["run_id"] == ids["run_id"]
    done_step = s2.events[0][1]
    assert done_step["id"] == step_id
    assert [c["function"]["output"] for c in done_step["step_details"]["tool_calls"]] == ["sunny", "rainy"]
    assert s2.text() == "tool results: sunny; rainy"
    message_id = s2.first("thread.message.created")["id"]
    assert message_text(client.beta.threads.messages.retrieve(message_id, thread_id=thread.id)) == s2.text()
    assert client.beta.threads.runs.retrieve(ids["run_id"], thread_id=thread.id).status == "completed"


def test_function_call_with_sdk_stream_and_submit_tool_outputs_stream(client, assistant):
    thread = new_thread(client, TWO_CALLS)
    handler = Recorder()
    with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id,
                                         event_handler=handler) as stream:
        stream.until_done()
        run = stream.current_run
    assert handler.names() == TOOL_RUN[:-1]
    assert run is not None and run.status == "requires_action"
    required = run.required_action.submit_tool_outputs.tool_calls
    assert [c.id for c in handler.calls_created] == [c.id for c in required]
    # The SDK reports the first delta of a call as "created"; the rest, and the done snapshots, are whole.
    assert [c.function.arguments for c in handler.calls_done] == [c.function.arguments for c in required]
    for index, call in enumerate(required):
        assert call.function.arguments.endswith(handler.arg_deltas[index])

    after = Recorder()
    with client.beta.threads.runs.submit_tool_outputs_stream(
        thread_id=thread.id, run_id=run.id, event_handler=after,
        tool_outputs=[{"tool_call_id": required[0].id, "output": "sunny"},
                      {"tool_call_id": required[1].id, "output": "rainy"}],
    ) as stream:
        stream.until_done()
        final = stream.get_final_run()
    assert after.names() == AFTER_TOOL_OUTPUTS[:-1]
    assert final.id == run.id and final.status == "completed"
    assert "".join(after.text_deltas) == "tool results: sunny; rainy"


# --- endings ----------------------------------------------------------------------------------------

def test_cancel_mid_stream(http, client, assistant):
    thread = new_thread(client, "[chunk-delay: 0.3] [tokens: 30]")
    runs: list[dict[str, Any]] = []
    cancelled: list[Any] = []

    def on_event(name: str, data: Any) -> None:
        if name == "thread.run.created":
            runs.append(data)
        if name == "thread.message.delta" and not cancelled:  # from another client, mid-answer
            cancelled.append(client.beta.threads.runs.cancel(runs[0]["id"], thread_id=thread.id))

    started = time.monotonic()
    s = stream_post(http, f"/threads/{thread.id}/runs", {"assistant_id": assistant.id, "stream": True},
                    on_event=on_event)
    assert time.monotonic() - started < 6, "the cancel did not stop the answer (30 chunks × 0.3 s)"
    assert cancelled and cancelled[0].status == "cancelling"
    names = s.names()
    assert names[:8] == TEXT_RUN[:8]
    # What arrives after the cancel: the request itself, the open message and step closed, the run.
    assert names[8:] == ["thread.run.cancelling", "thread.message.incomplete", "thread.run.step.cancelled",
                         "thread.run.cancelled", "done"]
    ids = check_one_run(s)
    message = s.first("thread.message.incomplete")
    assert message["incomplete_details"] == {"reason": "run_cancelled"}
    assert message["content"][0]["text"]["value"] == s.text()
    assert s.first("thread.run.step.cancelled")["cancelled_at"] is not None
    run = s.first("thread.run.cancelled")
    assert run["cancelled_at"] is not None
    stored = client.beta.threads.messages.retrieve(message["id"], thread_id=thread.id)
    assert stored.status == "incomplete" and message_text(stored) == s.text()
    assert client.beta.threads.runs.retrieve(ids["run_id"], thread_id=thread.id).status == "cancelled"


def test_upstream_failure_mid_stream(http, client, assistant):
    thread = new_thread(client, "[stream-error] [tokens: 30]")
    s = stream_post(http, f"/threads/{thread.id}/runs", {"assistant_id": assistant.id, "stream": True})
    assert s.names() == [*TEXT_RUN[:8], "thread.message.incomplete", "thread.run.step.failed",
                         "thread.run.failed", "done"]
    ids = check_one_run(s)
    run = s.first("thread.run.failed")
    assert run["last_error"]["code"] == "server_error" and run["failed_at"] is not None
    step = s.first("thread.run.step.failed")
    assert step["last_error"]["code"] == "server_error"
    message = s.first("thread.message.incomplete")
    assert message["incomplete_details"] == {"reason": "run_failed"}
    stored = client.beta.threads.messages.retrieve(message["id"], thread_id=thread.id)
    assert message_text(stored) == s.text() == message["content"][0]["text"]["value"]
    assert client.beta.threads.runs.retrieve(ids["run_id"], thread_id=thread.id).status == "failed"


def test_max_completion_tokens_incomplete(http, client, assistant):
    thread = new_thread(client, "[tokens: 400]")
    s = stream_post(http, f"/threads/{thread.id}/runs",
                    {"assistant_id": assistant.id, "stream": True, "max_completion_tokens": 256})
    assert s.names() == [*TEXT_RUN[:8], "thread.message.incomplete", "thread.run.step.completed",
                         "thread.run.incomplete", "done"]
    ids = check_one_run(s)
    assert s.text() == " ".join(["tok"] * 256)
    message = s.first("thread.message.incomplete")
    assert message["incomplete_details"] == {"reason": "max_tokens"} and message["incomplete_at"] is not None
    run = s.first("thread.run.incomplete")
    assert run["incomplete_details"] == {"reason": "max_completion_tokens"}
    assert run["usage"]["completion_tokens"] == 256
    stored = client.beta.threads.messages.retrieve(message["id"], thread_id=thread.id)
    assert stored.status == "incomplete" and message_text(stored) == s.text()
    assert client.beta.threads.runs.retrieve(ids["run_id"], thread_id=thread.id).status == "incomplete"


def test_disconnect_does_not_cancel_the_run(http, client, assistant):
    thread = new_thread(client, "[chunk-delay: 0.05] [tokens: 20]")
    s = stream_post(http, f"/threads/{thread.id}/runs", {"assistant_id": assistant.id, "stream": True},
                    on_event=lambda name, _: name != "thread.message.delta")
    assert s.events[-1][0] == "thread.message.delta"  # we hung up here
    run_id = s.first("thread.run.created")["id"]
    run = wait_terminal(client, thread.id, run_id)
    assert run.status == "completed"
    stored = client.beta.threads.messages.retrieve(s.first("thread.message.created")["id"], thread_id=thread.id)
    assert stored.status == "completed" and message_text(stored) == " ".join(["tok"] * 20)


def check_steps_closed(s: Stream, client: OpenAI) -> None:
    """Every step the stream announced reaches a terminal event, and is stored as that event left it."""
    created = [d["id"] for n, d in s.events if n == "thread.run.step.created"]
    last = {d["id"]: d for n, d in s.events if n.startswith("thread.run.step.") and not n.endswith(".delta")}
    assert [last[i]["status"] for i in created if last[i]["status"] == "in_progress"] == [], \
        f"steps announced but never closed: {s.names()}"
    ids = check_one_run(s)
    stored = client.beta.threads.runs.steps.list(ids["run_id"], thread_id=ids["thread_id"], order="asc")
    assert [wire(step) for step in stored.data] == [last[i] for i in created]


def test_empty_answer_streams_the_same_lifecycle(http, client, assistant):
    thread = new_thread(client, "[reply: ]")
    s = stream_post(http, f"/threads/{thread.id}/runs", {"assistant_id": assistant.id, "stream": True})
    assert s.names() == [n for n in TEXT_RUN if n != "thread.message.delta…"]
    assert s.first("thread.message.completed")["content"] == [
        {"type": "text", "text": {"value": "", "annotations": []}}]


def test_cut_off_tool_call_step_is_closed_not_vanished(http, client, assistant):
    thread = new_thread(client, '[reply: checking] [tool: get_weather {"city": "Paris"}] [length]')
    s = stream_post(http, f"/threads/{thread.id}/runs", {"assistant_id": assistant.id, "stream": True})
    assert s.names()[-2:] == ["thread.run.incomplete", "done"]
    assert s.text() == "checking" and s.first("thread.message.incomplete")["content"][0]["text"]["value"] == "checking"
    check_steps_closed(s, client)


@pytest.mark.parametrize("ending", ["failed", "cancelled"])
def test_tool_step_closed_mid_answer_keeps_the_streamed_calls(http, client, assistant, ending):
    if ending == "failed":
        text, on_event = '[stream-error] [tool: get_weather {"city": "Paris x y z"}]', None
    else:
        text, runs = '[chunk-delay: 0.3] [tool: get_weather {"city": "a b c d e f g h i j k l"}]', []

        def on_event(name: str, data: Any) -> None:
            if name == "thread.run.created":
                runs.append(data)
            if name == "thread.run.step.delta" and len(runs) == 1:
                runs.append(client.beta.threads.runs.cancel(runs[0]["id"], thread_id=thread.id))
    thread = new_thread(client, text)
    s = stream_post(http, f"/threads/{thread.id}/runs", {"assistant_id": assistant.id, "stream": True},
                    on_event=on_event)
    assert s.names()[-3:] == [f"thread.run.step.{ending}", f"thread.run.{ending}", "done"]
    step = s.first(f"thread.run.step.{ending}")
    announced = {c["index"]: c["id"] for d in s.of("thread.run.step.delta")
                 for c in d["delta"]["step_details"]["tool_calls"] if "id" in c}
    assert announced, "no tool call was streamed before the end"
    calls = step["step_details"]["tool_calls"]
    assert [c["id"] for c in calls] == [announced[i] for i in sorted(announced)]
    assert [c["function"]["arguments"] for c in calls] == [s.arguments()[i] for i in sorted(announced)]
    check_steps_closed(s, client)


# --- before the stream, and while it is idle --------------------------------------------------------

def json_error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    return body["error"]


def test_errors_before_the_stream_are_json(http, client, assistant):
    missing = "thread_" + "x" * 24
    error = json_error(http.post(f"/threads/{missing}/runs", json={"assistant_id": assistant.id, "stream": True}),
                       404)
    assert missing in error["message"]
    json_error(http.post("/threads/runs", json={"assistant_id": "asst_" + "x" * 24, "stream": True}), 404)
    json_error(http.post("/threads/runs", json={"assistant_id": assistant.id, "stream": True, "bogus": 1}), 400)

    # A thread whose run waits for tool outputs has an active run.
    thread = new_thread(client, '[tool: get_weather {"city": "Oslo"}]')
    s = stream_post(http, f"/threads/{thread.id}/runs", {"assistant_id": assistant.id, "stream": True})
    run = s.first("thread.run.requires_action")
    error = json_error(http.post(f"/threads/{thread.id}/runs", json={"assistant_id": assistant.id, "stream": True}),
                       400)
    assert run["id"] in error["message"]
    # Tool outputs that don't match the pending calls, or for an unknown run.
    json_error(http.post(f"/threads/{thread.id}/runs/{run['id']}/submit_tool_outputs",
                         json={"stream": True, "tool_outputs": [{"tool_call_id": "call_nope", "output": "x"}]}), 400)
    json_error(http.post(f"/threads/{thread.id}/runs/run_{'x' * 24}/submit_tool_outputs",
                         json={"stream": True, "tool_outputs": []}), 404)
    client.beta.threads.runs.cancel(run["id"], thread_id=thread.id)
    assert wait_terminal(client, thread.id, run["id"]).status == "cancelled"
    # A finished run takes no tool outputs: still a JSON error.
    json_error(http.post(f"/threads/{thread.id}/runs/{run['id']}/submit_tool_outputs",
                         json={"stream": True, "tool_outputs": [{"tool_call_id": "call_x", "output": "x"}]}), 400)


def test_keepalive_comment_while_idle(http, client, assistant):
    thread = new_thread(client, "[delay: 2.5] [reply: late]")
    s = stream_post(http, f"/threads/{thread.id}/runs", {"assistant_id": assistant.id, "stream": True})
    assert s.names() == TEXT_RUN
    # The model is silent for 2.5 s after the run started: the stream sends a comment every second
    # meanwhile (one at least, to stay clear of timing on a busy machine), before the answer's first event.
    started = [n for n, _ in s.events].index("thread.run.in_progress") + 1
    first_step = [n for n, _ in s.events].index("thread.run.step.created")
    idle = [at for at in s.comments if started <= at <= first_step]
    assert idle, (s.comments, s.names())
    assert s.text() == "late"


# --- the stream writer alone (no server): keep-alives, the stored-run fallback, errors, closing ---------

class FakeSubscription(Subscription):
    """Hands out the given events (an Exception is raised instead), then nothing."""

    def __init__(self, *items: Event | Exception) -> None:
        self.items = list(items)
        self.closed = 0

    def __aiter__(self):  # pragma: no cover - run_events uses get()
        raise NotImplementedError

    async def get(self, timeout: float | None = None) -> Event | None:
        if self.items:
            item = self.items.pop(0)
            if isinstance(item, Exception):
                raise item
            return item
        await asyncio.sleep(timeout or 0)
        return None

    async def close(self) -> None:
        self.closed += 1


def written(chunks: list[bytes]) -> Stream:
    out = Stream()
    for name, data in parse_sse(b"".join(chunks).decode().split("\n")):
        if name == ":":
            out.comments.append(len(out.events))
        else:
            check_event(name, data)
            out.events.append((name, data))
    return out


def drain(sub: Subscription, load_run: Callable[[], Any] | None = None, limit: int | None = None) -> list[bytes]:
    async def no_run() -> dict | None:
        raise AssertionError("the stored run was not expected to be read")

    async def main() -> list[bytes]:
        chunks = []
        body = sse.run_events(sub, load_run or no_run)
        async with aclosing(body):
            async for chunk in body:
                chunks.append(chunk)
                if limit is not None and len(chunks) >= limit:
                    break
        return chunks

    return asyncio.run(asyncio.wait_for(main(), 10))


@pytest.fixture
def fast_keepalive(monkeypatch):
    monkeypatch.setattr(sse, "KEEPALIVE_SECONDS", 0.01)


def a_run(status: str) -> dict[str, Any]:
    return {"id": "run_" + "a" * 24, "object": "thread.run", "created_at": 1, "assistant_id": "asst_" + "a" * 24,
            "thread_id": "thread_" + "a" * 24, "status": status, "started_at": 1, "expires_at": None,
            "cancelled_at": None, "failed_at": None, "completed_at": 2, "required_action": None,
            "last_error": None, "model": "m", "instructions": "", "tools": [], "metadata": {},
            "temperature": 1.0, "top_p": 1.0, "max_completion_tokens": None, "max_prompt_tokens": None,
            "truncation_strategy": {"type": "auto", "last_messages": None}, "incomplete_details": None,
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            "response_format": "auto", "tool_choice": "auto", "parallel_tool_calls": True}


def test_writer_stops_after_the_run_stops_for_the_client():
    queued, done = a_run("queued"), a_run("requires_action")
    sub = FakeSubscription(Event("thread.run.queued", queued), Event("thread.run.requires_action", done),
                           Event("thread.run.queued", queued))
    s = written(drain(sub))
    assert s.names() == ["thread.run.queued", "thread.run.requires_action", "done"]
    assert sub.closed == 1 and len(sub.items) == 1


def test_writer_keepalive_then_stored_run_when_the_events_never_come(fast_keepalive):
    reads = []

    async def load_run() -> dict | None:
        reads.append(1)
        return a_run("in_progress") if len(reads) == 1 else a_run("completed")

    sub = FakeSubscription(Event("thread.run.in_progress", a_run("in_progress")))
    s = written(drain(sub, load_run))
    assert s.names() == ["thread.run.in_progress", "thread.run.completed", "done"]
    assert len(reads) == 2
    assert len(s.comments) >= 10 and all(at == 1 for at in s.comments)
    assert sub.closed == 1


def test_writer_ends_when_the_run_is_gone(fast_keepalive):
    async def load_run() -> dict | None:
        return None

    s = written(drain(FakeSubscription(), load_run))
    assert s.names() == ["done"] and s.comments


def test_writer_error_event_is_the_specs_error_and_the_sdks_can_read_it():
    sub = FakeSubscription(Event("thread.run.in_progress", a_run("in_progress")), RuntimeError("bus broke"))
    s = written(drain(sub))  # check_event: data is a valid `Error` (spec: ErrorEvent.data)
    assert s.names() == ["thread.run.in_progress", "error", "done"]
    error = s.first("error")
    assert error["type"] == "server_error" and "RuntimeError" in error["message"]
    # The SDKs raise on `data.error` (openai-python) or `data.error ?? data` (openai-node).
    assert error["error"] == {k: error[k] for k in ("message", "type", "param", "code")}
    assert sub.closed == 1

    # What openai-python makes of these bytes: an APIError carrying our message.
    body = b"".join(drain(FakeSubscription(Event("thread.run.in_progress", a_run("in_progress")),
                                           RuntimeError("bus broke"))))
    transport = httpx.MockTransport(lambda request: httpx.Response(
        200, headers={"content-type": "text/event-stream"}, content=body))
    offline = OpenAI(base_url="http://sse.invalid/v1", api_key="k", max_retries=0,
                     http_client=httpx.Client(transport=transport))
    handler = Recorder()
    with pytest.raises(openai.APIError, match="Stream failed: RuntimeError"):
        with offline.beta.threads.runs.stream(thread_id="thread_x", assistant_id="asst_x",
                                              event_handler=handler) as stream:
            stream.until_done()
    assert [e.event for e in handler.events] == ["thread.run.in_progress"]


def test_writer_closes_the_subscription_when_the_client_goes():
    sub = FakeSubscription(Event("thread.run.queued", a_run("queued")), Event("thread.run.in_progress",
                                                                              a_run("in_progress")))
    chunks = drain(sub, limit=1)
    assert len(chunks) == 1 and sub.closed == 1


@pytest.mark.parametrize("spec_version", ["2.3", "2.4"])
def test_response_closes_the_subscription_when_the_client_disconnects(spec_version):
    """Through Starlette's StreamingResponse, as uvicorn drives it: the client goes away while the writer
    waits to send a chunk. The subscription must be closed when the response returns, not whenever the
    garbage collector gets to the abandoned generator."""
    sub = FakeSubscription(Event("thread.run.queued", a_run("queued")), Event("thread.run.in_progress",
                                                                              a_run("in_progress")))

    async def main() -> None:
        gone = asyncio.Event()

        async def receive() -> dict[str, Any]:
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body" and message.get("body"):
                if gone.is_set():
                    raise OSError("connection lost")  # ASGI 2.4: send fails once the client is gone
                gone.set()
                await asyncio.sleep(1)  # the socket's buffer is full: the writer is stuck at its yield

        async def no_run() -> dict | None:
            return None

        response = sse.sse_response(sse.run_events(sub, no_run))
        scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": spec_version}}
        try:
            await asyncio.wait_for(response(scope, receive, send), 5)
        except Exception as exc:  # 2.4: Starlette reports the disconnect as ClientDisconnect
            assert type(exc).__name__ == "ClientDisconnect", exc
        assert sub.closed == 1, "subscription still open after the response returned"

    asyncio.run(main())


def test_writer_sends_the_requests_own_events_before_a_worker_elsewhere_that_was_faster():
    """The request that queues a run publishes its events after its commit; a worker in another process
    may claim the run and be heard first. The stream still opens with the request's own events, in their
    order, and carries each once (issue 13)."""
    from assistd.events.memory import MemoryBus
    from assistd.events.prelude import PreludeSubscription
    from assistd.services.outbox import Outbox

    async def main() -> list[bytes]:
        bus, channel = MemoryBus(), "run:" + a_run("queued")["id"]
        sub = await bus.subscribe(channel)  # taken inside the transaction
        outbox = Outbox(a_run("queued")["id"])
        outbox.add("thread.run.created", a_run("queued"))
        outbox.add("thread.run.queued", a_run("queued"))
        await bus.publish(channel, Event("thread.run.in_progress", a_run("in_progress")))  # the worker, first
        stream = PreludeSubscription(sub, outbox.items)
        await outbox.flush(bus)
        await bus.publish(channel, Event("thread.run.completed", a_run("completed")))
        chunks = []
        async for chunk in sse.run_events(stream, None):  # type: ignore[arg-type]
            chunks.append(chunk)
        return chunks

    s = written(asyncio.run(asyncio.wait_for(main(), 10)))
    assert s.names() == ["thread.run.created", "thread.run.queued", "thread.run.in_progress",
                         "thread.run.completed", "done"]
