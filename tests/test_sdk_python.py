"""The `openai` Python SDK's Assistants v2 methods no other test calls (docs/compatibility.md has the full table):
the raw ``stream=True`` forms, the deprecated helpers that still ship, and the upload/poll helpers."""

from __future__ import annotations

import warnings

import pytest

from tests.run_helpers import WEATHER, call_ids, new_assistant, new_thread

CALL = '[tool: get_weather {"city": "Paris"}]'


@pytest.fixture(scope="module")
def assistant(client):
    return new_assistant(client, tools=[WEATHER])


def _outputs(run) -> list[dict[str, str]]:
    return [{"tool_call_id": call_id, "output": "sunny"} for call_id in call_ids(run)]


def test_runs_create_and_submit_tool_outputs_with_stream_true(client, assistant):
    thread = new_thread(client, CALL)
    events = list(client.beta.threads.runs.create(thread.id, assistant_id=assistant.id, stream=True))
    assert events[0].event == "thread.run.created"
    acted = events[-1].data
    assert acted.status == "requires_action"
    after = client.beta.threads.runs.submit_tool_outputs(
        acted.id, thread_id=thread.id, tool_outputs=_outputs(acted), stream=True)
    assert [event.event for event in after][-1] == "thread.run.completed"


def test_create_and_run_with_stream_true(client, assistant):
    stream = client.beta.threads.create_and_run(
        assistant_id=assistant.id, thread={"messages": [{"role": "user", "content": "raw"}]}, stream=True)
    names = [event.event for event in stream]
    assert (names[0], names[-1]) == ("thread.created", "thread.run.completed")


def test_runs_create_and_stream_deprecated_helper(client, assistant):
    thread = new_thread(client, "old helper")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        manager = client.beta.threads.runs.create_and_stream(thread_id=thread.id, assistant_id=assistant.id)
    with manager as stream:
        run = stream.get_final_run()
    assert run.status == "completed"
    reply = client.beta.threads.messages.list(thread.id, run_id=run.id).data[0]
    assert reply.content[0].text.value == "echo: old helper"


def test_files_retrieve_content_and_wait_for_processing(client):
    file = client.files.create(file=("legacy.txt", b"legacy bytes"), purpose="user_data")  # downloadable
    assert client.files.wait_for_processing(file.id, poll_interval=0.05).status == "processed"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert client.files.retrieve_content(file.id) == "legacy bytes"


def test_vector_store_files_upload_and_upload_and_poll(client):
    store = client.vector_stores.create(name="sdk-upload")
    uploaded = client.vector_stores.files.upload(vector_store_id=store.id, file=("u.txt", b"uploaded once"))
    assert client.vector_stores.files.poll(uploaded.id, vector_store_id=store.id, poll_interval_ms=50).status == (
        "completed")
    polled = client.vector_stores.files.upload_and_poll(
        vector_store_id=store.id, file=("p.txt", b"uploaded and polled"), poll_interval_ms=50)
    assert polled.status == "completed"
    names = {client.files.retrieve(f.id).filename for f in client.vector_stores.files.list(store.id)}
    assert names == {"u.txt", "p.txt"}


def test_file_batches_poll(client):
    store = client.vector_stores.create(name="sdk-batch-poll")
    file = client.files.create(file=("b.txt", b"batched"), purpose="assistants")
    batch = client.vector_stores.file_batches.create(vector_store_id=store.id, file_ids=[file.id])
    done = client.vector_stores.file_batches.poll(batch.id, vector_store_id=store.id, poll_interval_ms=50)
    assert done.status == "completed" and done.file_counts.completed == 1
