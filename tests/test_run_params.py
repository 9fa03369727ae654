"""Every run parameter, seen where it matters: in the request assistd sends to the model upstream."""

from __future__ import annotations

import json

import openai
import pytest

from tests.run_helpers import (
    INSTRUCTIONS,
    MODEL,
    WEATHER,
    call_ids,
    check_run,
    marker,
    messages_of,
    new_assistant,
    new_thread,
    only_body,
    text,
    upstream_bodies,
    wait_run,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SK_TOOL = {"type": "function", "function": {
    "name": "WeatherPlugin-get_weather", "description": "Gets the weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
OTHER_TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}


@pytest.fixture(scope="module")
def assistant(client):
    return new_assistant(client, tools=[WEATHER])


@pytest.fixture(scope="module")
def bare_assistant(client):
    """No tools, as Semantic Kernel creates them: tools come with each run."""
    return new_assistant(client)


def run_once(client, upstream, assistant, **params):
    """A thread with one marked message, a run with ``params`` polled to its end: (run, body sent)."""
    m = marker("p")
    thread = new_thread(client, f"{m} {params.pop('say', '[reply: ok]')}")
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id, **params)
    return check_run(run), only_body(upstream, m), thread


# --- model, instructions, sampling, limits ---------------------------------------------------------------

def test_model_override(client, upstream, assistant):
    run, body, _ = run_once(client, upstream, assistant, model="gpt-4o")
    assert run["model"] == "gpt-4o" and body["model"] == "gpt-4o"
    run, body, _ = run_once(client, upstream, assistant)
    assert run["model"] == MODEL and body["model"] == MODEL


def test_instructions_override_and_additional_instructions(client, upstream, assistant):
    run, body, _ = run_once(client, upstream, assistant, instructions="Answer in French.")
    assert run["instructions"] == "Answer in French."
    assert body["messages"][0] == {"role": "system", "content": "Answer in French."}

    run, body, _ = run_once(client, upstream, assistant, additional_instructions="Mention the date.")
    system = body["messages"][0]
    assert system["role"] == "system"
    assert system["content"].startswith(INSTRUCTIONS) and system["content"].endswith("Mention the date.")
    assert run["instructions"] == system["content"]

    run, body, _ = run_once(client, upstream, assistant, instructions="Base.", additional_instructions="More.")
    assert body["messages"][0]["content"].startswith("Base.") and body["messages"][0]["content"].endswith("More.")


def test_sampling_and_completion_limit(client, upstream, assistant):
    run, body, _ = run_once(client, upstream, assistant, temperature=0.3, top_p=0.9, max_completion_tokens=300)
    assert (run["temperature"], run["top_p"], run["max_completion_tokens"]) == (0.3, 0.9, 300)
    assert body["temperature"] == 0.3 and body["top_p"] == 0.9
    assert body["max_tokens"] == 300 and "max_completion_tokens" not in body
    assert run["status"] == "completed"


def test_sampling_defaults_come_from_the_assistant(client, upstream):
    tuned = new_assistant(client, temperature=0.7, top_p=0.8)
    run, body, _ = run_once(client, upstream, tuned)
    assert (run["temperature"], run["top_p"]) == (0.7, 0.8) == (body["temperature"], body["top_p"])
    run, body, _ = run_once(client, upstream, tuned, temperature=0.1)
    assert (body["temperature"], body["top_p"]) == (0.1, 0.8)


def test_metadata_is_stored(client, upstream, assistant):
    run, _, thread = run_once(client, upstream, assistant, metadata={"user": "u-1", "session": "s-9"})
    assert run["metadata"] == {"user": "u-1", "session": "s-9"}
    again = check_run(client.beta.threads.runs.retrieve(run["id"], thread_id=thread.id))
    assert again["metadata"] == run["metadata"]


def test_additional_messages_join_the_thread_and_reach_the_model(client, upstream, assistant):
    m = marker("addm")
    thread = new_thread(client, f"{m} first")
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id,
        additional_messages=[{"role": "assistant", "content": f"{m} an earlier answer"},
                             {"role": "user", "content": [{"type": "text", "text": f"{m} second"},
                                                          {"type": "text", "text": " [reply: got both]"}]}])
    assert check_run(run)["status"] == "completed"
    sent = [(msg["role"], msg["content"]) for msg in only_body(upstream, m)["messages"][1:]]
    assert sent == [("user", f"{m} first"), ("assistant", f"{m} an earlier answer"),
                    ("user", f"{m} second [reply: got both]")]
    thread_messages = messages_of(client, thread.id)
    assert [text(x) for x in thread_messages] == [f"{m} first", f"{m} an earlier answer",
                                                  f"{m} second [reply: got both]", "got both"]
    assert thread_messages[-1]["run_id"] == run.id and thread_messages[1]["run_id"] is None


