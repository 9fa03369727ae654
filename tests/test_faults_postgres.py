"""PostgreSQL restarted while a run streams its answer (a private cluster: the shared one is never touched).

The run ends in a truthful terminal state (completed with its whole answer, or failed with its step and message
ended), nothing is duplicated, everything acknowledged before the restart is still there, and the server
answers every request meanwhile (503 while the database is away, never a 500 nor a dropped connection)."""

from __future__ import annotations

import pytest

from tests.faults import Watcher, private_postgres
from tests.run_helpers import (
    TERMINAL,
    messages_of,
    new_assistant,
    new_thread,
    sdk,
    serve,
    server_env,
    steps_of,
    text,
    wait_run,
)

WORDS = " ".join(f"w{i}" for i in range(20))


@pytest.fixture
def pg_server(upstream, tmp_path, is_postgres):
    if not is_postgres:
        pytest.skip("PostgreSQL faults run in the PostgreSQL pass")
    with private_postgres() as pg:
        env = server_env(pg.url, upstream, tmp_path, ASSISTD_LEASE_SECONDS="2")
        with serve(env) as proc:
            yield proc, pg


def test_postgres_restarted_mid_run(pg_server):
    proc, pg = pg_server
    client = sdk(proc)
    assistant = new_assistant(client)
    kept = new_thread(client, "acknowledged before the restart")
    thread = new_thread(client, f"[chunk-delay: 0.15] [reply: {WORDS}]")
    run = client.beta.threads.runs.create(thread.id, assistant_id=assistant.id)
    wait_run(client, thread.id, run.id, {"in_progress"})

    urls = [f"{proc.url}/v1/threads/{thread.id}/runs/{run.id}", f"{proc.url}/healthz"]
    with Watcher(urls) as watcher:
        pg.restart()
        ended = wait_run(client, thread.id, run.id, TERMINAL, timeout=90)
    assert watcher.codes[500] == 0 and watcher.codes[0] == 0, (watcher.codes, watcher.bodies)
    assert set(watcher.codes) <= {200, 503}, watcher.codes

    steps = steps_of(client, thread.id, run.id)
    answers = messages_of(client, thread.id, role="assistant")
    assert len(steps) == 1 and len(answers) == 1, (steps, answers)  # resumed or ended, never doubled
    if ended["status"] == "completed":
        assert steps[0]["status"] == "completed" and answers[0]["status"] == "completed"
        assert text(answers[0]) == WORDS
    else:
        assert ended["status"] == "failed" and ended["last_error"], ended
        assert steps[0]["status"] == "failed" and answers[0]["status"] == "incomplete"

    assert client.beta.threads.messages.list(kept.id).data[0].content[0].text.value == (
        "acknowledged before the restart")
    after = client.beta.threads.runs.create_and_poll(thread_id=kept.id, assistant_id=assistant.id,
                                                     poll_interval_ms=50)
    assert after.status == "completed"
