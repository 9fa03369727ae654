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
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from tests.run_helpers import fresh_database, serve, server_env, wait_run, wait_until
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


def in_one_window(attempt: Callable[[], None], needs_seconds: float = 10.0) -> None:
    """Runs ``attempt`` inside one minute window (the counts of a window that turns mid-attempt would be
    split): at once when this window has ``needs_seconds`` left, else from the start of the next. Should the
    window turn during it all the same (a slow machine), it runs once more from the start of a fresh window."""
    for last_try in (False, True):
        left = 60 - time.time() % 60
        if left < needs_seconds or last_try:
            time.sleep(left + 0.05)
        start = int(time.time() // 60)
        try:
            attempt()
        except (Exception, pytest.fail.Exception):
            if last_try or int(time.time() // 60) == start:
                raise
            continue
        if int(time.time() // 60) == start:
            return
    raise AssertionError("the attempt took longer than a whole window")


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


def project_a(proc: LiveProcess) -> OpenAI:
    """The SDK as project A, retrying nothing: a 429 is what these tests look at."""
    return OpenAI(base_url=f"{proc.url}/v1", api_key=KEY_A, max_retries=0, timeout=30)


def waiting_run(client: OpenAI, assistant_id: str) -> Any:
    """A run that stops in requires_action (a function call) and so stays active until told otherwise."""
    return client.beta.threads.create_and_run(assistant_id=assistant_id, thread={
        "messages": [{"role": "user", "content": "[tool: wait]"}]})


def check_too_many(exc: openai.RateLimitError, limit: int) -> None:
    assert exc.status_code == 429 and exc.code == "rate_limit_exceeded" and exc.type == "requests"
    assert f"Too many concurrent runs: Limit {limit}" in exc.message
    assert int(exc.response.headers["retry-after"]) >= 1


def test_concurrent_runs_limit_is_exact(limited_db: str, upstream: LiveProcess, tmp_path: Path) -> None:
    """N simultaneous creates against a limit of K, over two processes on PostgreSQL: exactly K pass; every
    way a run ends (cancelled, failed, its thread deleted) gives its slot back."""
    limit, attempts = 2, 8
    cli(limited_db, "projects", "limits", "project-a", "--max-concurrent-runs", str(limit))
    with ExitStack() as stack:
        procs = servers(stack, limited_db, upstream, tmp_path, count=2 if limited_db.startswith("postgres") else 1)
        clients = [project_a(p) for p in procs]
        client = clients[0]
        assistant = client.beta.assistants.create(model="gpt-4o-mini", tools=[{"type": "function", "function": {
            "name": "wait", "parameters": {"type": "object", "properties": {}}}}])

        def attempt(i: int) -> Any:
            try:
                return waiting_run(clients[i % len(clients)], assistant.id)
            except openai.RateLimitError as exc:
                return exc

        with ThreadPoolExecutor(attempts) as pool:
            outcomes = list(pool.map(attempt, range(attempts)))
        accepted = [o for o in outcomes if not isinstance(o, Exception)]
        refused = [o for o in outcomes if isinstance(o, openai.RateLimitError)]
        assert len(accepted) == limit and len(refused) == attempts - limit, outcomes
        for exc in refused:
            check_too_many(exc, limit)
        for run in accepted:
            wait_run(client, run.thread_id, run.id, "requires_action")
        with pytest.raises(openai.RateLimitError) as full:
            waiting_run(clients[-1], assistant.id)
        check_too_many(full.value, limit)

        # cancelled: the slot is free again
        client.beta.threads.runs.cancel(accepted[0].id, thread_id=accepted[0].thread_id)
        wait_run(client, accepted[0].thread_id, accepted[0].id, "cancelled")
        # failed (the model answers 400): it took the free slot, and gives it back
        failing = client.beta.threads.create_and_run(assistant_id=assistant.id, thread={
            "messages": [{"role": "user", "content": "[error: 400]"}]})
        wait_run(client, failing.thread_id, failing.id, "failed")
        replacement = waiting_run(clients[-1], assistant.id)
        with pytest.raises(openai.RateLimitError):
            waiting_run(client, assistant.id)
        # a thread deleted with its active run
        client.beta.threads.delete(accepted[1].thread_id)
        waiting_run(client, assistant.id)
        with pytest.raises(openai.RateLimitError):
            waiting_run(clients[-1], assistant.id)
        # completed: tool outputs submitted, the run answers and ends
        call = wait_run(client, replacement.thread_id, replacement.id, "requires_action")
        client.beta.threads.runs.submit_tool_outputs(replacement.id, thread_id=replacement.thread_id, tool_outputs=[
            {"tool_call_id": call["required_action"]["submit_tool_outputs"]["tool_calls"][0]["id"], "output": "ok"}])
        wait_run(client, replacement.thread_id, replacement.id, "completed")
        waiting_run(clients[-1], assistant.id)
        # another project is not limited by A's runs
        other = OpenAI(base_url=f"{procs[0].url}/v1", api_key=KEY_B, max_retries=0)
        other_assistant = other.beta.assistants.create(model="gpt-4o-mini")
        other.beta.threads.create_and_run(assistant_id=other_assistant.id)


def test_an_expired_run_gives_its_slot_back(limited_db: str, upstream: LiveProcess, tmp_path: Path) -> None:
    cli(limited_db, "projects", "limits", "project-a", "--max-concurrent-runs", "1")
    with ExitStack() as stack:
        (proc,) = servers(stack, limited_db, upstream, tmp_path, ASSISTD_RUN_TTL_SECONDS="2")
        client = project_a(proc)
        assistant = client.beta.assistants.create(model="gpt-4o-mini")
        run = waiting_run(client, assistant.id)
        wait_run(client, run.thread_id, run.id, "expired", ttl=2)
        run = waiting_run(client, assistant.id)
        assert run.status == "queued"


def test_the_console_relay_counts_against_the_sessions_project(limited_db: str, upstream: LiveProcess,
                                                               tmp_path: Path) -> None:
    """/console/api/v1 (the browser's way to the API) spends the same budget as /v1, with the same headers."""
    from tests.console.conftest import sign_in

    cli(limited_db, "projects", "limits", "project-a", "--rpm", "6")
    with ExitStack() as stack:
        (proc,) = servers(stack, limited_db, upstream, tmp_path)
        session = sign_in(proc.url, KEY_A)
        stack.callback(session.close)
        console = OpenAI(base_url=f"{proc.url}/console/api/v1", api_key="not-used-by-the-relay", max_retries=0,
                         http_client=session, default_headers={"X-CSRF-Token": session.csrf})  # type: ignore[attr-defined]
        direct = project_a(proc)

        def attempt() -> None:
            for i in range(6):
                raw = (console if i % 2 == 0 else direct).beta.assistants.with_raw_response.list()
                assert raw.headers["x-ratelimit-limit-requests"] == "6"
                assert raw.headers["x-ratelimit-remaining-requests"] == str(5 - i)
            with pytest.raises(openai.RateLimitError) as refused:
                console.beta.assistants.list()
            assert refused.value.code == "rate_limit_exceeded" and refused.value.type == "requests"
            assert refused.value.response.headers["x-ratelimit-remaining-requests"] == "0"
            assert int(refused.value.response.headers["retry-after"]) >= 1
            with pytest.raises(openai.RateLimitError):
                direct.beta.assistants.list()

        in_one_window(attempt)
