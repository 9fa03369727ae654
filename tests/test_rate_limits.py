"""Per-project rate limits: OpenAI's x-ratelimit-* headers, 429 rate_limit_exceeded, shared across processes.

Each test has its own database and server(s), with limits set by ``assistd projects limits`` first.
Windows are fixed minutes: a test starts early enough in one to finish in it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from tests.run_helpers import fresh_database, serve, server_env, wait_until
from tests.servers import ROOT, LiveProcess

KEY_A = "sk-limits-project-a-0123456789"
KEY_B = "sk-limits-project-b-0123456789"
REDIS_URL = os.environ.get("ASSISTD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def cli(database_url: str, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "assistd.cli", *args, "--database-url", database_url],
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", "OpenAI-Beta": "assistants=v2"}


@pytest.fixture
def limited_db(database_url: str, tmp_path: Path) -> Iterator[str]:
    with fresh_database(database_url, tmp_path) as url:
        yield url


def servers(stack: ExitStack, url: str, upstream: LiveProcess, tmp_path: Path, count: int = 1,
            **extra: str) -> list[LiveProcess]:
    env = server_env(url, upstream, tmp_path, ASSISTD_API_KEYS=f"{KEY_A}:project-a,{KEY_B}:project-b", **extra)
    return [stack.enter_context(serve(env)) for _ in range(count)]


def in_one_window(attempt: Callable[[], None], needs_seconds: float = 25.0) -> None:
    """Runs ``attempt`` inside one minute window: started early enough in a window to finish in it (the
    counts of a window that turns mid-attempt would be split)."""
    left = 60 - time.time() % 60
    if left < needs_seconds:
        time.sleep(left + 0.05)
    start = int(time.time() // 60)
    attempt()
    assert int(time.time() // 60) == start, "the attempt took longer than its window"


def spend_budget(procs: list[LiveProcess], limit: int, assistant_path: str, spent: int = 0) -> httpx.Response:
    """The rest of ``limit`` requests spread over ``procs`` (lists and hot GETs), all allowed; then one more."""
    for i in range(spent, limit):
        path = assistant_path if i % 2 else "/v1/assistants"  # the hot read path is limited too
        r = httpx.get(procs[i % len(procs)].url + path, headers=headers(KEY_A))
        assert r.status_code == 200, r.text
        assert r.headers["x-ratelimit-limit-requests"] == str(limit)
        assert r.headers["x-ratelimit-remaining-requests"] == str(limit - 1 - i)
        assert r.headers["x-ratelimit-reset-requests"].endswith("s")
    return httpx.get(procs[limit % len(procs)].url + "/v1/assistants", headers=headers(KEY_A))


def check_refused(r: httpx.Response, limit: int) -> None:
    assert r.status_code == 429, r.text
    assert r.json()["error"]["code"] == "rate_limit_exceeded" and r.json()["error"]["type"] == "requests"
    assert r.json()["error"]["param"] is None
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert r.headers["x-ratelimit-limit-requests"] == str(limit)
    assert r.headers["x-ratelimit-remaining-requests"] == "0"


def new_assistant_path(proc: LiveProcess, key: str) -> str:
    r = httpx.post(f"{proc.url}/v1/assistants", headers=headers(key), json={"model": "gpt-4o-mini"})
    assert r.status_code == 200, r.text
    return f"/v1/assistants/{r.json()['id']}"


def test_the_61st_request_in_a_minute_is_refused(limited_db: str, upstream: LiveProcess, tmp_path: Path) -> None:
    cli(limited_db, "projects", "limits", "project-a", "--rpm", "60")
    with ExitStack() as stack:
        (proc,) = servers(stack, limited_db, upstream, tmp_path)
        path_b = new_assistant_path(proc, KEY_B)

        def attempt() -> None:
            # project B: no limit → no headers; a request of A's created the assistant it reads
            path_a = new_assistant_path(proc, KEY_A)  # the first request of the minute
            check_refused(spend_budget([proc], 60, path_a, spent=1), 60)
            check_refused(httpx.get(proc.url + path_a, headers=headers(KEY_A)), 60)  # the hot path too
            other = httpx.get(proc.url + path_b, headers=headers(KEY_B))
            assert other.status_code == 200 and "x-ratelimit-limit-requests" not in other.headers

        in_one_window(attempt)


@pytest.mark.parametrize("shared", ["database", "redis"])
def test_two_processes_share_one_budget(limited_db: str, upstream: LiveProcess, tmp_path: Path,
                                        shared: str) -> None:
    if not limited_db.startswith("postgres"):
        pytest.skip("several serve processes need PostgreSQL (SQLite counts in its one process)")
    cli(limited_db, "projects", "limits", "project-a", "--rpm", "20")
    cli(limited_db, "projects", "limits", "project-b", "--rpm", "1000")
    extra = {"ASSISTD_REDIS_URL": REDIS_URL} if shared == "redis" else {}
    with ExitStack() as stack:
        procs = servers(stack, limited_db, upstream, tmp_path, count=2, **extra)
        path_b = new_assistant_path(procs[0], KEY_B)

        def attempt() -> None:
            check_refused(spend_budget(procs, 20, "/v1/assistants?limit=1"), 20)
            other = httpx.get(procs[1].url + path_b, headers=headers(KEY_B))
            assert other.status_code == 200 and other.headers["x-ratelimit-limit-requests"] == "1000"

        in_one_window(attempt)


def test_concurrent_runs_and_tokens_per_minute(limited_db: str, upstream: LiveProcess, tmp_path: Path) -> None:
    cli(limited_db, "projects", "limits", "project-a", "--max-concurrent-runs", "1", "--tpm", "5")
    with ExitStack() as stack:
        (proc,) = servers(stack, limited_db, upstream, tmp_path)
        assistant = new_assistant_path(proc, KEY_A).rsplit("/", 1)[1]
        body = {"assistant_id": assistant, "thread": {"messages": [{"role": "user",
                                                                    "content": "slow [delay: 3] [reply:a b c d e f]"}]}}
        first = httpx.post(f"{proc.url}/v1/threads/runs", headers=headers(KEY_A), json=body)
        assert first.status_code == 200, first.text
        assert first.headers["x-ratelimit-limit-tokens"] == "5"
        second = httpx.post(f"{proc.url}/v1/threads/runs", headers=headers(KEY_A), json=body)
        assert second.status_code == 429 and second.json()["error"]["code"] == "rate_limit_exceeded"
        assert "concurrent runs" in second.json()["error"]["message"]
        run = first.json()
        wait_until(lambda: httpx.get(f"{proc.url}/v1/threads/{run['thread_id']}/runs/{run['id']}",
                                     headers=headers(KEY_A)).json()["status"] == "completed", timeout=30)

        def tokens_spent() -> httpx.Response | None:
            r = httpx.get(f"{proc.url}/v1/assistants", headers=headers(KEY_A))
            return r if r.headers["x-ratelimit-remaining-tokens"] == "0" else None

        if int(time.time()) % 60 > 50:
            pytest.skip("too close to a minute boundary to see this minute's tokens")  # pragma: no cover
        wait_until(tokens_spent, what="the run's tokens counted")
        third = httpx.post(f"{proc.url}/v1/threads/runs", headers=headers(KEY_A), json=body)
        assert third.status_code == 429 and third.json()["error"]["type"] == "tokens"
        assert int(third.headers["retry-after"]) >= 1
