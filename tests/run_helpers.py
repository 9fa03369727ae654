"""Shared by the run tests: markers, the upstream's recorded requests, polling, and run/step invariants."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from openai import OpenAI

from tests.servers import ROOT, LiveProcess, free_port, pg_admin
from tests.spec import assert_list, assert_schema, wire

MODEL = "gpt-4o-mini"
INSTRUCTIONS = "Be brief."
TERMINAL = {"cancelled", "failed", "completed", "incomplete", "expired"}
ACTIVE = {"queued", "in_progress", "requires_action", "cancelling"}
STAMP = {"completed": "completed_at", "failed": "failed_at", "cancelled": "cancelled_at"}
STEP_STAMP = {"completed": "completed_at", "failed": "failed_at", "cancelled": "cancelled_at",
              "expired": "expired_at"}
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
FILE_SEARCH_CONTENT = "step_details.tool_calls[*].file_search.results[*].content"


def marker(prefix: str = "mk") -> str:
    """A text unique to one test, to find its requests in the upstream's recording."""
    return f"{prefix}-{secrets.token_hex(6)}"


def upstream_bodies(upstream: LiveProcess, text: str) -> list[dict[str, Any]]:
    """Chat requests assistd sent upstream whose body contains ``text``, oldest first."""
    r = httpx.get(f"{upstream.url}/_requests", params={"contains": text}, timeout=10)
    r.raise_for_status()
    return [item["body"] for item in r.json()["data"] if item["path"] == "/v1/chat/completions"]


def only_body(upstream: LiveProcess, text: str) -> dict[str, Any]:
    bodies = upstream_bodies(upstream, text)
    assert len(bodies) == 1, [b["messages"] for b in bodies]
    return bodies[0]


def new_assistant(client: OpenAI, **kwargs: Any) -> Any:
    params = {"model": MODEL, "name": "run-tests", "instructions": INSTRUCTIONS, **kwargs}
    return client.beta.assistants.create(**params)


def new_thread(client: OpenAI, *texts: str) -> Any:
    return client.beta.threads.create(messages=[{"role": "user", "content": t} for t in texts])


def check_run(run: Any, ttl: int = 600) -> dict[str, Any]:
    """The spec's RunObject, plus the invariants between its status and its other fields."""
    raw = assert_schema(run, "RunObject")
    status = raw["status"]
    assert raw["object"] == "thread.run" and raw["id"].startswith("run_")
    if status in TERMINAL:
        assert raw["expires_at"] is None, raw
        assert raw["usage"] is not None, raw
        u = raw["usage"]
        assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"], u
        assert raw["required_action"] is None
    else:
        assert raw["usage"] is None, raw
        assert raw["expires_at"] == raw["created_at"] + ttl, raw
    if status in STAMP:
        assert raw[STAMP[status]] is not None and raw[STAMP[status]] >= raw["created_at"], raw
    for other in set(STAMP) - {status}:
        assert raw[STAMP[other]] is None, (other, raw)
    if status == "requires_action":
        assert raw["required_action"]["type"] == "submit_tool_outputs"
        assert raw["required_action"]["submit_tool_outputs"]["tool_calls"]
    else:
        assert raw["required_action"] is None
    assert (raw["last_error"] is not None) == (status == "failed"), raw
    assert (raw["incomplete_details"] is not None) == (status == "incomplete"), raw
    if status in ("in_progress", "requires_action", "completed", "failed", "incomplete"):
        assert raw["started_at"] is not None and raw["started_at"] >= raw["created_at"], raw
    return raw


def check_step(step: Any) -> dict[str, Any]:
    raw = assert_schema(step, "RunStepObject")
    assert raw["object"] == "thread.run.step" and raw["id"].startswith("step_")
    status = raw["status"]
    for state, field in STEP_STAMP.items():
        assert (raw[field] is not None) == (status == state), (field, raw)
    assert (raw["last_error"] is not None) == (status == "failed"), raw
    if status == "completed":
        assert raw["usage"] is not None
    return raw


def steps_of(client: OpenAI, thread_id: str, run_id: str) -> list[dict[str, Any]]:
    page = client.beta.threads.runs.steps.list(run_id, thread_id=thread_id, order="asc", limit=100)
    raw = assert_list(page, "RunStepObject")
    assert raw["has_more"] is False
    for step in raw["data"]:
        check_step(step)
        assert step["run_id"] == run_id and step["thread_id"] == thread_id
    return raw["data"]


