"""kill -9 of an `assistd worker` mid-ingestion, beside an API-only serve: another worker takes the jobs over
once their lease lapses and every file is indexed exactly once, while the serve answers throughout. (kill -9 of
serve mid-run and mid-ingestion, and of a worker mid-run, are in test_run_durability.py,
test_ingestion_durability.py and test_streaming_cross_process.py.)"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from assistd.retrieval.tables import retrieval_chunks
from assistd.store.tables import jobs
from tests.faults import Watcher
from tests.run_helpers import WorkerProcess, fresh_database, kill9, sdk, serve, server_env, wait_until
from tests.test_ingestion_durability import black_hole, query  # noqa: F401 - black_hole is a fixture

COMMON = {"ASSISTD_EMBEDDINGS": "upstream:text-embedding-3-small", "ASSISTD_LEASE_SECONDS": "2"}


def test_worker_killed_mid_ingestion(database_url, is_postgres, upstream, black_hole, tmp_path):  # noqa: F811
    if not is_postgres:
        pytest.skip("a separate `assistd worker` needs PostgreSQL")
    with fresh_database(database_url, tmp_path) as url, \
            serve(server_env(url, upstream, tmp_path, ASSISTD_WORKERS="0", **COMMON)) as api:
        client = sdk(api)
        store = client.vector_stores.create(name="worker-killed")
        words = ["heron", "ibis", "stork"]
        ids = {w: client.files.create(file=(f"{w}.txt", f"A note about the {w}.".encode()),
                                      purpose="assistants").id for w in words}
        # The first worker's embedder never answers: its jobs stay running until it is killed.
        doomed = WorkerProcess(server_env(url, upstream, tmp_path, ASSISTD_LLM_BASE_URL=black_hole.url,
                                          **COMMON)).start()
        for w in words:
            client.vector_stores.files.create(vector_store_id=store.id, file_id=ids[w])
        wait_until(lambda: query(url, select(jobs.c.id).where(jobs.c.status == "running")) or None,
                   what="a running job")
        with Watcher([f"{api.url}/healthz", f"{api.url}/v1/vector_stores/{store.id}"]) as watcher:
            kill9(doomed)
            with WorkerProcess(server_env(url, upstream, tmp_path, **COMMON)):
                done = wait_until(lambda: (s := client.vector_stores.retrieve(store.id)).status == "completed"
                                  and s, timeout=60, what="the store to finish ingesting")
        assert watcher.codes[500] == 0 and watcher.codes[0] == 0, (watcher.codes, watcher.bodies)
        assert done.file_counts.completed == 3 and done.file_counts.failed == 0, done.file_counts
        per_file = dict(query(url, select(retrieval_chunks.c.file_id, func.count()).group_by(
            retrieval_chunks.c.file_id)))
        assert per_file == {ids[w]: 1 for w in words}  # each indexed once, none twice
        assert [r.status for r in query(url, select(jobs.c.status))] == ["done"] * 3