# --- tools ---------------------------------------------------------------------------------------------------

def test_run_only_tools_reach_the_model(client, upstream, bare_assistant):
    """Semantic Kernel's way: the assistant has no tools, each run brings them."""
    run, body, thread = run_once(client, upstream, bare_assistant, tools=[SK_TOOL],
                                 say='[tool: WeatherPlugin-get_weather {"city": "Oslo"}]')
    assert [t["function"]["name"] for t in body["tools"]] == ["WeatherPlugin-get_weather"]
    assert body["tools"][0]["function"]["parameters"] == SK_TOOL["function"]["parameters"]
    assert run["status"] == "requires_action"
    assert [t["function"]["name"] for t in run["tools"]] == ["WeatherPlugin-get_weather"]
    (call,) = run["required_action"]["submit_tool_outputs"]["tool_calls"]
    assert call["function"]["name"] == "WeatherPlugin-get_weather"
    done = client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run["id"], thread_id=thread.id, tool_outputs=[{"tool_call_id": call["id"], "output": "4C"}])
    assert check_run(done)["status"] == "completed"


def test_run_tools_replace_the_assistants(client, upstream, assistant):
    run, body, _ = run_once(client, upstream, assistant, tools=[OTHER_TOOL])
    assert [t["function"]["name"] for t in body["tools"]] == ["lookup"]
    run, body, _ = run_once(client, upstream, assistant, tools=[])
    assert "tools" not in body and "tool_choice" not in body and run["tools"] == []
    run, body, _ = run_once(client, upstream, assistant)
    assert [t["function"]["name"] for t in body["tools"]] == ["get_weather"]


@pytest.mark.parametrize("choice", ["none", "auto", "required",
                                    {"type": "function", "function": {"name": "get_weather"}}])
def test_tool_choice_is_passed_on(client, upstream, assistant, choice):
    run, body, _ = run_once(client, upstream, assistant, tool_choice=choice)
    assert run["tool_choice"] == choice
    assert body["tool_choice"] == choice


def test_tool_choice_naming_an_unknown_function_is_refused(client, assistant, http):
    thread = new_thread(client, f"{marker('badchoice')} hi")
    r = http.post(f"/threads/{thread.id}/runs", json={
        "assistant_id": assistant.id, "tool_choice": {"type": "function", "function": {"name": "nope"}}})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "tool_choice"
    assert client.beta.threads.runs.list(thread.id).data == []
    with pytest.raises(openai.BadRequestError):
        client.beta.threads.runs.create(thread.id, assistant_id=assistant.id, tools=[OTHER_TOOL],
                                        tool_choice={"type": "function", "function": {"name": "get_weather"}})


def test_parallel_tool_calls_false(client, upstream, assistant):
    run, body, _ = run_once(client, upstream, assistant, parallel_tool_calls=False)
    assert run["parallel_tool_calls"] is False and body["parallel_tool_calls"] is False
    run, body, _ = run_once(client, upstream, assistant)
    assert run["parallel_tool_calls"] is True and body["parallel_tool_calls"] is True


# --- response format -----------------------------------------------------------------------------------------

def test_response_format_json_object(client, upstream, assistant):
    run, body, thread = run_once(client, upstream, assistant, response_format={"type": "json_object"},
                                 say="give json")
    assert run["response_format"] == {"type": "json_object"}
    assert body["response_format"] == {"type": "json_object"}
    (answer,) = messages_of(client, thread.id, "assistant")
    assert json.loads(text(answer))["echo"].endswith("give json")


