"""Runs end to end through the official SDK against the scripted upstream: every status a run can end in."""

from __future__ import annotations

import json
import time

import openai
import pytest

from tests.run_helpers import (
    WEATHER,
    call_ids,
    check_run,
    check_step,
    marker,
    messages_of,
    new_assistant,
    new_thread,
    only_body,
    steps_of,
    text,
    upstream_bodies,
    wait_run,
    wait_until,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def assistant(client):
    return new_assistant(client, tools=[WEATHER])


def _usage_sum(steps):
    return {k: sum(s["usage"][k] for s in steps if s["usage"]) for k in
            ("prompt_tokens", "completion_tokens", "total_tokens")}


# --- completed -------------------------------------------------------------------------------------------

def test_completed_run_has_message_step_usage_and_timestamps(client, assistant, upstream):
    m = marker("done")
    thread = new_thread(client, f"{m} [reply: Hello there!] [usage: prompt=11 completion=7]")
    before = int(time.time())
    created = client.beta.threads.runs.create(thread.id, assistant_id=assistant.id)
    raw = check_run(created)
    assert raw["status"] == "queued" and raw["usage"] is None
    assert raw["expires_at"] == raw["created_at"] + 600 and raw["created_at"] >= before
    assert raw["thread_id"] == thread.id and raw["assistant_id"] == assistant.id
    assert raw["model"] == assistant.model and raw["instructions"] == assistant.instructions

    run = check_run(client.beta.threads.runs.poll(created.id, thread_id=thread.id))
    assert run["status"] == "completed"
    assert run["created_at"] <= run["started_at"] <= run["completed_at"] <= int(time.time())
    assert run["usage"] == {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}

    steps = steps_of(client, thread.id, run["id"])
    assert [s["type"] for s in steps] == ["message_creation"]
    step = steps[0]
    assert step["status"] == "completed" and step["assistant_id"] == assistant.id
    assert step["completed_at"] >= step["created_at"]
    assert _usage_sum(steps) == run["usage"]

    answers = messages_of(client, thread.id, "assistant")
    assert len(answers) == 1
    answer = answers[0]
    assert answer["id"] == step["step_details"]["message_creation"]["message_id"]
    assert text(answer) == "Hello there!"
    assert answer["run_id"] == run["id"] and answer["assistant_id"] == assistant.id
    assert answer["status"] == "completed" and answer["completed_at"] is not None
    assert answer["incomplete_details"] is None

    body = only_body(upstream, m)
    assert body["stream"] is True and body["model"] == assistant.model
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert body["messages"][-1]["role"] == "user" and m in body["messages"][-1]["content"]


# --- tools -------------------------------------------------------------------------------------------------

def test_requires_action_then_tool_outputs_complete_the_run(client, assistant, upstream):
    m = marker("tool")
    thread = new_thread(client, f'{m} [tool: get_weather {{"city": "Paris"}}]')
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    raw = check_run(run)
    assert raw["status"] == "requires_action" and raw["usage"] is None
    calls = raw["required_action"]["submit_tool_outputs"]["tool_calls"]
    assert len(calls) == 1
    call = calls[0]
    assert call["type"] == "function" and call["id"]
    assert call["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}

    (pending,) = steps_of(client, thread.id, run.id)
    assert pending["type"] == "tool_calls" and pending["status"] == "in_progress"
    assert pending["completed_at"] is None
    step_call = pending["step_details"]["tool_calls"][0]
    # Semantic Kernel matches these ids: the step's and required_action's must be the same.
    assert [c["id"] for c in pending["step_details"]["tool_calls"]] == call_ids(run)
    assert step_call["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}', "output": None}

    done = client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": call["id"], "output": "sunny"}])
    final = check_run(done)
    assert final["status"] == "completed"

    steps = steps_of(client, thread.id, run.id)
    assert [s["type"] for s in steps] == ["tool_calls", "message_creation"]
    tool_step = steps[0]
    assert tool_step["id"] == pending["id"] and tool_step["status"] == "completed"
    assert tool_step["completed_at"] is not None
    assert tool_step["step_details"]["tool_calls"] == [
        {"id": call["id"], "type": "function",
         "function": {"name": "get_weather", "arguments": '{"city":"Paris"}', "output": "sunny"}}]
    assert _usage_sum(steps) == final["usage"]
    assert final["usage"]["prompt_tokens"] > 0 and final["usage"]["completion_tokens"] > 0

    (answer,) = messages_of(client, thread.id, "assistant")
    assert text(answer) == "tool results: sunny"
    assert answer["id"] == steps[1]["step_details"]["message_creation"]["message_id"]

    first, second = upstream_bodies(upstream, m)
    assert [t["function"]["name"] for t in first["tools"]] == ["get_weather"]
    assert second["messages"][-2] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": call["id"], "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]}
    assert second["messages"][-1] == {"role": "tool", "tool_call_id": call["id"], "content": "sunny"}


def test_parallel_tool_calls_share_one_step(client, assistant):
    m = marker("par")
    thread = new_thread(client, f'{m} [tool: get_weather {{"city": "Oslo"}}] [tool: get_weather {{"city": "Rome"}}]')
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert check_run(run)["status"] == "requires_action"
    ids = call_ids(run)
    assert len(ids) == 2 and len(set(ids)) == 2
    (step,) = steps_of(client, thread.id, run.id)
    assert [c["id"] for c in step["step_details"]["tool_calls"]] == ids
    assert [json.loads(c["function"]["arguments"])["city"] for c in step["step_details"]["tool_calls"]] == [
        "Oslo", "Rome"]
    done = client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id, thread_id=thread.id,
        tool_outputs=[{"tool_call_id": ids[1], "output": "hot"}, {"tool_call_id": ids[0], "output": "cold"}])
    assert check_run(done)["status"] == "completed"
    tool_step, message_step = steps_of(client, thread.id, run.id)
    assert [c["function"]["output"] for c in tool_step["step_details"]["tool_calls"]] == ["cold", "hot"]
    (answer,) = messages_of(client, thread.id, "assistant")
    assert text(answer) == "tool results: cold; hot"


