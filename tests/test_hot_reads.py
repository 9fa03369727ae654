"""The hot GETs answered before FastAPI (api/hot.py) and the terminal-step cache (services/steps.py):
byte-for-byte the FastAPI routes' answers, the same errors, and no stale step after a change or a delete."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from assistd.api import hot
from assistd.app import _watch_cache
from assistd.events.base import Event
from assistd.events.memory import MemoryBus
from assistd.services.steps import CACHE_CHANNEL, THREAD_DELETED, TerminalStepCache
from tests.conftest import KEY_B
from tests.run_helpers import WEATHER, call_ids, marker, new_assistant, new_thread, steps_of

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

# A GET with a Content-Length is never taken by the hot path: the FastAPI route answers it.
VIA_ROUTE = {"Content-Length": "0"}


@pytest.fixture(scope="module")
def done(client):
    """A completed run with one message_creation step: ids of everything the hot paths serve."""
    assistant = new_assistant(client, tools=[WEATHER])
    thread = new_thread(client, f"{marker('hot')} [reply: hot path]")
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "completed"
    (step,) = steps_of(client, thread.id, run.id)
    return {"a": assistant.id, "t": thread.id, "r": run.id, "s": step["id"],
            "m": step["step_details"]["message_creation"]["message_id"]}


PATHS = ["/assistants/{a}", "/threads/{t}", "/threads/{t}/messages/{m}", "/threads/{t}/runs/{r}",
         "/threads/{t}/runs/{r}/steps/{s}"]


@pytest.mark.parametrize("path", PATHS)
def test_same_bytes_and_headers_as_the_route(http, done, path):
    url = path.format(**done)
    for _ in range(2):  # the second read of the step comes from the cache
        fast = http.get(url)
        slow = http.get(url, headers=VIA_ROUTE)
        assert fast.status_code == slow.status_code == 200
        assert fast.content == slow.content
        names = ("content-type", "content-length", "openai-poll-after-ms")
        assert {k: fast.headers.get(k) for k in names} == {k: slow.headers.get(k) for k in names}
    if "/runs/" in path and "/steps/" not in path:
        assert int(fast.headers["openai-poll-after-ms"]) > 0


@pytest.mark.parametrize("path", PATHS)
def test_errors_are_the_routes(base_url, http, done, path):
    """No key, a wrong key, another project's key, unknown ids: what the route answers, either way."""
    url = base_url + path.format(**done)
    cases = [{}, {"Authorization": "Bearer sk-wrong-key-123456789"}, {"Authorization": f"Bearer {KEY_B}"}]
    for headers in cases:
        fast = httpx.get(url, headers=headers)
        slow = httpx.get(url, headers={**headers, **VIA_ROUTE})
        assert fast.status_code == slow.status_code and fast.status_code in (401, 404), fast.text
        assert fast.json() == slow.json()
    last = path.rsplit("/", 1)[1].strip("{}")
    for ids in ({**done, last: "x_missing"}, {**done, "t": "thread_missing"}):
        if path.format(**ids) == path.format(**done):  # no thread in the path
            continue
        fast = http.get(path.format(**ids))
        slow = http.get(path.format(**ids), headers=VIA_ROUTE)
        assert fast.status_code == slow.status_code == 404
        assert fast.json() == slow.json()


def test_step_include_is_checked_first(http, done):
    url = "/threads/{t}/runs/{r}/steps/{s}".format(**done)
    ok = http.get(url, params={"include[]": "step_details.tool_calls[*].file_search.results[*].content"})
    assert ok.status_code == 200 and ok.json()["id"] == done["s"]
    for params in ({"include[]": "bogus"}, [("include[]", "step_details.tool_calls[*].file_search.results[*].content"),
                                            ("include[]", "")]):
        r = http.get(url, params=params)
        assert r.status_code == 400 and r.json() == http.get(url, params=params, headers=VIA_ROUTE).json()


def test_step_of_another_run_or_thread_is_not_served_from_the_cache(client, http, done):
    url = "/threads/{t}/runs/{r}/steps/{s}"
    assert http.get(url.format(**done)).status_code == 200  # now cached
    other = new_thread(client, "[reply: other]")
    for ids in ({**done, "t": other.id}, {**done, "r": "run_other"}):
        assert http.get(url.format(**ids)).status_code == 404