def test_response_format_json_schema(client, upstream, assistant):
    schema = {"type": "json_schema", "json_schema": {
        "name": "answer", "strict": True,
        "schema": {"type": "object", "properties": {"echo": {"type": "string"}}, "required": ["echo"],
                   "additionalProperties": False}}}
    run, body, _ = run_once(client, upstream, assistant, response_format=schema, say="schema please")
    assert body["response_format"] == schema
    assert run["response_format"] == schema and run["status"] == "completed"
    _, body, _ = run_once(client, upstream, assistant, response_format="auto")
    assert "response_format" not in body


# --- truncation ----------------------------------------------------------------------------------------------

def test_truncation_last_messages_sends_only_the_last_n(client, upstream, assistant):
    m = marker("trunc")
    texts = [f"{m} message {i}" for i in range(5)] + [f"{m} last [reply: ok]"]
    thread = new_thread(client, *texts)
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id,
        truncation_strategy={"type": "last_messages", "last_messages": 2})
    raw = check_run(run)
    assert raw["truncation_strategy"] == {"type": "last_messages", "last_messages": 2}
    sent = only_body(upstream, m)["messages"]
    assert [x["content"] for x in sent] == [INSTRUCTIONS, texts[-2], texts[-1]]


def test_truncation_auto_sends_the_whole_thread(client, upstream, assistant):
    m = marker("auto")
    texts = [f"{m} message {i}" for i in range(5)] + [f"{m} last [reply: ok]"]
    thread = new_thread(client, *texts)
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, truncation_strategy={"type": "auto"})
    assert check_run(run)["truncation_strategy"] == {"type": "auto", "last_messages": None}
    assert [x["content"] for x in only_body(upstream, m)["messages"]] == [INSTRUCTIONS, *texts]


@pytest.mark.parametrize("params", [
    {"truncation_strategy": {"type": "last_messages", "last_messages": 2}},
    {"truncation_strategy": {"type": "auto"}, "max_prompt_tokens": 256},
    {"truncation_strategy": {"type": "last_messages", "last_messages": 30}, "max_prompt_tokens": 256},
], ids=["last_messages", "auto-over-budget", "last_messages-over-budget"])
def test_a_thread_created_with_its_run_is_truncated_alike(client, upstream, assistant, params):
    """A run on a thread created with it builds its first prompt from the messages at hand, without reading
    the thread back (runner/context.py ``history_of``): the same prompt as a run on the stored thread."""
    filler = " ".join(["filler"] * 60)

    def texts(m: str) -> list[str]:
        return [f"{m} first"] + [f"{m} old {i} {filler}" for i in range(12)] + [f"{m} last [reply: ok]"]

    m = marker("trunc")  # one marker for both runs: the same texts, the same token counts
    check_run(client.beta.threads.runs.create_and_poll(
        thread_id=new_thread(client, *texts(m)).id, assistant_id=assistant.id, **params))
    check_run(client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id, thread={"messages": [{"role": "user", "content": t} for t in texts(m)]},
        **params))
    stored, new = ([x["content"] for x in body["messages"]] for body in upstream_bodies(upstream, m))
    assert new == stored and 3 <= len(stored) < 16


def test_max_prompt_tokens_counts_tokens_not_bytes(client, upstream, assistant):
    """Text of many bytes a token (here Chinese, ~3 bytes a character, about a token each) is counted in
    cl100k_base tokens: the prompt sent is the thread's first message and the longest run of newest ones
    that fits max_prompt_tokens, counted as the server counts (+4 a message)."""
    from assistd.retrieval import tokens

    m = marker("cjk")
    texts = [f"{m} 开始"] + [f"{m} 第{i}条消息：代码解释器会运行模型写的程序，并返回结果。" * 3 for i in range(12)]
    texts.append(f"{m} 最后 [reply: ok]")
    limit = 400
    run = check_run(client.beta.threads.runs.create_and_poll(
        thread_id=new_thread(client, *texts).id, assistant_id=assistant.id, max_prompt_tokens=limit))
    assert run["status"] == "completed", run
    sent = [x["content"] for x in only_body(upstream, m)["messages"]]

    def cost(text: str) -> int:
        return tokens.count(text) + 4

    assert sent[0] == INSTRUCTIONS and sent[1] == texts[0] and sent[-1] == texts[-1]
    kept = sent[2:]
    assert kept == texts[len(texts) - len(kept):] and len(kept) < len(texts) - 1  # a suffix; some dropped
    used = sum(cost(t) for t in sent)
    assert used <= limit
    dropped = texts[len(texts) - len(kept) - 1]  # the newest message left out did not fit
    assert used + cost(dropped) > limit
    assert len(texts[1].encode()) // 4 < tokens.count(texts[1])  # what the old bytes/4 estimate got wrong


