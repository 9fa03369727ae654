"""A queued run starts at once: in the API's own pool without a claim round (leased in the transaction that
queues it), and in another process's pool (`assistd worker`) on the wake event rather than at its next
0.25 s poll."""

from __future__ import annotations

import statistics
import time

import httpx
import pytest

from tests.run_helpers import WorkerProcess, fresh_database, server_env
from tests.servers import LiveProcess, free_port

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def seconds_to_in_progress(api: LiveProcess, n: int = 10) -> list[float]:
    """For ``n`` streamed create-thread-and-runs: seconds from sending to ``thread.run.in_progress``."""
    waits = []
    with httpx.Client(base_url=f"{api.url}/v1", headers={"Authorization": "Bearer sk-dev"}, timeout=30) as http:
        assistant = http.post("/assistants", json={"model": "gpt-4o-mini"}).json()
        body = {"assistant_id": assistant["id"], "stream": True,
                "thread": {"messages": [{"role": "user", "content": "[reply: quick]"}]}}
        for _ in range(n):
            started = time.monotonic()
            seen = None
            with http.stream("POST", "/threads/runs", json=body) as response:
                assert response.status_code == 200, response.read()
                for line in response.iter_lines():
                    if line == "event: thread.run.in_progress" and seen is None:
                        seen = time.monotonic() - started
            assert seen is not None
            waits.append(seen)
    return waits


def test_run_starts_at_once_in_the_api_process(database_url, upstream, tmp_path):
    with fresh_database(database_url, tmp_path) as url:
        port = free_port()
        with LiveProcess(["serve", "--port", str(port)], port, env=server_env(url, upstream, tmp_path)) as api:
            waits = seconds_to_in_progress(api)
    assert statistics.median(waits) < 0.1, waits  # the pool's poll alone would average 0.125 s and more


def test_worker_process_is_woken(database_url, is_postgres, upstream, tmp_path):
    if not is_postgres:
        pytest.skip("a separate `assistd worker` needs PostgreSQL")
    with fresh_database(database_url, tmp_path) as url:
        port = free_port()
        api_env = server_env(url, upstream, tmp_path, ASSISTD_WORKERS="0")
        with LiveProcess(["serve", "--port", str(port)], port, env=api_env) as api, \
                WorkerProcess(server_env(url, upstream, tmp_path, ASSISTD_WORKERS="4")):
            waits = seconds_to_in_progress(api)
    assert statistics.median(waits) < 0.1, waits