def messages_of(client: OpenAI, thread_id: str, role: str | None = None) -> list[dict[str, Any]]:
    page = client.beta.threads.messages.list(thread_id, order="asc", limit=100)
    raw = assert_list(page, "MessageObject")
    return [m for m in raw["data"] if role is None or m["role"] == role]


def text(message: dict[str, Any]) -> str:
    return "".join(p["text"]["value"] for p in message["content"] if p["type"] == "text")


def wait_run(client: OpenAI, thread_id: str, run_id: str, statuses: set[str] | str,
             timeout: float = 15.0, ttl: int = 600) -> dict[str, Any]:
    """Poll (every 50 ms) until the run's status is one of ``statuses``."""
    wanted = {statuses} if isinstance(statuses, str) else statuses
    deadline = time.monotonic() + timeout
    while True:
        raw = check_run(client.beta.threads.runs.retrieve(run_id, thread_id=thread_id), ttl)
        if raw["status"] in wanted:
            return raw
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} still {raw['status']} after {timeout}s, wanted {wanted}")
        time.sleep(0.05)


def wait_until(predicate: Any, timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def call_ids(run: Any) -> list[str]:
    raw = wire(run)
    return [c["id"] for c in raw["required_action"]["submit_tool_outputs"]["tool_calls"]]


# --- dedicated servers on their own database ---------------------------------------------------------

@contextmanager
def fresh_database(shared_url: str, tmp_dir: Any) -> Iterator[str]:
    """A new empty database of the same kind as the session's (SQLite file, or a Postgres database)."""
    if not shared_url.startswith("postgres"):
        yield f"sqlite:///{tmp_dir / ('assistd-' + secrets.token_hex(4) + '.db')}"
        return
    name = "assistd_runs_" + secrets.token_hex(6)
    admin = shared_url.rsplit("/", 1)[0] + "/postgres"
    pg_admin(admin, f'CREATE DATABASE "{name}"')
    try:
        yield shared_url.rsplit("/", 1)[0] + "/" + name
    finally:
        pg_admin(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def server_env(database_url: str, upstream: LiveProcess, data_dir: Any, **extra: str) -> dict[str, str]:
    return {
        "ASSISTD_DATABASE_URL": database_url,
        "ASSISTD_DATA_DIR": str(data_dir),
        "ASSISTD_API_KEYS": "",
        "ASSISTD_LLM_BASE_URL": f"{upstream.url}/v1",
        "ASSISTD_LLM_API_KEY": "upstream-key",
        **extra,
    }


def sdk(proc: LiveProcess) -> OpenAI:
    return OpenAI(base_url=f"{proc.url}/v1", api_key="sk-dev-anything", max_retries=0, timeout=30)


def serve(env: dict[str, str]) -> LiveProcess:
    """An ``assistd serve`` of its own (not yet started: ``with`` or ``.start()``)."""
    port = free_port()
    return LiveProcess(["serve", "--port", str(port)], port, env=env)


def kill9(proc: LiveProcess) -> None:
    """SIGKILL, as a crash: nothing of the process gets to clean up."""
    assert proc.proc is not None
    proc.proc.send_signal(signal.SIGKILL)
    proc.proc.wait(10)
    proc.stop()  # closes its log


class WorkerProcess(LiveProcess):
    """``assistd worker``: it has no HTTP side, so it is ready once its log says it executes runs."""

    READY = "executing up to"

    def __init__(self, env: dict[str, str]) -> None:
        super().__init__(["worker"], 0, env=env)
        self.log_path = self.log_path.with_name(f"assistd-worker-{secrets.token_hex(4)}.log")

    def start(self) -> WorkerProcess:
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "assistd.cli", *self.args], env=self.env,
                                     stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.log_tail()}")
            if self.READY in self.log():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"worker not ready in {self.timeout}s:\n{self.log_tail()}")


def require_sandbox() -> None:
    """Skip the calling test when this machine has no code_interpreter sandbox; fail it instead where
    ASSISTD_TEST_REQUIRE_SANDBOX=1 (CI), so a missing sandbox never passes for a green run."""
    from assistd.tools.code_interpreter import CodeInterpreter, SandboxUnavailable

    try:
        CodeInterpreter(tempfile.mkdtemp(prefix="assistd-ci-check-")).check()
    except SandboxUnavailable as exc:
        if os.environ.get("ASSISTD_TEST_REQUIRE_SANDBOX") == "1":
            pytest.fail(str(exc))
        pytest.skip(str(exc))
