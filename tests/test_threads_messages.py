"""Threads and their messages through the official SDK (and raw HTTP for nulls), validated by the spec."""

from __future__ import annotations

import openai
import pytest

from tests.spec import assert_list, assert_schema

IMAGE_URL = "https://example.com/cat.png"


def text_of(message) -> list[str]:
    return [part.text.value for part in message.content if part.type == "text"]


# --- threads ------------------------------------------------------------------------------------------

def test_create_empty_thread(client):
    t = client.beta.threads.create()
    raw = assert_schema(t, "ThreadObject")
    assert raw["id"].startswith("thread_") and len(raw["id"]) == 7 + 24
    assert raw["object"] == "thread" and raw["metadata"] == {} and raw["tool_resources"] == {}
    assert isinstance(raw["created_at"], int)
    page = client.beta.threads.messages.list(t.id)
    assert_list(page, "MessageObject")
    assert page.data == [] and page.has_more is False


def uploaded(client, name: str = "notes.txt") -> str:
    return client.files.create(file=(name, b"some notes about the weather"), purpose="assistants").id


def test_create_thread_with_messages_of_every_shape(client):
    file_id = uploaded(client)
    image_id = uploaded(client, "a.png")  # ids given must exist (tests/security/test_references.py)
    t = client.beta.threads.create(
        metadata={"user": "u1"},
        messages=[
            {"role": "user", "content": "plain string"},
            {"role": "assistant", "content": [{"type": "text", "text": "part one"},
                                              {"type": "text", "text": "part two"}]},
            {"role": "user", "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": IMAGE_URL, "detail": "high"}},
                {"type": "image_file", "image_file": {"file_id": image_id}},
            ]},
            {"role": "user", "content": "with files", "metadata": {"m": "1"},
             "attachments": [{"file_id": file_id, "tools": [{"type": "code_interpreter"},
                                                            {"type": "file_search"}]}]},
        ],
    )
    assert_schema(t, "ThreadObject")
    assert t.metadata == {"user": "u1"}
    page = client.beta.threads.messages.list(t.id, order="asc")
    raw = assert_list(page, "MessageObject")
    assert len(raw["data"]) == 4 and raw["has_more"] is False
    first, second, third, fourth = raw["data"]
    assert first["content"] == [{"type": "text", "text": {"value": "plain string", "annotations": []}}]
    assert first["role"] == "user" and first["status"] == "completed" and first["thread_id"] == t.id
    assert first["assistant_id"] is None and first["run_id"] is None and first["attachments"] == []
    assert first["completed_at"] is not None and first["incomplete_at"] is None
    assert first["incomplete_details"] is None
    assert second["role"] == "assistant"
    assert [p["text"]["value"] for p in second["content"]] == ["part one", "part two"]
    assert third["content"][1] == {"type": "image_url", "image_url": {"url": IMAGE_URL, "detail": "high"}}
    assert third["content"][2] == {"type": "image_file",
                                   "image_file": {"file_id": image_id, "detail": "auto"}}
    assert fourth["metadata"] == {"m": "1"}
    assert fourth["attachments"] == [{"file_id": file_id, "tools": [{"type": "code_interpreter"},
                                                                     {"type": "file_search"}]}]


def test_thread_tool_resources_create_and_modify(client):
    file_a, file_b, file_c = (uploaded(client, f"{n}.txt") for n in "abc")
    vs_1 = client.vector_stores.create(name="thread").id
    t = client.beta.threads.create(tool_resources={
        "code_interpreter": {"file_ids": [file_a, file_b]},
        "file_search": {"vector_store_ids": [vs_1]},
    })
    raw = assert_schema(t, "ThreadObject")
    assert raw["tool_resources"] == {"code_interpreter": {"file_ids": [file_a, file_b]},
                                     "file_search": {"vector_store_ids": [vs_1]}}
    assert assert_schema(client.beta.threads.retrieve(t.id), "ThreadObject") == raw

    # Modify replaces the given tool's resources and keeps the other tool's.
    changed = client.beta.threads.update(t.id, tool_resources={"code_interpreter": {"file_ids": [file_c]}})
    raw = assert_schema(changed, "ThreadObject")
    assert raw["tool_resources"] == {"code_interpreter": {"file_ids": [file_c]},
                                     "file_search": {"vector_store_ids": [vs_1]}}
    assert assert_schema(client.beta.threads.retrieve(t.id), "ThreadObject") == raw