# --- failures ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("status", "code"), [(500, "server_error"), (429, "rate_limit_exceeded"),
                                              (400, "invalid_prompt")])
def test_upstream_error_fails_the_run(client, assistant, upstream, status, code):
    m = marker(f"err{status}")
    thread = new_thread(client, f"{m} [error: {status}]")
    run = check_run(client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id))
    assert run["status"] == "failed"
    assert run["last_error"]["code"] == code and run["last_error"]["message"]
    assert run["failed_at"] >= run["started_at"]
    assert run["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    assert steps_of(client, thread.id, run["id"]) == []
    assert messages_of(client, thread.id, "assistant") == []
    attempts = len(upstream_bodies(upstream, m))
    assert attempts == (1 if status == 400 else 4)  # 5xx and 429 are retried, a bad request is not


def test_stream_cut_mid_answer_fails_run_step_and_message(client, assistant, upstream):
    m = marker("cut")
    thread = new_thread(client, f"{m} [stream-error] [reply: one two three four five six]")
    run = check_run(client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id))
    assert run["status"] == "failed" and run["last_error"]["code"] == "server_error"
    (step,) = steps_of(client, thread.id, run["id"])
    assert step["type"] == "message_creation" and step["status"] == "failed"
    assert step["failed_at"] is not None and step["last_error"]["code"] == "server_error"
    (answer,) = messages_of(client, thread.id, "assistant")
    assert answer["id"] == step["step_details"]["message_creation"]["message_id"]
    assert answer["status"] == "incomplete" and answer["incomplete_at"] is not None
    assert answer["incomplete_details"] == {"reason": "run_failed"}
    assert answer["completed_at"] is None
    assert text(answer) == "one two"  # what was streamed before the cut is kept
    assert len(upstream_bodies(upstream, m)) == 1  # output had started: no retry


def test_stream_cut_mid_tool_call_keeps_the_streamed_call_on_the_failed_step(client, assistant):
    m = marker("cuttool")
    thread = new_thread(client, f'{m} [stream-error] [tool: get_weather {{"city": "Paris x y z"}}]')
    run = check_run(client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id))
    assert run["status"] == "failed"
    (step,) = steps_of(client, thread.id, run["id"])
    assert step["type"] == "tool_calls" and step["status"] == "failed" and step["last_error"]
    (call,) = step["step_details"]["tool_calls"]
    assert call["id"].startswith("call_") and call["function"]["name"] == "get_weather"
    assert '{"city":"Paris x y z"}'.startswith(call["function"]["arguments"])
    assert call["function"]["output"] is None


def test_error_once_is_retried_and_the_run_completes(client, assistant, upstream):
    m = marker("once")
    thread = new_thread(client, f"{m} [error-once: 500] [reply: recovered]")
    run = check_run(client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id))
    assert run["status"] == "completed" and run["last_error"] is None
    (answer,) = messages_of(client, thread.id, "assistant")
    assert text(answer) == "recovered"
    assert len(upstream_bodies(upstream, m)) == 2


# --- cancel ------------------------------------------------------------------------------------------------

