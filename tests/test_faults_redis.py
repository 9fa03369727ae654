"""Redis stopped and started again while it carries a worker's run events to an API-only serve (a private
redis-server on its own port). The stream never hangs: it either carries every event or ends with an `error`
event; the run still completes once, whole; the server answers throughout; the next stream is whole again."""

from __future__ import annotations

import threading

import pytest

from tests.faults import PrivateRedis, Watcher
from tests.run_helpers import (
    WorkerProcess,
    fresh_database,
    messages_of,
    new_assistant,
    new_thread,
    sdk,
    serve,
    server_env,
    steps_of,
    text,
    wait_run,
    wait_until,
)
from tests.test_streaming_cross_process import sse_events

WORDS = " ".join(f"w{i}" for i in range(30))


@pytest.fixture
def split_on_redis(database_url, is_postgres, upstream, tmp_path):
    if not is_postgres:
        pytest.skip("a separate `assistd worker` needs PostgreSQL")
    redis = PrivateRedis().start()
    try:
        with fresh_database(database_url, tmp_path) as url:
            extra = {"ASSISTD_REDIS_URL": redis.url}
            api_env = server_env(url, upstream, tmp_path, ASSISTD_WORKERS="0", **extra)
            worker_env = server_env(url, upstream, tmp_path, ASSISTD_WORKERS="4", ASSISTD_LEASE_SECONDS="2", **extra)
            with serve(api_env) as api, WorkerProcess(worker_env):
                yield api, redis
    finally:
        redis.stop()


def test_redis_stopped_and_started_mid_stream(split_on_redis):
    api, redis = split_on_redis
    client = sdk(api)
    assistant = new_assistant(client)
    thread = new_thread(client, f"[chunk-delay: 0.1] [reply: {WORDS}]")
    events: list = []
    streamer = threading.Thread(target=sse_events, args=(
        api, f"/threads/{thread.id}/runs", {"assistant_id": assistant.id, "stream": True}, events), daemon=True)
    with Watcher([f"{api.url}/healthz", f"{api.url}/v1/threads/{thread.id}"]) as watcher:
        streamer.start()
        wait_until(lambda: any(name == "thread.message.delta" for name, _ in list(events)) or None, what="a delta")
        redis.stop()
        redis.start()
        streamer.join(60)
        assert not streamer.is_alive(), "the stream hung after Redis went away"
    assert watcher.codes[500] == 0 and watcher.codes[0] == 0, (watcher.codes, watcher.bodies)

    names = [name for name, _ in events]
    assert names[-1] == "done" and names[-2] in ("thread.run.completed", "error"), names
    run_id = events[0][1]["id"]
    run = wait_run(client, thread.id, run_id, "completed", timeout=60)
    assert run["status"] == "completed"
    (answer,) = messages_of(client, thread.id, role="assistant")
    assert text(answer) == WORDS
    assert len(steps_of(client, thread.id, run_id)) == 1
    if names[-2] == "thread.run.completed":  # carried whole: every delta exactly once
        streamed = "".join(d["delta"]["content"][0]["text"]["value"] for n, d in events if n == "thread.message.delta")
        assert streamed == WORDS

    # Once Redis is back, a new stream carries every event again.
    client.beta.threads.messages.create(thread.id, role="user", content="[reply: back]")
    again = [name for name, _ in sse_events(api, f"/threads/{thread.id}/runs",
                                            {"assistant_id": assistant.id, "stream": True})]
    assert again[:3] == ["thread.run.created", "thread.run.queued", "thread.run.in_progress"], again
    assert again[-2:] == ["thread.run.completed", "done"], again
