"""The file_search tool in runs, end to end through the official SDK against the live server.

The scripted model calls ``file_search`` when told ``[tool: file_search {"query": …}]``; with ``[cite]`` its
answer after the results is ``cited: `` + the source markers it saw, which become file_citation annotations.
Vector stores are ingested with the scripted upstream's embeddings (conftest.py).
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from assistd.devupstream.script import OnceRegistry, plan_reply
from assistd.services import citations
from assistd.services.step_render import render_step
from tests.run_helpers import (
    FILE_SEARCH_CONTENT,
    WEATHER,
    call_ids,
    check_run,
    marker,
    messages_of,
    new_assistant,
    steps_of,
    text,
    upstream_bodies,
    wait_run,
)
from tests.spec import assert_schema, wire
from tests.test_streaming import check_event, stream_post

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

ALPHA = ("The zorblax reactor at Quillfield station runs on purple helium. It was commissioned in 1987 and "
         "its chief engineer is Odalys Brenn.")
BETA = ("Marmalade Tuesday is the annual festival of the Vexmoor valley, held on the first frost of the year "
        "with lanterns and quince pies.")
GAMMA = "The glimmerwick vault opens with the phrase seventeen hedgehogs dancing."


def search_message(query: str, *extra: str) -> str:
    return f'{marker("fs")} [tool: file_search {json.dumps({"query": query})}] [cite] ' + " ".join(extra)


def upload(client: Any, name: str, content: str) -> Any:
    return client.files.create(file=(name, content.encode()), purpose="assistants")


def fs_calls(step: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in step["step_details"]["tool_calls"] if c["type"] == "file_search"]


def check_annotations(message: dict[str, Any], allowed_files: set[str]) -> list[dict[str, Any]]:
    assert_schema(message, "MessageObject")
    [part] = message["content"]
    value, annotations = part["text"]["value"], part["text"]["annotations"]
    assert annotations, message
    for a in annotations:
        assert a["type"] == "file_citation"
        assert value[a["start_index"]:a["end_index"]] == a["text"], (value, a)
        assert a["text"].startswith("【") and a["text"].endswith("】")
        assert a["file_citation"]["file_id"] in allowed_files, (a, allowed_files)
    return annotations


@pytest.fixture(scope="module")
def files(client):
    return {name: upload(client, f"{name}.txt", body) for name, body in
            (("alpha", ALPHA), ("beta", BETA), ("gamma", GAMMA))}


@pytest.fixture(scope="module")
def store(client, files):
    vs = client.vector_stores.create(name="fs-runs")
    for name in ("alpha", "beta"):
        done = client.vector_stores.files.create_and_poll(file_id=files[name].id, vector_store_id=vs.id,
                                                          poll_interval_ms=50)
        assert done.status == "completed", done
    return vs


@pytest.fixture(scope="module")
def assistant(client, store):
    return new_assistant(client, tools=[{"type": "file_search"}, WEATHER],
                         tool_resources={"file_search": {"vector_store_ids": [store.id]}})


@pytest.fixture(scope="module")
def searched_run(client, assistant):
    thread = client.beta.threads.create(messages=[
        {"role": "user", "content": search_message("zorblax reactor purple helium")}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id,
                                                   poll_interval_ms=50)
    return thread, run


def test_scripted_cite_directive_copies_the_markers():
    body = {"model": "m", "messages": [
        {"role": "user", "content": '[tool: file_search {"query": "x"}] [cite]'},
        {"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
                                              "function": {"name": "file_search", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c", "content": "【0:0†a.txt】\nfoo\n\n【0:1†b.txt】\nbar 【0:0†a.txt】"}]}
    assert plan_reply(body, OnceRegistry()).text == "cited: 【0:0†a.txt】 【0:1†b.txt】"
    body["messages"][2]["content"] = "nothing"
    assert plan_reply(body, OnceRegistry()).text == "cited:"
    assert plan_reply(body | {"messages": body["messages"][:1]}, OnceRegistry()).tool_calls[0].name == "file_search"


def test_render_step_shows_content_only_when_included():
    call = {"id": "call_1", "type": "file_search", "file_search": {
        "ranking_options": {"ranker": "auto", "score_threshold": 0.0},
        "results": [{"file_id": "file-1", "file_name": "a.txt", "score": 0.5,
                     "content": [{"type": "text", "text": "t"}]}]},
        "_assistd": {"name": "file_search", "arguments": "{}", "source": 0}}
    stored = json.dumps({"id": "step_1", "step_details": {"type": "tool_calls", "tool_calls": [call]}},
                        separators=(",", ":"))
    plain = json.loads(render_step(stored, None))
    assert plain["step_details"]["tool_calls"][0] == {"id": "call_1", "type": "file_search", "file_search": {
        "ranking_options": {"ranker": "auto", "score_threshold": 0.0},
        "results": [{"file_id": "file-1", "file_name": "a.txt", "score": 0.5}]}}
    full = json.loads(render_step(stored.encode(), [FILE_SEARCH_CONTENT]))
    assert full["step_details"]["tool_calls"][0]["file_search"]["results"][0]["content"] == [
        {"type": "text", "text": "t"}]
    assert "_assistd" not in full["step_details"]["tool_calls"][0]
    # Steps without a file_search call come back as they are, undecoded.
    other = '{"id":"step_2","step_details":{"type":"tool_calls","tool_calls":[{"type":"function","function":' \
            '{"name":"f","arguments":"{\\"type\\":\\"file_search\\"}","output":null}}]}}'
    assert render_step(other, None) is other and render_step(other.encode(), None) == other.encode()


def test_citations_only_for_known_sources():
    sources = {(0, 0): "file-a", (1, 2): "file-b"}
    value = "x 💡 【0:0†a.txt】 y 【1:2】 z 【0:9†nope】 【1:2†source】"
    annotations = citations.annotate(value, sources)
    assert [(a["text"], a["file_citation"]["file_id"]) for a in annotations] == [
        ("【0:0†a.txt】", "file-a"), ("【1:2】", "file-b"), ("【1:2†source】", "file-b")]
    assert all(value[a["start_index"]:a["end_index"]] == a["text"] for a in annotations)
    assert citations.annotate(value, {}) == [] and citations.annotate("no markers", sources) == []


def test_run_searches_the_files_and_cites_them(client, upstream, searched_run, files, store):
    thread, run = searched_run
    raw = check_run(run)
    assert raw["status"] == "completed", raw
    steps = steps_of(client, thread.id, run.id)
    assert [s["type"] for s in steps] == ["tool_calls", "message_creation"]
    search_step, answer_step = steps
    assert search_step["status"] == "completed" and search_step["usage"]["prompt_tokens"] > 0
    [call] = search_step["step_details"]["tool_calls"]
    assert call["type"] == "file_search" and call["id"].startswith("call_")
    assert set(call) == {"id", "type", "file_search"}, call  # nothing private shows
    assert call["file_search"]["ranking_options"] == {"ranker": "auto", "score_threshold": 0.0}
    results = call["file_search"]["results"]
    assert results and results[0]["file_id"] == files["alpha"].id and results[0]["file_name"] == "alpha.txt"
    assert all(0 <= r["score"] <= 1 and "content" not in r for r in results), results
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
    assert {r["file_id"] for r in results} <= {files["alpha"].id, files["beta"].id}
    assert raw["usage"]["total_tokens"] == sum(s["usage"]["total_tokens"] for s in steps)

    # The model was offered the search as a function, and read the results under source markers.
    bodies = upstream_bodies(upstream, "zorblax reactor purple helium")
    assert len(bodies) == 2
    offered = [t["function"]["name"] for t in bodies[0]["tools"]]
    assert offered == ["get_weather", "file_search"], offered
    assert bodies[0]["tools"][1]["function"]["parameters"]["required"] == ["query"]
    tool_message = bodies[1]["messages"][-1]
    assert tool_message["role"] == "tool" and tool_message["tool_call_id"] == call["id"]
    assert tool_message["content"].startswith("【0:0†alpha.txt】\n") and "Odalys Brenn" in tool_message["content"]
    assert bodies[1]["messages"][-2]["tool_calls"][0]["function"] == {
        "name": "file_search", "arguments": json.dumps({"query": "zorblax reactor purple helium"},
                                                       separators=(",", ":"))}

    # The answer cites every result by its marker; the annotations point into its text.
    [answer] = messages_of(client, thread.id, "assistant")
    assert answer_step["step_details"]["message_creation"]["message_id"] == answer["id"]
    value = text(answer)
    assert value.startswith("cited: 【0:0†alpha.txt】")
    annotations = check_annotations(answer, {files["alpha"].id, files["beta"].id})
    assert len(annotations) == len(results)
    assert [a["file_citation"]["file_id"] for a in annotations] == [r["file_id"] for r in results]
    assert annotations[0] == {"type": "file_citation", "text": "【0:0†alpha.txt】",
                              "file_citation": {"file_id": files["alpha"].id},
                              "start_index": len("cited: "), "end_index": len("cited: 【0:0†alpha.txt】")}
    assert assert_schema(client.beta.threads.messages.retrieve(answer["id"], thread_id=thread.id),
                         "MessageObject") == answer


def test_step_content_only_with_include(client, http, searched_run):
    thread, run = searched_run
    step = steps_of(client, thread.id, run.id)[0]
    base = f"/threads/{thread.id}/runs/{run.id}/steps"

    def results(obj: dict[str, Any]) -> list[dict[str, Any]]:
        assert_schema(obj, "RunStepObject")
        return fs_calls(obj)[0]["file_search"]["results"]

    for r in (http.get(f"{base}/{step['id']}"), http.get(base, params={"order": "asc"})):
        assert r.status_code == 200, r.text
        obj = r.json() if "step_details" in r.json() else r.json()["data"][0]
        assert all("content" not in x for x in results(obj)) and "_assistd" not in r.text
    with_content = [http.get(f"{base}/{step['id']}", params={"include[]": FILE_SEARCH_CONTENT}).json(),
                    http.get(base, params={"include[]": FILE_SEARCH_CONTENT, "order": "asc"}).json()["data"][0],
                    wire(client.beta.threads.runs.steps.retrieve(step["id"], thread_id=thread.id, run_id=run.id,
                                                                 include=[FILE_SEARCH_CONTENT])),
                    wire(client.beta.threads.runs.steps.list(run.id, thread_id=thread.id, order="asc",
                                                             include=[FILE_SEARCH_CONTENT]).data[0])]
    for obj in with_content:
        found = results(obj)
        assert found[0]["content"] == [{"type": "text", "text": ALPHA}], found[0]
        assert all(x["content"][0]["type"] == "text" and x["content"][0]["text"] for x in found)
        assert "_assistd" not in json.dumps(obj)
        without = json.loads(json.dumps(obj))
        for x in fs_calls(without)[0]["file_search"]["results"]:
            del x["content"]
        assert without == step


def test_streamed_run_shows_the_search_step(client, http, assistant, files):
    thread = client.beta.threads.create(messages=[
        {"role": "user", "content": search_message("Marmalade Tuesday Vexmoor festival")}])
    s = stream_post(http, f"/threads/{thread.id}/runs", {"assistant_id": assistant.id, "stream": True})
    assert s.names() == [
        "thread.run.created", "thread.run.queued", "thread.run.in_progress",
        "thread.run.step.created", "thread.run.step.in_progress", "thread.run.step.delta…",
        "thread.run.step.completed",
        "thread.run.step.created", "thread.run.step.in_progress",
        "thread.message.created", "thread.message.in_progress", "thread.message.delta…",
        "thread.message.completed", "thread.run.step.completed", "thread.run.completed", "done"]
    created = s.first("thread.run.step.created")
    assert created["type"] == "tool_calls" and created["status"] == "in_progress"
    step_deltas = s.of("thread.run.step.delta")
    [piece] = [c for d in step_deltas for c in d["delta"]["step_details"]["tool_calls"]]
    assert piece["index"] == 0 and piece["type"] == "file_search"
    assert piece["file_search"]["results"][0]["file_id"] == files["beta"].id
    assert all("content" not in r for r in piece["file_search"]["results"]) and "_assistd" not in piece
    completed_step = s.first("thread.run.step.completed")
    assert completed_step["id"] == created["id"]
    stored = steps_of(client, thread.id, s.first("thread.run.created")["id"])[0]
    assert completed_step == stored

    # The last message delta carries the citations; the completed message has them too.
    message = s.first("thread.message.completed")
    annotations = check_annotations(message, {files["alpha"].id, files["beta"].id})
    last = s.of("thread.message.delta")[-1]["delta"]["content"][0]
    assert last["text"]["value"] == ""
    assert [{k: v for k, v in a.items() if k != "index"} for a in last["text"]["annotations"]] == annotations
    assert [a["index"] for a in last["text"]["annotations"]] == list(range(len(annotations)))
    assert "".join(d["delta"]["content"][0]["text"]["value"] for d in s.of("thread.message.delta")) == \
        message["content"][0]["text"]["value"]

    # The SDK's stream helper accumulates the same message, annotations included.
    thread2 = client.beta.threads.create(messages=[
        {"role": "user", "content": search_message("Marmalade Tuesday Vexmoor festival")}])
    with client.beta.threads.runs.stream(thread_id=thread2.id, assistant_id=assistant.id) as stream:
        for event in stream:
            check_event(event.event, wire(event.data))
        [final] = stream.get_final_messages()
        steps = stream.get_final_run_steps()
    assert [a["file_citation"]["file_id"] for a in wire(final)["content"][0]["text"]["annotations"]] == \
        [a["file_citation"]["file_id"] for a in annotations]
    assert [s_.type for s_ in steps] == ["tool_calls", "message_creation"]
    assert steps[0].step_details.tool_calls[0].type == "file_search"


def test_search_and_client_function_in_one_answer(client, upstream, assistant, files):
    mark = marker("mix")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": (
        f'{mark} [tool: file_search {{"query": "zorblax reactor"}}] [tool: get_weather {{"city": "Oslo"}}]')}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id,
                                                   poll_interval_ms=50)
    raw = check_run(run)
    assert raw["status"] == "requires_action"
    pending = raw["required_action"]["submit_tool_outputs"]["tool_calls"]
    assert [c["function"]["name"] for c in pending] == ["get_weather"]
    steps = steps_of(client, thread.id, run.id)
    assert [(s["type"], s["status"]) for s in steps] == [("tool_calls", "in_progress"), ("tool_calls", "completed")]
    assert [c["type"] for c in steps[0]["step_details"]["tool_calls"]] == ["function"]
    assert fs_calls(steps[1])[0]["file_search"]["results"][0]["file_id"] == files["alpha"].id
    run = client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": call_ids(run)[0], "output": "rainy"}],
        poll_interval_ms=50)
    assert check_run(run)["status"] == "completed"
    [answer] = messages_of(client, thread.id, "assistant")
    assert "rainy" in text(answer) and "【0:0†alpha.txt】" in text(answer)
    check_annotations(answer, {files["alpha"].id, files["beta"].id})
    # Every call of the answer was shown to the model with its output, the search's under its markers.
    last = upstream_bodies(upstream, mark)[-1]["messages"]
    tools = [m for m in last if m["role"] == "tool"]
    assert len(tools) == 2 and {t["tool_call_id"] for t in tools} == {c["id"] for s in steps
                                                                      for c in s["step_details"]["tool_calls"]}


def test_forced_file_search_forces_the_first_call_only(client, upstream, assistant):
    mark = marker("forced")
    thread = client.beta.threads.create(messages=[
        {"role": "user", "content": f'{mark} [tool: file_search {{"query": "helium"}}]'}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id,
                                                   tool_choice={"type": "file_search"}, poll_interval_ms=50)
    assert check_run(run)["status"] == "completed" and run.tool_choice.type == "file_search"
    bodies = upstream_bodies(upstream, mark)
    assert [b["tool_choice"] for b in bodies] == [
        {"type": "function", "function": {"name": "file_search"}}, "auto"]


def test_no_vector_store_no_search_function(client, upstream):
    bare = new_assistant(client, tools=[{"type": "file_search"}])
    mark = marker("bare")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": f"{mark} [reply: nothing]"}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=bare.id, poll_interval_ms=50)
    assert check_run(run)["status"] == "completed"
    [body] = upstream_bodies(upstream, mark)
    assert "tools" not in body or not body["tools"]


def test_tool_settings_reach_the_step(client, store, files):
    tuned = new_assistant(client, tools=[{"type": "file_search", "file_search": {
        "max_num_results": 1, "ranking_options": {"ranker": "default_2024_08_21", "score_threshold": 0.1}}}],
        tool_resources={"file_search": {"vector_store_ids": [store.id]}})
    thread = client.beta.threads.create(messages=[{"role": "user", "content": search_message("quince pies lanterns")}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=tuned.id, poll_interval_ms=50)
    assert check_run(run)["status"] == "completed"
    [call] = fs_calls(steps_of(client, thread.id, run.id)[0])
    assert call["file_search"]["ranking_options"] == {"ranker": "default_2024_08_21", "score_threshold": 0.1}
    assert [r["file_id"] for r in call["file_search"]["results"]] == [files["beta"].id]


def wait_store_files(client: Any, store_id: str, count: int, timeout: float = 20) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        listed = client.vector_stores.files.list(store_id, limit=100).data
        if len(listed) == count and all(f.status == "completed" for f in listed):
            return listed
        assert time.monotonic() < deadline, [(f.id, f.status) for f in listed]
        time.sleep(0.05)


def test_vector_stores_helper_on_thread_create(client, files):
    helper_assistant = new_assistant(client, tools=[{"type": "file_search"}])
    thread = client.beta.threads.create(
        tool_resources={"file_search": {"vector_stores": [{"file_ids": [files["gamma"].id],
                                                           "metadata": {"made": "helper"}}]}},
        messages=[{"role": "user", "content": search_message("glimmerwick vault phrase")}])
    raw = assert_schema(thread, "ThreadObject")
    [vs_id] = raw["tool_resources"]["file_search"]["vector_store_ids"]
    store = assert_schema(client.vector_stores.retrieve(vs_id), "VectorStoreObject")
    assert store["metadata"] == {"made": "helper"}
    assert store["expires_after"] == {"anchor": "last_active_at", "days": 7}
    assert client.beta.threads.retrieve(thread.id).tool_resources.file_search.vector_store_ids == [vs_id]
    # No waiting for ingestion here: a run waits for the thread's own store (the hosted API's fallback).
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=helper_assistant.id,
                                                   poll_interval_ms=50)
    assert check_run(run)["status"] == "completed"
    [call] = fs_calls(steps_of(client, thread.id, run.id)[0])
    assert call["file_search"]["results"][0]["file_id"] == files["gamma"].id
    [answer] = messages_of(client, thread.id, "assistant")
    assert check_annotations(answer, {files["gamma"].id})[0]["text"] == "【0:0†gamma.txt】"


def test_vector_stores_helper_on_assistant_create_and_modify(client, http, files):
    made = client.beta.assistants.create(model="gpt-4o-mini", tools=[{"type": "file_search"}], tool_resources={
        "file_search": {"vector_stores": [{"file_ids": [files["alpha"].id], "metadata": {"k": "v"},
                                           "chunking_strategy": {"type": "static", "static": {
                                               "max_chunk_size_tokens": 200, "chunk_overlap_tokens": 50}}}]}})
    raw = assert_schema(made, "AssistantObject")
    [vs_id] = raw["tool_resources"]["file_search"]["vector_store_ids"]
    store = assert_schema(client.vector_stores.retrieve(vs_id), "VectorStoreObject")
    assert store["metadata"] == {"k": "v"} and store.get("expires_after") is None
    [vs_file] = wait_store_files(client, vs_id, 1)
    assert vs_file.id == files["alpha"].id
    assert wire(vs_file.chunking_strategy) == {"type": "static", "static": {
        "max_chunk_size_tokens": 200, "chunk_overlap_tokens": 50}}

    changed = client.beta.assistants.update(made.id, tool_resources={
        "file_search": {"vector_stores": [{"file_ids": [files["beta"].id]}]}})
    [new_id] = changed.tool_resources.file_search.vector_store_ids
    assert new_id != vs_id and client.beta.assistants.retrieve(made.id).tool_resources.file_search.vector_store_ids \
        == [new_id]

    # Unknown files: 404 naming the field; both ways of naming a store at once: 400.
    r = http.post("/assistants", json={"model": "m", "tool_resources": {
        "file_search": {"vector_stores": [{"file_ids": ["file-nope"]}]}}})
    assert r.status_code == 404, r.text
    assert r.json()["error"]["param"] == "tool_resources.file_search.vector_stores[0].file_ids"
    r = http.post("/threads", json={"tool_resources": {"file_search": {
        "vector_store_ids": [vs_id], "vector_stores": [{"file_ids": [files["beta"].id]}]}}})
    assert r.status_code == 400 and r.json()["error"]["param"] == "tool_resources.file_search", r.text


def test_attachments_join_the_threads_store_and_are_searched(client, http, files):
    searcher = new_assistant(client, tools=[{"type": "file_search"}])
    thread = client.beta.threads.create()
    assert not (wire(thread).get("tool_resources") or {}).get("file_search")
    client.beta.threads.messages.create(thread.id, role="user", content="here is a file", attachments=[
        {"file_id": files["gamma"].id, "tools": [{"type": "file_search"}]}])
    [vs_id] = client.beta.threads.retrieve(thread.id).tool_resources.file_search.vector_store_ids
    assert client.vector_stores.retrieve(vs_id).expires_after.days == 7
    # A second attachment joins the same store; one only for code_interpreter stays on the message.
    message = client.beta.threads.messages.create(thread.id, role="user", content="and another", attachments=[
        {"file_id": files["beta"].id, "tools": [{"type": "file_search"}, {"type": "code_interpreter"}]},
        {"file_id": files["alpha"].id, "tools": [{"type": "code_interpreter"}]}])
    assert assert_schema(message, "MessageObject")["attachments"][1] == {
        "file_id": files["alpha"].id, "tools": [{"type": "code_interpreter"}]}
    assert client.beta.threads.retrieve(thread.id).tool_resources.file_search.vector_store_ids == [vs_id]
    listed = wait_store_files(client, vs_id, 2)
    assert {f.id for f in listed} == {files["gamma"].id, files["beta"].id}

    # additional_messages attach too, before the run reads the thread's resources.
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=searcher.id, poll_interval_ms=50,
        additional_messages=[{"role": "user", "content": search_message("glimmerwick hedgehogs"),
                              "attachments": [{"file_id": files["alpha"].id, "tools": [{"type": "file_search"}]}]}])
    assert check_run(run)["status"] == "completed"
    assert {f.id for f in wait_store_files(client, vs_id, 3)} == {f.id for f in files.values()}
    [call] = fs_calls(steps_of(client, thread.id, run.id)[0])
    assert call["file_search"]["results"][0]["file_id"] == files["gamma"].id

    # Unknown files are 404s naming where they were given.
    r = http.post(f"/threads/{thread.id}/messages", json={"role": "user", "content": "x", "attachments": [
        {"file_id": "file-missing", "tools": [{"type": "file_search"}]}]})
    assert r.status_code == 404 and r.json()["error"]["param"] == "attachments", r.text
    missing = [{"file_id": "file-missing", "tools": [{"type": "file_search"}]}]
    r = http.post("/threads", json={"messages": [{"role": "user", "content": "x"},
                                                 {"role": "user", "content": "y", "attachments": missing}]})
    assert r.status_code == 404 and r.json()["error"]["param"] == "messages[1].attachments", r.text


def test_create_thread_and_run_with_attachments(client, files):
    searcher = new_assistant(client, tools=[{"type": "file_search"}])
    run = client.beta.threads.create_and_run_poll(assistant_id=searcher.id, poll_interval_ms=50, thread={
        "messages": [{"role": "user", "content": search_message("quince pies Vexmoor"),
                      "attachments": [{"file_id": files["beta"].id, "tools": [{"type": "file_search"}]}]}]})
    assert check_run(run)["status"] == "completed"
    [vs_id] = client.beta.threads.retrieve(run.thread_id).tool_resources.file_search.vector_store_ids
    assert [f.id for f in client.vector_stores.files.list(vs_id).data] == [files["beta"].id]
    [call] = fs_calls(steps_of(client, run.thread_id, run.id)[0])
    assert call["file_search"]["results"][0]["file_id"] == files["beta"].id


def test_assistant_and_thread_stores_are_both_searched(client, store, files, assistant):
    thread = client.beta.threads.create(
        tool_resources={"file_search": {"vector_stores": [{"file_ids": [files["gamma"].id]}]}},
        messages=[{"role": "user", "content": search_message("glimmerwick zorblax")}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id,
                                                   poll_interval_ms=50)
    assert check_run(run)["status"] == "completed"
    [call] = fs_calls(steps_of(client, thread.id, run.id)[0])
    found = {r["file_id"] for r in call["file_search"]["results"]}
    assert {files["gamma"].id, files["alpha"].id} <= found, found


def test_deleted_store_fails_the_run(client, files):
    vs = client.vector_stores.create(name="doomed")
    doomed = new_assistant(client, tools=[{"type": "file_search"}],
                           tool_resources={"file_search": {"vector_store_ids": [vs.id]}})
    client.vector_stores.delete(vs.id)
    thread = client.beta.threads.create(messages=[{"role": "user", "content": search_message("anything")}])
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=doomed.id)
    raw = wait_run(client, thread.id, run.id, {"failed", "completed"})
    assert raw["status"] == "failed" and raw["last_error"]["code"] == "server_error", raw
    assert vs.id in raw["last_error"]["message"]