def test_retrieve_modify_delete_thread(client):
    t = client.beta.threads.create(metadata={"a": "1"}, messages=[{"role": "user", "content": "hi"}])
    got = client.beta.threads.retrieve(t.id)
    assert_schema(got, "ThreadObject")
    assert got == t

    changed = client.beta.threads.update(t.id, metadata={"a": "2", "b": "3"})
    assert_schema(changed, "ThreadObject")
    assert changed.metadata == {"a": "2", "b": "3"} and changed.created_at == t.created_at
    assert client.beta.threads.retrieve(t.id).metadata == {"a": "2", "b": "3"}
    # An update without metadata leaves it alone.
    assert client.beta.threads.update(t.id).metadata == {"a": "2", "b": "3"}

    message = client.beta.threads.messages.list(t.id).data[0]
    deleted = client.beta.threads.delete(t.id)
    assert_schema(deleted, "DeleteThreadResponse")
    assert deleted.id == t.id and deleted.deleted is True and deleted.object == "thread.deleted"
    with pytest.raises(openai.NotFoundError) as err:
        client.beta.threads.retrieve(t.id)
    assert err.value.body["message"] == f"No thread found with id '{t.id}'."
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.messages.retrieve(message.id, thread_id=t.id)
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.messages.list(t.id)
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.delete(t.id)


def test_deleted_thread_messages_are_gone_from_storage(client, http):
    """The cascade removes the rows, so a message id can't resurface through another path."""
    t = client.beta.threads.create(messages=[{"role": "user", "content": "x"}])
    m = client.beta.threads.messages.list(t.id).data[0]
    client.beta.threads.delete(t.id)
    r = http.get(f"/threads/{t.id}/messages/{m.id}")
    assert r.status_code == 404
    assert_schema(r.json(), "ErrorResponse")


def test_ag2_empty_messages(http):
    r = http.post("/threads", json={"messages": []})
    assert r.status_code == 200, r.text
    assert_schema(r.json(), "ThreadObject")


def test_langchain_nulls(http):
    r = http.post("/threads", json={
        "metadata": None, "tool_resources": None,
        "messages": [{"role": "user", "content": "hi", "attachments": None, "metadata": None}],
    })
    assert r.status_code == 200, r.text
    thread = assert_schema(r.json(), "ThreadObject")
    assert thread["metadata"] == {} and thread["tool_resources"] == {}
    page = http.get(f"/threads/{thread['id']}/messages").json()
    assert_list(page, "MessageObject")
    assert page["data"][0]["attachments"] == [] and page["data"][0]["metadata"] == {}

    r = http.post(f"/threads/{thread['id']}/messages",
                  json={"role": "user", "content": "again", "attachments": None, "metadata": None})
    assert r.status_code == 200, r.text
    assert assert_schema(r.json(), "MessageObject")["attachments"] == []

    # null on modify means "not given": what was there stays
    r = http.post(f"/threads/{thread['id']}", json={"metadata": {"k": "v"}})
    assert r.json()["metadata"] == {"k": "v"}
    r = http.post(f"/threads/{thread['id']}", json={"metadata": None, "tool_resources": None})
    assert r.status_code == 200, r.text
    assert assert_schema(r.json(), "ThreadObject")["metadata"] == {"k": "v"}


def test_create_thread_without_body_and_with_empty_object(http):
    for kwargs in ({}, {"json": {}}):
        r = http.post("/threads", **kwargs)
        assert r.status_code == 200, r.text
        assert_schema(r.json(), "ThreadObject")


# --- messages -----------------------------------------------------------------------------------------

def test_message_create_retrieve_modify_delete(client):
    t = client.beta.threads.create()
    m = client.beta.threads.messages.create(t.id, role="user", content="How does AI work?",
                                            metadata={"k": "v"})
    raw = assert_schema(m, "MessageObject")
    assert raw["id"].startswith("msg_") and len(raw["id"]) == 4 + 24
    assert raw["object"] == "thread.message" and raw["thread_id"] == t.id and raw["role"] == "user"
    assert raw["content"] == [{"type": "text", "text": {"value": "How does AI work?", "annotations": []}}]
    assert raw["status"] == "completed" and raw["metadata"] == {"k": "v"}

    got = client.beta.threads.messages.retrieve(m.id, thread_id=t.id)
    assert assert_schema(got, "MessageObject") == raw

    changed = client.beta.threads.messages.update(m.id, thread_id=t.id, metadata={"k": "w", "x": "y"})
    assert assert_schema(changed, "MessageObject")["metadata"] == {"k": "w", "x": "y"}
    assert changed.content == m.content
    assert client.beta.threads.messages.retrieve(m.id, thread_id=t.id).metadata == {"k": "w", "x": "y"}

    deleted = client.beta.threads.messages.delete(m.id, thread_id=t.id)
    assert_schema(deleted, "DeleteMessageResponse")
    assert deleted.id == m.id and deleted.deleted is True and deleted.object == "thread.message.deleted"
    with pytest.raises(openai.NotFoundError) as err:
        client.beta.threads.messages.retrieve(m.id, thread_id=t.id)
    assert err.value.body["message"] == f"No message found with id '{m.id}'."
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.messages.delete(m.id, thread_id=t.id)
    assert client.beta.threads.messages.list(t.id).data == []


