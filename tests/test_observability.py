"""Logs, request ids, readiness and Prometheus metrics (observability/), against the live server.

The session server writes its log to a file, so its format is JSON (``auto``: not a terminal).
"""

from __future__ import annotations

import re
import signal
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from openai import OpenAI

from tests.conftest import KEY_A
from tests.run_helpers import (
    fresh_database,
    marker,
    new_assistant,
    new_thread,
    serve,
    server_env,
    wait_run,
    wait_until,
)
from tests.servers import LiveProcess, pg_admin

# --- helpers ------------------------------------------------------------------------------------------

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$')


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m:
            labels = frozenset(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
            out[(m.group(1), labels)] = float(m.group(3))
    return out


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    """The sum of ``name`` over the series carrying ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def log_lines(server: LiveProcess, start: int) -> list[dict[str, Any]]:
    data = server.log_path.read_bytes()[start:]
    lines = []
    for raw in data.splitlines():
        if raw.strip():
            lines.append(orjson.loads(raw))  # every line is one JSON object
    return lines


def run_to_end(client: OpenAI, text: str) -> dict[str, Any]:
    assistant = new_assistant(client)
    thread = new_thread(client, text)
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    return wait_run(client, thread.id, run.id, {"completed", "failed", "incomplete"})


# --- request ids and logs -----------------------------------------------------------------------------

def test_every_response_carries_a_request_id(server: LiveProcess, http: httpx.Client, client: OpenAI) -> None:
    assistant = new_assistant(client)
    hot = http.get(f"/assistants/{assistant.id}", headers={"x-request-id": "client-id-1.2:3"})
    assert hot.status_code == 200 and hot.headers["x-request-id"] == "client-id-1.2:3"
    missing = http.get("/assistants/asst_missing")
    assert missing.status_code == 404 and re.fullmatch(r"req_[0-9a-f]{32}", missing.headers["x-request-id"])
    unauthorised = httpx.get(f"{server.url}/v1/assistants", headers={"x-request-id": "bad id with spaces"})
    assert unauthorised.status_code == 401
    assert unauthorised.headers["x-request-id"].startswith("req_")  # an unsafe incoming id is not echoed
    too_long = http.get("/assistants", headers={"x-request-id": "a" * 200})
    assert too_long.headers["x-request-id"].startswith("req_")
    assert httpx.get(f"{server.url}/healthz").headers["x-request-id"].startswith("req_")


def test_json_logs_carry_ids_and_never_keys_or_content(server: LiveProcess, http: httpx.Client,
                                                       client: OpenAI) -> None:
    start = server.log_path.stat().st_size
    secret_text = "confidential-" + marker()
    run = run_to_end(client, f"{secret_text} [reply:the answer {secret_text}]")
    request_id = "trace-me-" + marker()
    http.get(f"/threads/{run['thread_id']}/runs/{run['id']}", headers={"x-request-id": request_id})
    http.get(f"/threads/{run['thread_id']}/runs/{run['id']}/steps")  # a FastAPI route, path ids known
    lines = wait_until(lambda: (ls := log_lines(server, start)) and any(
        line.get("route") == "/v1/threads/{thread_id}/runs/{run_id}/steps" for line in ls) and ls,
        what="the access line of the steps list")
    for line in lines:
        assert {"timestamp", "level", "event", "logger"} <= set(line)
    access = [line for line in lines if line["logger"] == "assistd.access"]
    hot = [line for line in access if line.get("request_id") == request_id]
    assert len(hot) == 1, access  # the hot read path logs its access line too
    assert hot[0]["route"] == "/v1/threads/{thread_id}/runs/{run_id}" and hot[0]["status"] == 200
    assert hot[0]["project"] and hot[0]["method"] == "GET" and hot[0]["duration_ms"] >= 0
    listed = next(line for line in access if line["route"].endswith("/steps"))
    assert listed["thread_id"] == run["thread_id"] and listed["run_id"] == run["id"]
    created = [line for line in access if line["method"] == "POST" and line["route"].endswith("/runs")]
    assert created and all(line["request_id"].startswith("req_") for line in created)
    text = server.log_path.read_bytes()[start:].decode()
    assert KEY_A not in text and "upstream-key" not in text and secret_text not in text


# --- readiness ----------------------------------------------------------------------------------------

def test_readyz_checks_database_migrations_and_bus(server: LiveProcess) -> None:
    r = httpx.get(f"{server.url}/readyz")
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ready", "checks": {"database": "ok", "migrations": "ok", "event_bus": "ok"}}
    assert httpx.get(f"{server.url}/healthz").status_code == 200


def test_readyz_turns_503_on_sigterm_while_still_serving(database_url: str, upstream: LiveProcess,
                                                         tmp_path: Path) -> None:
    with fresh_database(database_url, tmp_path) as url:
        proc = serve(server_env(url, upstream, tmp_path, ASSISTD_DRAIN_SECONDS="60")).start()
        try:
            assert httpx.get(f"{proc.url}/readyz").status_code == 200
            assert proc.proc is not None
            proc.proc.send_signal(signal.SIGTERM)
            wait_until(lambda: httpx.get(f"{proc.url}/readyz").status_code == 503, what="readyz 503")
            body = httpx.get(f"{proc.url}/readyz").json()
            assert body["status"] == "not ready" and body["checks"]["draining"] == "shutting down"
            assert httpx.get(f"{proc.url}/healthz").status_code == 200  # still serving while draining
            proc.proc.send_signal(signal.SIGINT)  # a second signal: stop now
            assert proc.proc.wait(15) in (0, -signal.SIGINT)  # uvicorn re-raises the signal it stopped on
        finally:
            proc.stop()


def test_readyz_503_when_the_database_is_unusable(database_url: str, upstream: LiveProcess,
                                                  tmp_path: Path) -> None:
    with fresh_database(database_url, tmp_path) as url:
        with serve(server_env(url, upstream, tmp_path)) as proc:
            assert httpx.get(f"{proc.url}/readyz").status_code == 200
            if url.startswith("postgres"):
                # This test's own database: refuse new connections and end the open ones.
                name = url.rsplit("/", 1)[1]
                admin = url.rsplit("/", 1)[0] + "/postgres"
                pg_admin(admin, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
                pg_admin(admin, f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'")
                try:
                    r = wait_until(lambda: (r := httpx.get(f"{proc.url}/readyz", timeout=10)).status_code == 503
                                   and r, what="readyz 503")
                    assert r.json()["checks"]["database"].startswith("unreachable")
                finally:
                    pg_admin(admin, f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            else:
                # SQLite cannot be "stopped": a schema behind this build's migrations is the failure here.
                path = url.removeprefix("sqlite:///")
                with sqlite3.connect(path) as db:
                    head = db.execute("SELECT version_num FROM alembic_version").fetchone()[0]
                    db.execute("UPDATE alembic_version SET version_num = '0001'")
                r = httpx.get(f"{proc.url}/readyz")
                assert r.status_code == 503 and r.json()["checks"]["migrations"].startswith("at 0001")
                with sqlite3.connect(path) as db:
                    db.execute("UPDATE alembic_version SET version_num = ?", (head,))
            wait_until(lambda: httpx.get(f"{proc.url}/readyz", timeout=10).status_code == 200, timeout=30,
                       what="ready again")


# --- metrics ------------------------------------------------------------------------------------------

def test_metrics_move_with_requests_and_runs(server: LiveProcess, http: httpx.Client, client: OpenAI) -> None:
    before = scrape(server.url)
    run = run_to_end(client, "count me [reply:four words of answer]")
    assert run["status"] == "completed"
    http.get(f"/threads/{run['thread_id']}/runs/{run['id']}")  # hot path
    http.get(f"/threads/{run['thread_id']}/runs/{run['id']}/steps")
    after = scrape(server.url)
    route = "/v1/threads/{thread_id}/runs/{run_id}"
    assert value(after, "assistd_http_requests_total", route=route, method="GET", status="200") > \
        value(before, "assistd_http_requests_total", route=route, method="GET", status="200")
    assert value(after, "assistd_http_request_duration_seconds_count", route=route) > \
        value(before, "assistd_http_request_duration_seconds_count", route=route)
    model = run["model"]
    assert value(after, "assistd_runs_total", status="completed", model=model) == \
        value(before, "assistd_runs_total", status="completed", model=model) + 1
    for name in ("assistd_run_time_to_first_token_seconds_count", "assistd_run_queue_wait_seconds_count",
                 "assistd_run_duration_seconds_count", "assistd_upstream_request_duration_seconds_count"):
        assert value(after, name, model=model) > value(before, name, model=model), name
    assert value(after, "assistd_completion_tokens_total", model=model) > \
        value(before, "assistd_completion_tokens_total", model=model)
    assert value(after, "assistd_run_step_duration_seconds_count", type="message_creation") > \
        value(before, "assistd_run_step_duration_seconds_count", type="message_creation")
    assert ("assistd_runs_queued", frozenset()) in after
    # Bounded labels: no raw ids anywhere in the exposition.
    text = httpx.get(f"{server.url}/metrics").text
    assert run["id"] not in text and run["thread_id"] not in text


def test_metrics_count_upstream_errors_and_failed_runs(server: LiveProcess, client: OpenAI) -> None:
    before = scrape(server.url)
    run = run_to_end(client, "[error: 400]")
    assert run["status"] == "failed"
    after = scrape(server.url)
    model = run["model"]
    assert value(after, "assistd_runs_total", status="failed", model=model) == \
        value(before, "assistd_runs_total", status="failed", model=model) + 1
    assert value(after, "assistd_upstream_errors_total", model=model) > \
        value(before, "assistd_upstream_errors_total", model=model)


def test_streams_are_counted_while_open(server: LiveProcess, client: OpenAI) -> None:
    assistant = new_assistant(client)
    thread = new_thread(client, "stream [reply:slow answer] [chunk-delay: 0.3]")
    with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id) as stream:
        for _event in stream:
            assert value(scrape(server.url), "assistd_active_streams") >= 1
            break
        stream.until_done()
    wait_until(lambda: value(scrape(server.url), "assistd_active_streams") == 0, what="streams closed")


def test_metrics_can_be_switched_off(database_url: str, upstream: LiveProcess, tmp_path: Path) -> None:
    with fresh_database(database_url, tmp_path) as url:
        with serve(server_env(url, upstream, tmp_path, ASSISTD_METRICS="0")) as proc:
            r = httpx.get(f"{proc.url}/metrics")
            assert r.status_code == 404 and r.json()["error"]["type"] == "invalid_request_error"



def test_worker_serves_its_own_metrics(database_url: str, is_postgres: bool, upstream: LiveProcess,
                                       tmp_path: Path) -> None:
    if not is_postgres:
        pytest.skip("`assistd worker` runs beside `serve` on PostgreSQL only")
    from tests.run_helpers import WorkerProcess, sdk
    from tests.servers import free_port

    port = free_port()
    with fresh_database(database_url, tmp_path) as url:
        with serve(server_env(url, upstream, tmp_path, ASSISTD_WORKERS="0")) as api:
            client = sdk(api)
            env = server_env(url, upstream, tmp_path, ASSISTD_WORKERS="2", ASSISTD_METRICS_PORT=str(port))
            with WorkerProcess(env):
                worker_url = f"http://127.0.0.1:{port}"
                before = scrape(worker_url)
                run = run_to_end(client, "[reply: from the worker]")
                after = scrape(worker_url)
                model = run["model"]
                assert value(after, "assistd_runs_total", status="completed", model=model) == \
                    value(before, "assistd_runs_total", status="completed", model=model) + 1
                assert value(after, "assistd_run_queue_wait_seconds_count", model=model) >= 1
                # The API-only server executed nothing: its run counters did not move.
                assert value(scrape(api.url), "assistd_runs_total", status="completed", model=model) == 0
