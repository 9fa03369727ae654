"""Ingestion survives SIGKILL: jobs running (embedding) and queued when the server dies are done by the
next one, each file ``completed`` exactly once (no duplicate chunks), cancelled files stay cancelled."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from assistd.retrieval.tables import retrieval_chunks
from assistd.store.db import Database
from assistd.store.tables import jobs
from tests.run_helpers import fresh_database, kill9, sdk, serve, server_env, wait_until
from tests.spec import assert_schema


class BlackHole:
    """An "upstream" that accepts connections and never answers: an embedding call through it hangs,
    so a job stays ``running`` for as long as the test needs."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def black_hole() -> Iterator[BlackHole]:
    hole = BlackHole()
    yield hole
    hole.close()


def query(url: str, stmt):
    async def go():
        db = Database(url, pool_size=1)
        try:
            async with db.read() as conn:
                return (await conn.execute(stmt)).all()
        finally:
            await db.close()
    return asyncio.run(go())


def test_killed_server_ingests_every_file_once_after_restart(database_url, upstream, black_hole, tmp_path):
    with fresh_database(database_url, tmp_path) as url:
        common = {"ASSISTD_EMBEDDINGS": "upstream:text-embedding-3-small", "ASSISTD_LEASE_SECONDS": "2"}
        first = serve(server_env(url, upstream, tmp_path, **common, ASSISTD_LLM_BASE_URL=black_hole.url)).start()
        client = sdk(first)
        store = client.vector_stores.create(name="durable")
        words = ["kestrel", "osprey", "plover", "puffin", "condor"]
        ids = {w: client.files.create(file=(f"{w}.txt", f"A note about the {w}.".encode()), purpose="assistants").id
               for w in words}
        # Two jobs start and hang on the embedder (2 ingest slots); the rest wait queued behind them.
        for w in words[:2]:
            client.vector_stores.files.create(vector_store_id=store.id, file_id=ids[w])
        wait_until(lambda: len(query(url, select(jobs.c.id).where(jobs.c.status == "running",
                                                                   jobs.c.lease_owner.is_not(None)))) == 2,
                   what="two running jobs")
        batch = client.vector_stores.file_batches.create(store.id, file_ids=[ids["plover"], ids["puffin"]])
        client.vector_stores.file_batches.cancel(batch.id, vector_store_id=store.id)
        client.vector_stores.files.create(vector_store_id=store.id, file_id=ids["condor"])
        assert client.vector_stores.retrieve(store.id).file_counts.in_progress == 3
        kill9(first)

        with serve(server_env(url, upstream, tmp_path, **common)) as second:
            client = sdk(second)
            done = wait_until(lambda: (s := client.vector_stores.retrieve(store.id)).status == "completed" and s,
                              timeout=30, what="the store to finish ingesting")
            raw = assert_schema(done, "VectorStoreObject")
            assert raw["file_counts"] == {"in_progress": 0, "completed": 3, "failed": 0, "cancelled": 2, "total": 5}
            for w in words:
                f = client.vector_stores.files.retrieve(ids[w], vector_store_id=store.id)
                assert f.status == ("cancelled" if w in ("plover", "puffin") else "completed"), (w, f)
            for w in ("kestrel", "osprey", "condor"):
                hits = [h for h in client.vector_stores.search(store.id, query=w, max_num_results=50).data
                        if h.file_id == ids[w]]
                assert len(hits) == 1, (w, hits)  # indexed once: one chunk, one hit
            assert client.vector_stores.file_batches.retrieve(batch.id, vector_store_id=store.id).status == "cancelled"
            # Every job is done; the two interrupted ones were claimed twice. Cancelled files have no chunks.
            rows = query(url, select(jobs.c.status, jobs.c.attempts, jobs.c.payload).order_by(jobs.c.seq))
            assert [r.status for r in rows] == ["done"] * 5
            assert [r.attempts for r in rows] == [2, 2, 1, 1, 1]
            per_file = dict(query(url, select(retrieval_chunks.c.file_id, func.count()).group_by(
                retrieval_chunks.c.file_id)))
            assert per_file == {ids["kestrel"]: 1, ids["osprey"]: 1, ids["condor"]: 1}


def test_api_only_server_queues_and_worker_node_ingests(database_url, upstream, tmp_path):
    """ASSISTD_WORKERS=0 never ingests; the job row waits for any node that does."""
    with fresh_database(database_url, tmp_path) as url:
        env = server_env(url, upstream, tmp_path, ASSISTD_EMBEDDINGS="upstream:text-embedding-3-small")
        with serve({**env, "ASSISTD_WORKERS": "0"}) as api:
            client = sdk(api)
            store = client.vector_stores.create(name="later")
            fid = client.files.create(file=("later.txt", b"queued for later"), purpose="assistants").id
            client.vector_stores.files.create(vector_store_id=store.id, file_id=fid)
            time.sleep(0.5)
            assert client.vector_stores.files.retrieve(fid, vector_store_id=store.id).status == "in_progress"
            assert [r.status for r in query(url, select(jobs.c.status))] == ["queued"]
        with serve(env) as worker_node:
            client = sdk(worker_node)
            done = client.vector_stores.files.poll(fid, vector_store_id=store.id)
            assert done.status == "completed" and done.usage_bytes > 0


def test_finished_jobs_are_purged_after_their_keeping_time(database_url, tmp_path):
    from sqlalchemy import insert

    from assistd.store import jobs as job_queue
    from assistd.store.migrate import migrate

    day = 24 * 3600.0
    ages = {"old-done": ("done", 2 * day), "new-done": ("done", 3600), "old-failed": ("failed", 8 * day),
            "new-failed": ("failed", 2 * day), "old-queued": ("queued", 30 * day), "old-running": ("running", 30 * day)}

    async def go(url: str) -> tuple[int, list[str]]:
        db = Database(url)
        try:
            await migrate(db)
            now = time.time()
            async with db.write() as conn:
                await conn.execute(insert(jobs), [
                    {"id": job_id, "project_id": "p", "kind": "ingest", "payload": "{}", "status": status,
                     "attempts": 1, "created_at": int(now - age)} for job_id, (status, age) in ages.items()])
            purged = await job_queue.purge(db, now)
            async with db.read() as conn:
                return purged, sorted(job_id for (job_id,) in await conn.execute(select(jobs.c.id)))
        finally:
            await db.close()

    with fresh_database(database_url, tmp_path) as url:
        assert asyncio.run(go(url)) == (2, ["new-done", "new-failed", "old-queued", "old-running"])