def test_message_content_parts(client):
    t = client.beta.threads.create()
    image_id = uploaded(client, "a.png")
    m = client.beta.threads.messages.create(t.id, role="assistant", content=[
        {"type": "text", "text": "see"},
        {"type": "image_url", "image_url": {"url": IMAGE_URL}},
        {"type": "image_file", "image_file": {"file_id": image_id, "detail": "low"}},
    ])
    raw = assert_schema(m, "MessageObject")
    assert raw["role"] == "assistant"
    assert [p["type"] for p in raw["content"]] == ["text", "image_url", "image_file"]
    assert raw["content"][0]["text"] == {"value": "see", "annotations": []}
    assert raw["content"][1]["image_url"] == {"url": IMAGE_URL, "detail": "auto"}
    assert raw["content"][2]["image_file"] == {"file_id": image_id, "detail": "low"}


def test_message_attachments(client):
    t = client.beta.threads.create()
    file_id = uploaded(client)
    m = client.beta.threads.messages.create(
        t.id, role="user", content="file please",
        attachments=[{"file_id": file_id, "tools": [{"type": "file_search"}]}],
    )
    assert assert_schema(m, "MessageObject")["attachments"] == [
        {"file_id": file_id, "tools": [{"type": "file_search"}]}]
    # the file went into a vector store made for the thread
    stores = client.beta.threads.retrieve(t.id).tool_resources.file_search.vector_store_ids
    assert len(stores) == 1
    assert [f.id for f in client.vector_stores.files.list(stores[0])] == [file_id]
    # an unknown file is a 404 naming the field
    with pytest.raises(openai.NotFoundError) as err:
        client.beta.threads.messages.create(t.id, role="user", content="x",
                                            attachments=[{"file_id": "file-nope", "tools": [{"type": "file_search"}]}])
    assert err.value.body["param"] == "attachments"


def test_list_messages_order_limit_after(client):
    t = client.beta.threads.create()
    made = [client.beta.threads.messages.create(t.id, role="user", content=f"m{i}") for i in range(5)]
    ids = [m.id for m in made]

    desc = client.beta.threads.messages.list(t.id)
    assert_list(desc, "MessageObject")
    assert [m.id for m in desc.data] == ids[::-1]

    asc = client.beta.threads.messages.list(t.id, order="asc", limit=2)
    assert_list(asc, "MessageObject")
    assert [m.id for m in asc.data] == ids[:2] and asc.has_more is True
    nxt = client.beta.threads.messages.list(t.id, order="asc", limit=2, after=asc.last_id)
    assert [m.id for m in nxt.data] == ids[2:4] and nxt.has_more is True
    last = client.beta.threads.messages.list(t.id, order="asc", limit=2, after=nxt.last_id)
    assert [m.id for m in last.data] == ids[4:] and last.has_more is False
    assert text_of(last.data[0]) == ["m4"]


def test_list_messages_run_id_filter(client):
    t = client.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
    page = client.beta.threads.messages.list(t.id, run_id="run_doesnotexist000000000000")
    assert_list(page, "MessageObject")
    assert page.data == [] and page.first_id is None and page.has_more is False
    assert len(client.beta.threads.messages.list(t.id).data) == 1


def test_message_of_another_thread_is_not_found(client):
    t1 = client.beta.threads.create(messages=[{"role": "user", "content": "in t1"}])
    t2 = client.beta.threads.create()
    m = client.beta.threads.messages.list(t1.id).data[0]
    with pytest.raises(openai.NotFoundError) as err:
        client.beta.threads.messages.retrieve(m.id, thread_id=t2.id)
    assert err.value.body["message"] == f"No message found with id '{m.id}'."
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.messages.update(m.id, thread_id=t2.id, metadata={"x": "y"})
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.messages.delete(m.id, thread_id=t2.id)
    # Untouched in its own thread.
    assert client.beta.threads.messages.retrieve(m.id, thread_id=t1.id).metadata == {}


def test_message_in_unknown_thread_is_not_found(client, http):
    missing = "thread_doesnotexist0000000000"
    with pytest.raises(openai.NotFoundError) as err:
        client.beta.threads.messages.create(missing, role="user", content="x")
    assert err.value.status_code == 404
    assert err.value.body["message"] == f"No thread found with id '{missing}'."
    for method, path in [("GET", f"/threads/{missing}/messages"),
                         ("GET", f"/threads/{missing}/messages/msg_x"),
                         ("POST", f"/threads/{missing}/messages/msg_x"),
                         ("DELETE", f"/threads/{missing}/messages/msg_x")]:
        r = http.request(method, path, json={} if method == "POST" else None)
        assert r.status_code == 404, (method, path, r.text)
        body = assert_schema(r.json(), "ErrorResponse")
        assert body["error"]["type"] == "invalid_request_error"


def test_message_modify_null_metadata_keeps_it(client, http):
    t = client.beta.threads.create()
    m = client.beta.threads.messages.create(t.id, role="user", content="x", metadata={"a": "b"})
    r = http.post(f"/threads/{t.id}/messages/{m.id}", json={"metadata": None})
    assert r.status_code == 200, r.text
    assert assert_schema(r.json(), "MessageObject")["metadata"] == {"a": "b"}