def test_in_progress_step_is_read_fresh(client, http):
    """A step still in progress is never cached: once outputs complete it, the GET says so at once."""
    assistant = new_assistant(client, tools=[WEATHER])
    thread = new_thread(client, f'{marker("hot")} [tool: get_weather {{"city": "Oslo"}}]')
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "requires_action"
    (step,) = steps_of(client, thread.id, run.id)
    url = f"/threads/{thread.id}/runs/{run.id}/steps/{step['id']}"
    for _ in range(3):
        assert http.get(url).json()["status"] == "in_progress"
    run = client.beta.threads.runs.submit_tool_outputs_and_poll(
        run_id=run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": call_ids(run)[0], "output": "rain"}])
    assert http.get(url).json()["status"] == "completed"
    assert http.get(url).json()["step_details"]["tool_calls"][0]["function"]["output"] == "rain"


def test_deleted_thread_step_is_gone_at_once(client, http):
    assistant = new_assistant(client)
    thread = new_thread(client, "[reply: soon deleted]")
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    (step,) = steps_of(client, thread.id, run.id)
    url = f"/threads/{thread.id}/runs/{run.id}/steps/{step['id']}"
    for _ in range(3):
        assert http.get(url).status_code == 200
    assert http.delete(f"/threads/{thread.id}").json()["deleted"] is True
    r = http.get(url)
    assert r.status_code == 404 and r.json()["error"]["message"] == f"No run found with id '{run.id}'."


def test_hot_path_shapes(http):
    """The shapes the hot layer takes, and those it leaves to FastAPI."""
    expected = {"/v1/assistants/a": "_assistant", "/v1/threads/t": "_thread",
                "/v1/threads/t/messages/m": "_message", "/v1/threads/t/runs/r": "_run",
                "/v1/threads/t/runs/r/steps/s": "_step", "/v1/threads/runs": "_thread"}
    for path, reader in expected.items():
        found = hot.match(path)
        assert found is not None and found[0].__name__ == reader, path
    for path in ["/v1/assistants", "/v1/assistants/", "/v1/threads/t/", "/v1/threads/t/messages",
                 "/v1/threads/t/runs", "/v1/threads/t/runs/r/steps", "/v1/threads//runs/r",
                 "/v1/threads/t/runs/r/steps/s/x", "/v1/files/f", "/v2/assistants/a", "/v1/threads/t/runs/r/x/s",
                 "/v1/threads/t/messages/", "/v1/threads/t/runs/r/steps/"]:
        assert hot.match(path) is None, path
    # FastAPI takes GET /v1/threads/runs for a thread id too (POST /threads/runs is the only other route)
    fast, slow = http.get("/threads/runs"), http.get("/threads/runs", headers=VIA_ROUTE)
    assert fast.status_code == slow.status_code == 404 and fast.json() == slow.json()
    assert fast.json()["error"]["message"] == "No thread found with id 'runs'."


def test_cache_unit():
    cache = TerminalStepCache(max_entries=2, ttl_seconds=60)
    epoch = cache.epoch
    cache.put(epoch, "p", "t", "r", "s1", b"1")
    assert cache.get("p", "t", "r", "s1") == b"1"
    assert cache.get("q", "t", "r", "s1") is None and cache.get("p", "u", "r", "s1") is None
    assert cache.get("p", "t", "x", "s1") is None
    cache.put(epoch, "p", "t", "r", "s2", b"2")
    cache.put(epoch, "p", "t2", "r", "s3", b"3")  # over the bound: the oldest goes
    assert cache.get("p", "t", "r", "s1") is None and len(cache) == 2
    cache.forget_thread("t")
    assert cache.get("p", "t", "r", "s2") is None and cache.get("p", "t2", "r", "s3") == b"3"
    # a read that began before a deletion must not store what it read
    cache.put(epoch, "p", "t", "r", "s4", b"4")
    assert cache.get("p", "t", "r", "s4") is None
    short = TerminalStepCache(ttl_seconds=0.01)
    short.put(short.epoch, "p", "t", "r", "s", b"x")
    time.sleep(0.02)
    assert short.get("p", "t", "r", "s") is None and len(short) == 0


def test_cache_invalidation_over_the_bus():
    async def main() -> None:
        bus = MemoryBus()
        cache = TerminalStepCache()
        task = asyncio.create_task(_watch_cache(await bus.subscribe(CACHE_CHANNEL), cache))
        cache.put(cache.epoch, "p", "t", "r", "s", b"x")
        await bus.publish(CACHE_CHANNEL, Event(THREAD_DELETED, {"thread_id": "t"}))
        for _ in range(100):
            if cache.get("p", "t", "r", "s") is None:
                break
            await asyncio.sleep(0.01)
        assert cache.get("p", "t", "r", "s") is None
        task.cancel()

    asyncio.run(main())


def test_thread_deleted_through_another_process_leaves_no_cached_step(database_url, is_postgres, upstream, tmp_path):
    """Two `serve` processes on one PostgreSQL database: a step cached by one is gone there as soon as the
    other deletes its thread (the `cache` event on the bus)."""
    if not is_postgres:
        pytest.skip("several `serve` processes need PostgreSQL")
    from tests.run_helpers import fresh_database, server_env
    from tests.servers import LiveProcess, free_port

    with fresh_database(database_url, tmp_path) as url:
        env = server_env(url, upstream, tmp_path)
        port_a, port_b = free_port(), free_port()
        with LiveProcess(["serve", "--port", str(port_a)], port_a, env=env) as a, \
                LiveProcess(["serve", "--port", str(port_b)], port_b, env={**env, "ASSISTD_WORKERS": "0"}) as b:
            headers = {"Authorization": "Bearer sk-dev"}
            with httpx.Client(base_url=f"{a.url}/v1", headers=headers, timeout=30) as http_a, \
                    httpx.Client(base_url=f"{b.url}/v1", headers=headers, timeout=30) as http_b:
                assistant = http_a.post("/assistants", json={"model": "gpt-4o-mini"}).json()
                run = http_a.post("/threads/runs", json={"assistant_id": assistant["id"], "thread": {
                    "messages": [{"role": "user", "content": "[reply: cached elsewhere]"}]}}).json()
                path = f"/threads/{run['thread_id']}/runs/{run['id']}"
                deadline = time.monotonic() + 20
                while http_a.get(path).json()["status"] != "completed":
                    assert time.monotonic() < deadline
                    time.sleep(0.05)
                step = http_a.get(f"{path}/steps").json()["data"][0]
                for _ in range(3):
                    assert http_a.get(f"{path}/steps/{step['id']}").status_code == 200  # cached in A
                assert http_b.delete(f"/threads/{run['thread_id']}").json()["deleted"] is True
                deadline = time.monotonic() + 2
                while http_a.get(f"{path}/steps/{step['id']}").status_code != 404:
                    assert time.monotonic() < deadline, "process A still serves the deleted thread's step"
                    time.sleep(0.005)