def test_cancel_while_waiting_for_the_model(client, assistant):
    m = marker("cdelay")
    thread = new_thread(client, f"{m} [delay: 5] [reply: too late]")
    run = client.beta.threads.runs.create(thread.id, assistant_id=assistant.id)
    wait_run(client, thread.id, run.id, "in_progress")
    started = time.monotonic()
    asked = check_run(client.beta.threads.runs.cancel(run.id, thread_id=thread.id))
    assert asked["status"] == "cancelling" and asked["cancelled_at"] is None
    done = wait_run(client, thread.id, run.id, "cancelled", timeout=2)
    assert time.monotonic() - started < 2
    assert done["cancelled_at"] is not None and done["completed_at"] is None
    assert steps_of(client, thread.id, run.id) == []
    assert messages_of(client, thread.id, "assistant") == []


def test_cancel_mid_answer_cancels_the_step(client, assistant):
    m = marker("cchunk")
    thread = new_thread(client, f"{m} [chunk-delay: 0.5] [tokens: 50]")
    run = client.beta.threads.runs.create(thread.id, assistant_id=assistant.id)
    wait_until(lambda: steps_of(client, thread.id, run.id), what="the message step")
    started = time.monotonic()
    client.beta.threads.runs.cancel(run.id, thread_id=thread.id)
    done = wait_run(client, thread.id, run.id, "cancelled", timeout=2)
    assert time.monotonic() - started < 2
    assert done["usage"] is not None
    (step,) = steps_of(client, thread.id, run.id)
    assert step["status"] == "cancelled" and step["cancelled_at"] is not None
    (answer,) = messages_of(client, thread.id, "assistant")
    assert answer["status"] == "incomplete" and answer["incomplete_details"] == {"reason": "run_cancelled"}
    assert text(answer).startswith("tok") and text(answer).count("tok") < 50


def test_cancel_mid_tool_call_keeps_the_streamed_call_on_the_cancelled_step(client, assistant):
    m = marker("ctool")
    thread = new_thread(client, f'{m} [chunk-delay: 0.3] [tool: get_weather {{"city": "a b c d e f g h i j k l"}}]')
    run = client.beta.threads.runs.create(thread.id, assistant_id=assistant.id)
    wait_until(lambda: steps_of(client, thread.id, run.id), what="the tool step")
    client.beta.threads.runs.cancel(run.id, thread_id=thread.id)
    wait_run(client, thread.id, run.id, "cancelled", timeout=2)
    (step,) = steps_of(client, thread.id, run.id)
    assert step["type"] == "tool_calls" and step["status"] == "cancelled"
    (call,) = step["step_details"]["tool_calls"]
    assert call["id"].startswith("call_") and call["function"]["name"] == "get_weather"
    assert '{"city":"a b c d e f g h i j k l"}'.startswith(call["function"]["arguments"])


def test_cut_off_tool_call_is_closed_not_dropped(client, assistant):
    """A call cut off by the length limit can't be executed: its step is closed, not made to vanish."""
    m = marker("lentool")
    thread = new_thread(client, f'{m} [reply: checking] [tool: get_weather {{"city": "Paris"}}] [length]')
    run = check_run(client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id))
    assert run["status"] == "incomplete" and run["incomplete_details"] == {"reason": "max_completion_tokens"}
    message_step, tool_step = steps_of(client, thread.id, run["id"])
    assert message_step["type"] == "message_creation" and tool_step["type"] == "tool_calls"
    assert tool_step["status"] == "cancelled"
    assert [c["function"]["name"] for c in tool_step["step_details"]["tool_calls"]] == ["get_weather"]
    assert _usage_sum([message_step, tool_step]) == run["usage"]
    (answer,) = messages_of(client, thread.id, "assistant")
    assert text(answer) == "checking" and answer["incomplete_details"] == {"reason": "max_tokens"}


def test_cancel_a_run_that_requires_action(client, assistant):
    m = marker("cra")
    thread = new_thread(client, f'{m} [tool: get_weather {{"city": "Lima"}}]')
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "requires_action"
    client.beta.threads.runs.cancel(run.id, thread_id=thread.id)
    done = wait_run(client, thread.id, run.id, "cancelled", timeout=3)
    assert done["required_action"] is None
    client.beta.threads.messages.create(thread.id, role="user", content="the thread is free again")
    (step,) = steps_of(client, thread.id, run.id)
    assert step["status"] == "cancelled" and step["cancelled_at"] is not None
    with pytest.raises(openai.BadRequestError):
        client.beta.threads.runs.submit_tool_outputs(
            run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": call_ids(run)[0], "output": "x"}])


def test_cancel_a_finished_run_is_refused(client, assistant, http):
    thread = new_thread(client, f"{marker('cfin')} [reply: ok]")
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "completed"
    r = http.post(f"/threads/{thread.id}/runs/{run.id}/cancel")
    assert r.status_code == 400, r.text
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert check_run(client.beta.threads.runs.retrieve(run.id, thread_id=thread.id))["status"] == "completed"


# --- incomplete --------------------------------------------------------------------------------------------

def test_max_completion_tokens_makes_the_run_incomplete(client, assistant, upstream):
    m = marker("maxc")
    thread = new_thread(client, f"{m} [tokens: 400]")
    run = check_run(client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, max_completion_tokens=256))
    assert run["status"] == "incomplete"
    assert run["incomplete_details"] == {"reason": "max_completion_tokens"}
    assert run["max_completion_tokens"] == 256
    assert run["usage"]["completion_tokens"] == 256
    assert only_body(upstream, m)["max_tokens"] == 256
    (step,) = steps_of(client, thread.id, run["id"])
    assert step["type"] == "message_creation"
    (answer,) = messages_of(client, thread.id, "assistant")
    assert answer["status"] == "incomplete" and answer["incomplete_details"] == {"reason": "max_tokens"}
    assert answer["incomplete_at"] is not None and text(answer).count("tok") == 256


