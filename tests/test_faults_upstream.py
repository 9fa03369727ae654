"""The upstream misbehaving mid-run: silent past its timeout, sending a chunk that is not JSON. The 429s and a
stream cut mid-answer are covered in tests/test_runs.py (docs/operations.md lists which test covers which fault).

After each: the run ends ``failed`` with a ``server_error`` naming no internals, its step and message end too,
nothing is duplicated, and the thread takes the next run."""

from __future__ import annotations

import pytest

from tests.run_helpers import (
    fresh_database,
    marker,
    messages_of,
    new_assistant,
    new_thread,
    sdk,
    serve,
    server_env,
    steps_of,
    upstream_bodies,
    wait_run,
)


def _ended_truthfully(client, thread_id: str, run_id: str, *, started: bool) -> None:
    """``started``: the model had begun answering (one failed step, one incomplete message), or not (none)."""
    run = wait_run(client, thread_id, run_id, {"failed", "completed", "incomplete", "cancelled", "expired"},
                   timeout=60)
    assert run["status"] == "failed", run
    assert run["last_error"]["code"] == "server_error", run["last_error"]
    steps = steps_of(client, thread_id, run_id)
    answers = messages_of(client, thread_id, role="assistant")
    if started:
        assert [s["status"] for s in steps] == ["failed"], steps
        assert [m["status"] for m in answers] == ["incomplete"], answers
    else:
        assert steps == [] and answers == [], (steps, answers)
    # The thread is free again: the next run completes.
    client.beta.threads.messages.create(thread_id, role="user", content="again")
    assistant_id = run["assistant_id"]
    after = client.beta.threads.runs.create_and_poll(thread_id=thread_id, assistant_id=assistant_id,
                                                     poll_interval_ms=50)
    assert after.status == "completed", after


def test_malformed_chunk_fails_the_run(client):
    assistant = new_assistant(client)
    thread = new_thread(client, "[malformed] [reply: one two three four five]")
    run = client.beta.threads.runs.create(thread.id, assistant_id=assistant.id)
    _ended_truthfully(client, thread.id, run.id, started=True)


@pytest.fixture
def impatient(database_url, upstream, tmp_path):
    """A server whose upstream gives up after 1 s of silence and retries once (ASSISTD_MODELS_FILE)."""
    models = tmp_path / "models.toml"
    models.write_text(f'[upstreams.impatient]\nbase_url = "{upstream.url}/v1"\ntimeout = 1.0\nmax_retries = 1\n\n'
                      '[models."*"]\nupstream = "impatient"\n')
    # A database of its own: keyless dev mode ends for good once any test has stored a key in the session's.
    with fresh_database(database_url, tmp_path) as url:
        env = server_env(url, upstream, tmp_path, ASSISTD_MODELS_FILE=str(models))
        with serve(env) as proc:
            yield sdk(proc)


def test_upstream_silent_past_its_timeout_fails_the_run(impatient, upstream):
    assistant = new_assistant(impatient)
    m = marker("timeout")
    thread = new_thread(impatient, f"{m} [delay: 4] [reply: too late]")
    run = impatient.beta.threads.runs.create(thread.id, assistant_id=assistant.id)
    _ended_truthfully(impatient, thread.id, run.id, started=False)
    attempts = [b for b in upstream_bodies(upstream, m) if m in str(b["messages"][-1]["content"])]
    assert len(attempts) == 2  # the first attempt and its one retry (the later bodies are the next run's)
