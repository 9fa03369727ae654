"""Vector stores through the official SDK, validated against the spec: create/list/retrieve/modify/delete,
derived fields (status, file_counts, usage_bytes, last_active_at, expires_at), expiry, projects."""

from __future__ import annotations

import asyncio
import time

import openai
import orjson
import pytest
from sqlalchemy import select, update

from assistd.store.db import Database
from assistd.store.tables import vector_stores
from tests.spec import assert_list, assert_schema

DAY = 86_400


def upload(client, name: str, data: bytes) -> str:
    return client.files.create(file=(name, data), purpose="assistants").id


def wait_store(client, store_id: str, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        store = assert_schema(client.vector_stores.retrieve(store_id), "VectorStoreObject")
        if store["status"] != "in_progress":
            return store
        assert time.monotonic() < deadline, store
        time.sleep(0.05)


def error_of(exc: pytest.ExceptionInfo) -> dict:
    body = exc.value.body
    return body if isinstance(body, dict) else orjson.loads(exc.value.response.content)["error"]


def db_run(url: str, fn):
    """Run ``fn(conn)`` in a write transaction on the server's database (to move time for expiry)."""
    async def go():
        db = Database(url, pool_size=1)
        try:
            async with db.write() as conn:
                return await fn(conn)
        finally:
            await db.close()
    return asyncio.run(go())


def age_store(url: str, store_id: str, seconds: int) -> None:
    """Pretend the store was last active ``seconds`` ago (its expires_at moves with it)."""
    async def fn(conn):
        raw = (await conn.execute(select(vector_stores.c.data).where(vector_stores.c.id == store_id))).scalar_one()
        obj = orjson.loads(raw)
        obj["last_active_at"] -= seconds
        if obj.get("expires_at") is not None:
            obj["expires_at"] -= seconds
        await conn.execute(update(vector_stores).where(vector_stores.c.id == store_id)
                           .values(data=orjson.dumps(obj).decode(), expires_at=obj.get("expires_at")))
    db_run(url, fn)


def test_create_retrieve_modify_delete(client):
    made = client.vector_stores.create(name="docs", metadata={"team": "search"}, description="about docs",
                                       expires_after={"anchor": "last_active_at", "days": 3})
    raw = assert_schema(made, "VectorStoreObject")
    assert raw["id"].startswith("vs_") and raw["object"] == "vector_store" and raw["name"] == "docs"
    assert raw["status"] == "completed" and raw["usage_bytes"] == 0 and raw["metadata"] == {"team": "search"}
    assert raw["file_counts"] == {"in_progress": 0, "completed": 0, "failed": 0, "cancelled": 0, "total": 0}
    assert raw["last_active_at"] == raw["created_at"]
    assert raw["expires_after"] == {"anchor": "last_active_at", "days": 3}
    assert raw["expires_at"] == raw["last_active_at"] + 3 * DAY
    assert client.vector_stores.retrieve(made.id) == made

    changed = client.vector_stores.update(made.id, name="renamed", metadata={"v": "2"},
                                          expires_after={"anchor": "last_active_at", "days": 10})
    raw = assert_schema(changed, "VectorStoreObject")
    assert raw["name"] == "renamed" and raw["metadata"] == {"v": "2"}
    assert raw["expires_at"] == raw["last_active_at"] + 10 * DAY
    # explicit null removes the policy; fields not sent stay
    cleared = assert_schema(client.vector_stores.update(made.id, expires_after=None), "VectorStoreObject")
    assert "expires_after" not in cleared and cleared["expires_at"] is None and cleared["name"] == "renamed"

    gone = client.vector_stores.delete(made.id)
    assert assert_schema(gone, "DeleteVectorStoreResponse") == {"id": made.id, "object": "vector_store.deleted",
                                                                "deleted": True}
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.retrieve(made.id)
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.delete(made.id)


def test_defaults(client):
    raw = assert_schema(client.vector_stores.create(), "VectorStoreObject")
    assert raw["name"] == "" and raw["metadata"] == {} and raw["expires_at"] is None
    assert "expires_after" not in raw


def test_list_pagination(client_b):
    ids = [client_b.vector_stores.create(name=f"p{i}").id for i in range(3)]
    page = assert_list(client_b.vector_stores.list(limit=2, order="asc", after=ids[0]), "VectorStoreObject")
    assert [s["id"] for s in page["data"]] == ids[1:3]
    page = assert_list(client_b.vector_stores.list(limit=2), "VectorStoreObject")
    assert [s["id"] for s in page["data"]] == ids[::-1][:2] and page["has_more"] is True
    page = assert_list(client_b.vector_stores.list(limit=1, before=ids[2], order="asc"), "VectorStoreObject")
    assert [s["id"] for s in page["data"]] == [ids[1]]


def test_files_on_create_derive_counts_status_and_usage(client):
    a = upload(client, "a.txt", b"Alpha centauri is the nearest star system.")
    b = upload(client, "b.md", b"# Beta\n\nBetelgeuse is a red supergiant.")
    made = client.vector_stores.create(file_ids=[a, b], chunking_strategy={
        "type": "static", "static": {"max_chunk_size_tokens": 200, "chunk_overlap_tokens": 50}})
    raw = assert_schema(made, "VectorStoreObject")
    assert raw["file_counts"] == {"in_progress": 2, "completed": 0, "failed": 0, "cancelled": 0, "total": 2}
    assert raw["status"] == "in_progress" and raw["usage_bytes"] == 0
    done = wait_store(client, made.id)
    assert done["status"] == "completed"
    assert done["file_counts"] == {"in_progress": 0, "completed": 2, "failed": 0, "cancelled": 0, "total": 2}
    files = assert_list(client.vector_stores.files.list(made.id), "VectorStoreFileObject")["data"]
    assert {f["id"] for f in files} == {a, b}
    for f in files:
        assert f["chunking_strategy"] == {"type": "static", "static": {"max_chunk_size_tokens": 200,
                                                                       "chunk_overlap_tokens": 50}}
        assert f["usage_bytes"] > 0
    assert done["usage_bytes"] == sum(f["usage_bytes"] for f in files)

    auto = client.vector_stores.create(file_ids=[a], chunking_strategy={"type": "auto"})
    [f] = assert_list(client.vector_stores.files.list(auto.id), "VectorStoreFileObject")["data"]
    assert f["chunking_strategy"] == {"type": "static", "static": {"max_chunk_size_tokens": 800,
                                                                   "chunk_overlap_tokens": 400}}


@pytest.mark.parametrize("body,param", [
    ({"expires_after": {"anchor": "last_active_at", "days": 0}}, "expires_after.days"),
    ({"expires_after": {"anchor": "last_active_at", "days": 366}}, "expires_after.days"),
    ({"expires_after": {"anchor": "created_at", "days": 1}}, "expires_after.anchor"),
    ({"chunking_strategy": {"type": "static", "static": {"max_chunk_size_tokens": 99, "chunk_overlap_tokens": 0}}},
     "chunking_strategy.static.max_chunk_size_tokens"),
    ({"chunking_strategy": {"type": "static", "static": {"max_chunk_size_tokens": 200, "chunk_overlap_tokens": 101}}},
     "chunking_strategy.static.chunk_overlap_tokens"),
    ({"chunking_strategy": {"type": "other"}}, "chunking_strategy.type"),
    ({"file_ids": ["file-nope"]}, "file_ids"),
    ({"nope": 1}, "nope"),
    ({"metadata": {"k" * 65: "v"}}, "metadata"),
])
def test_create_errors(http, body, param):
    r = http.post("/vector_stores", json=body)
    assert r.status_code == (404 if param == "file_ids" else 400), r.text
    assert r.json()["error"]["param"] == param, r.json()


def test_another_projects_store_is_not_found(client, client_b, http):
    mine = client.vector_stores.create(name="mine")
    for call in (lambda: client_b.vector_stores.retrieve(mine.id),
                 lambda: client_b.vector_stores.update(mine.id, name="x"),
                 lambda: client_b.vector_stores.delete(mine.id),
                 lambda: client_b.vector_stores.files.list(mine.id),
                 lambda: client_b.vector_stores.search(mine.id, query="x")):
        with pytest.raises(openai.NotFoundError):
            call()
    assert mine.id not in {s.id for s in client_b.vector_stores.list(limit=100)}
    # and another project's file cannot be attached
    theirs = upload(client_b, "t.txt", b"theirs")
    r = http.post(f"/vector_stores/{mine.id}/files", json={"file_id": theirs})
    assert r.status_code == 404 and r.json()["error"]["param"] == "file_id"
    assert client.vector_stores.retrieve(mine.id).name == "mine"


def test_search_touches_last_active_at(client, database_url):
    made = client.vector_stores.create(expires_after={"anchor": "last_active_at", "days": 2})
    age_store(database_url, made.id, 3600)
    before = assert_schema(client.vector_stores.retrieve(made.id), "VectorStoreObject")
    assert before["last_active_at"] <= made.created_at - 3600 + 1
    client.vector_stores.search(made.id, query="anything")
    after = assert_schema(client.vector_stores.retrieve(made.id), "VectorStoreObject")
    assert after["last_active_at"] >= made.created_at
    assert after["expires_at"] == after["last_active_at"] + 2 * DAY


def test_expired_store(client, database_url, http):
    f = upload(client, "e.txt", b"expiring content")
    made = client.vector_stores.create(file_ids=[f], expires_after={"anchor": "last_active_at", "days": 1})
    wait_store(client, made.id)
    age_store(database_url, made.id, DAY + 5)
    raw = assert_schema(client.vector_stores.retrieve(made.id), "VectorStoreObject")
    assert raw["status"] == "expired" and raw["expires_at"] < time.time()
    listed = {s["id"]: s for s in assert_list(client.vector_stores.list(limit=100), "VectorStoreObject")["data"]}
    assert listed[made.id]["status"] == "expired"
    with pytest.raises(openai.BadRequestError) as info:
        client.vector_stores.search(made.id, query="expiring")
    assert "expired" in error_of(info)["message"]
    r = http.post(f"/vector_stores/{made.id}/files", json={"file_id": f})
    assert r.status_code == 400 and "expired" in r.json()["error"]["message"]
    # still readable and deletable
    assert client.vector_stores.files.list(made.id).data[0].status == "completed"
    assert client.vector_stores.delete(made.id).deleted is True


def test_public_service_api(server, database_url):
    """What the assistant/thread/message helpers call: create_store, attach_files, require_stores, touch."""
    from assistd import ids
    from assistd.errors import NotFound
    from assistd.services import files as file_service
    from assistd.services import vector_stores as service

    project = "project-service-api"

    async def fn(conn):
        fids = [ids.new_id("file") for _ in range(2)]
        for fid in fids:
            await file_service.record_file(conn, project, fid, filename=f"{fid}.txt", purpose="assistants", size=1)
        with pytest.raises(NotFound) as info:
            await service.create_store(conn, project, file_ids=["file-nope"],
                                       param_prefix="tool_resources.file_search.vector_stores[0].")
        assert info.value.param == "tool_resources.file_search.vector_stores[0].file_ids"
        store = await service.create_store(conn, project, file_ids=fids[:1], metadata={"k": "v"},
                                           expires_after={"anchor": "last_active_at", "days": 7})
        assert_schema(store, "VectorStoreObject")
        assert store["file_counts"]["in_progress"] == 1 and store["expires_at"] == store["created_at"] + 7 * DAY
        first = await service.attach_files(conn, project, store["id"], fids, replace=False)
        assert [f["id"] for f in first] == fids and all(f["status"] == "in_progress" for f in first)
        again = await service.attach_files(conn, project, store["id"], fids, replace=False)
        assert again == first  # kept as they were: no second ingestion
        [found] = await service.require_stores(conn, project, [store["id"]], "vector_store_ids")
        assert found["file_counts"]["total"] == 2
        with pytest.raises(NotFound) as info:
            await service.require_stores(conn, "another-project", [store["id"]], "vector_store_ids")
        assert info.value.param == "vector_store_ids"
        await service.touch(conn, [store["id"]])
        return store["id"]

    store_id = db_run(database_url, fn)
    rows = db_run(database_url, lambda conn: _jobs_of(conn, store_id))
    assert len(rows) == 2  # one ingestion job per file, none for the files kept


async def _jobs_of(conn, store_id: str) -> list:
    from assistd.store.tables import jobs

    rows = (await conn.execute(select(jobs.c.payload))).all()
    return [r for r in rows if orjson.loads(r.payload)["vector_store_id"] == store_id]