def test_max_prompt_tokens_truncates_a_long_thread(client, assistant, upstream):
    """Auto truncation drops messages from the middle until the prompt fits ``max_prompt_tokens``."""
    m = marker("maxp")
    filler = " ".join(["filler"] * 60)
    texts = [f"{m} first message of the thread"] + [f"{m} old {i} {filler}" for i in range(20)]
    thread = new_thread(client, *texts, f"{m} latest question [reply: fits]")
    run = check_run(client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, max_prompt_tokens=256))
    assert run["status"] == "completed", run
    assert run["usage"]["prompt_tokens"] <= 256
    sent = [msg["content"] for msg in only_body(upstream, m)["messages"]]
    assert sent[0] == "Be brief."
    assert sent[-1] == f"{m} latest question [reply: fits]"
    assert 3 <= len(sent) < len(texts) + 2
    assert sent[1] == texts[0]  # the thread's start is kept: messages in the middle are dropped
    kept_old = sent[2:-1]
    assert kept_old == texts[len(texts) - len(kept_old):]  # the most recent of the rest


def test_max_prompt_tokens_too_small_for_the_last_message(client, assistant, upstream):
    m = marker("maxp2")
    thread = new_thread(client, f"{m} " + " ".join(["word"] * 400))
    run = check_run(client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, max_prompt_tokens=256))
    assert run["status"] == "incomplete"
    assert run["incomplete_details"] == {"reason": "max_prompt_tokens"}
    assert upstream_bodies(upstream, m) == []
    assert messages_of(client, thread.id, "assistant") == []
    for step in steps_of(client, thread.id, run["id"]):
        check_step(step)


def test_prompt_over_max_prompt_tokens_ends_incomplete(client, assistant, upstream):
    """Estimates can miss: when the upstream counts more prompt tokens than allowed, the run can't complete."""
    m = marker("maxp3")
    thread = new_thread(client, f"{m} " + "a " * 300 + "[reply: short]")
    run = check_run(client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, max_prompt_tokens=256))
    sent = upstream_bodies(upstream, m)
    assert run["usage"]["prompt_tokens"] <= 256 or run["status"] == "incomplete", run
    if run["status"] == "incomplete":
        assert run["incomplete_details"] == {"reason": "max_prompt_tokens"}
        assert len(sent) <= 1
    for step in steps_of(client, thread.id, run["id"]):
        assert step["status"] != "in_progress"


# --- one active run per thread -------------------------------------------------------------------------------

@pytest.fixture
def busy_thread(client, assistant):
    """A thread whose run waits for tool outputs (active until cancelled)."""
    thread = new_thread(client, f'{marker("busy")} [tool: get_weather {{"city": "Kyiv"}}]')
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "requires_action"
    yield thread, run
    client.beta.threads.runs.cancel(run.id, thread_id=thread.id)
    wait_run(client, thread.id, run.id, "cancelled")


def test_second_run_on_a_busy_thread_is_refused(client, assistant, http, busy_thread):
    thread, run = busy_thread
    r = http.post(f"/threads/{thread.id}/runs", json={"assistant_id": assistant.id})
    assert r.status_code == 400, r.text
    assert run.id in r.json()["error"]["message"]
    assert len(client.beta.threads.runs.list(thread.id).data) == 1


def test_new_message_on_a_busy_thread_is_refused(client, http, busy_thread):
    thread, _ = busy_thread
    r = http.post(f"/threads/{thread.id}/messages", json={"role": "user", "content": "hello?"})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert len(messages_of(client, thread.id)) == 1


def test_a_new_run_is_accepted_once_the_previous_one_ended(client, assistant):
    thread = new_thread(client, f"{marker('seq')} [reply: one]")
    first = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert first.status == "completed"
    second = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert check_run(second)["status"] == "completed"
    assert [text(a) for a in messages_of(client, thread.id, "assistant")] == ["one", "one"]
