"""Real objects for every path parameter of the document, made with the official SDK before schemathesis runs.

Reading operations share one set (a thread with a completed run that has steps, a store with an indexed
file and a batch); each deleting operation gets its own victim, so a delete that succeeds early does not turn
every later read of the shared set into a 404."""

from __future__ import annotations

from typing import Any

from openai import OpenAI

from tests.run_helpers import MODEL, WEATHER, wait_run, wait_until


def _upload(client: OpenAI, name: str, text: str) -> str:
    return client.files.create(file=(name, text.encode()), purpose="assistants").id


def _indexed_store(client: OpenAI, name: str, file_id: str) -> str:
    store = client.vector_stores.create(name=name, file_ids=[file_id])
    wait_until(lambda: client.vector_stores.retrieve(store.id).file_counts.in_progress == 0,
               timeout=60, what=f"store {name} indexed")
    return store.id


def _acting_run(client: OpenAI, assistant_id: str) -> dict[str, str]:
    """A run waiting for tool outputs, on a thread of its own (an active run blocks new runs on its thread)."""
    thread = client.beta.threads.create(
        messages=[{"role": "user", "content": '[tool: get_weather {"city": "Paris"}]'}])
    run = client.beta.threads.runs.create(thread.id, assistant_id=assistant_id)
    wait_run(client, thread.id, run.id, "requires_action")
    return {"thread_id": thread.id, "run_id": run.id}


def _victim_message(client: OpenAI) -> dict[str, str]:
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "to be deleted"}])
    return {"thread_id": thread.id, "message_id": client.beta.threads.messages.list(thread.id).data[0].id}


def make_objects(client: OpenAI) -> dict[str, Any]:
    """``{"shared": {param: id}, "per_operation": {operationId: {param: id}}}``."""
    assistant = client.beta.assistants.create(model=MODEL, name="conformance", tools=[WEATHER])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "hello conformance"}])
    message = client.beta.threads.messages.list(thread.id).data[0]
    run = client.beta.threads.runs.create(thread.id, assistant_id=assistant.id)
    wait_run(client, thread.id, run.id, "completed")
    step = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id).data[0]


    file_id = _upload(client, "conformance.txt", "Ferrets sleep fourteen hours a day.")
    store_id = _indexed_store(client, "conformance", file_id)
    batch_file = _upload(client, "batch.txt", "Otters hold hands while sleeping.")
    batch = client.vector_stores.file_batches.create_and_poll(vector_store_id=store_id, file_ids=[batch_file])

    victim_file = _upload(client, "victim.txt", "to be deleted")
    # `assistants` files cannot be downloaded (as on the hosted API): the download gets a `user_data` one.
    downloadable = client.files.create(file=("download.txt", b"downloadable bytes"), purpose="user_data").id
    victim_store_file = _upload(client, "victim-store-file.txt", "to be detached")
    victim_store = _indexed_store(client, "victim-store", victim_store_file)
    return {
        "shared": {
            "assistant_id": assistant.id, "thread_id": thread.id, "message_id": message.id,
            "run_id": run.id, "step_id": step.id, "file_id": file_id,
            "vector_store_id": store_id, "batch_id": batch.id,
        },
        "per_operation": {
            "submitToolOuputsToRun": _acting_run(client, assistant.id),
            "cancelRun": _acting_run(client, assistant.id),
            "deleteAssistant": {"assistant_id": client.beta.assistants.create(model=MODEL).id},
            "deleteThread": {"thread_id": client.beta.threads.create().id},
            "deleteMessage": _victim_message(client),
            "deleteFile": {"file_id": victim_file},
            "downloadFile": {"file_id": downloadable},
            "deleteVectorStore": {"vector_store_id": client.vector_stores.create(name="victim").id},
            "deleteVectorStoreFile": {"vector_store_id": victim_store, "file_id": victim_store_file},
        },
    }