# --- create thread and run -----------------------------------------------------------------------------------

def test_create_and_run_poll_with_thread_messages(client, upstream, assistant):
    m = marker("tnr")
    run = client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id, metadata={"k": "v"},
        thread={"messages": [{"role": "user", "content": f"{m} hello"},
                             {"role": "user", "content": f"{m} again [reply: hi]"}],
                "metadata": {"t": "1"}})
    raw = check_run(run)
    assert raw["status"] == "completed" and raw["metadata"] == {"k": "v"}
    thread = client.beta.threads.retrieve(run.thread_id)
    assert thread.metadata == {"t": "1"}
    assert [text(x) for x in messages_of(client, run.thread_id)] == [f"{m} hello", f"{m} again [reply: hi]", "hi"]
    assert [x["content"] for x in only_body(upstream, m)["messages"][1:]] == [f"{m} hello", f"{m} again [reply: hi]"]


def test_langchain_nulls_on_thread_and_run(client, upstream, assistant, http):
    m = marker("lc")
    r = http.post("/threads/runs", json={
        "assistant_id": assistant.id, "metadata": None, "instructions": None, "model": None, "tools": None,
        "thread": {"metadata": None, "messages": [
            {"role": "user", "content": f"{m} hi [reply: chained]", "attachments": None, "metadata": None}]}})
    assert r.status_code == 200, r.text
    run = check_run(r.json())
    assert run["metadata"] == {} and run["instructions"] == INSTRUCTIONS and run["model"] == MODEL
    done = wait_run(client, run["thread_id"], run["id"], "completed")
    assert done["tools"] == [WEATHER]
    (user, answer) = messages_of(client, run["thread_id"])
    assert user["attachments"] == [] and user["metadata"] == {}
    assert text(answer) == "chained"
    assert only_body(upstream, m)["messages"][0] == {"role": "system", "content": INSTRUCTIONS}


def test_llamaindex_instructions_null_keeps_the_assistants(client, upstream, assistant, http):
    m = marker("li")
    thread = new_thread(client, f"{m} [reply: kept]")
    r = http.post(f"/threads/{thread.id}/runs", json={"assistant_id": assistant.id, "instructions": None})
    assert r.status_code == 200, r.text
    assert r.json()["instructions"] == INSTRUCTIONS
    wait_run(client, thread.id, r.json()["id"], "completed")
    assert only_body(upstream, m)["messages"][0] == {"role": "system", "content": INSTRUCTIONS}


def test_semantic_kernel_run_shape(client, upstream, bare_assistant):
    """What Semantic Kernel sends on every run: instructions, sampling, metadata, tools, limits."""
    m = marker("sk")
    thread = client.beta.threads.create(messages=[
        {"role": "user", "content": [{"type": "text", "text": f"{m} "},
                                     {"type": "text", "text": '[tool: WeatherPlugin-get_weather {"city": "Bern"}]'}]}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=bare_assistant.id, instructions="You are SK.", temperature=0.2,
        top_p=0.5, metadata={"sk": "1"}, tools=[SK_TOOL], max_completion_tokens=1000,
        truncation_strategy={"type": "last_messages", "last_messages": 10})
    assert check_run(run)["status"] == "requires_action"
    (step,) = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id).data
    assert [c.id for c in step.step_details.tool_calls] == call_ids(run)
    body = only_body(upstream, m)
    assert body["messages"][0]["content"] == "You are SK." and body["max_tokens"] == 1000
    assert (body["temperature"], body["top_p"]) == (0.2, 0.5)
    done = client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": call_ids(run)[0], "output": "2C"}])
    assert check_run(done)["status"] == "completed"
    message_step = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id, order="asc").data[-1]
    message = client.beta.threads.messages.retrieve(message_step.step_details.message_creation.message_id,
                                                    thread_id=thread.id)
    assert message.content[0].text.value == "tool results: 2C"
