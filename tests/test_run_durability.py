"""Runs that outlive their moment: expiry, many at once, and servers or workers killed mid-run."""

from __future__ import annotations

import asyncio
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import orjson
import pytest
from sqlalchemy import select

from assistd.events.memory import MemoryBus
from assistd.providers.base import Finish, ToolCallDelta, Usage
from assistd.runner.execute import RunExecutor
from assistd.schemas.assistants import CreateAssistant
from assistd.schemas.runs import CreateRun
from assistd.schemas.threads import CreateThread
from assistd.services import assistants as assistant_service
from assistd.services import runs as run_service
from assistd.services import threads as thread_service
from assistd.services.outbox import Outbox
from assistd.store import objects
from assistd.store.db import Database
from assistd.store.migrate import migrate
from assistd.store.tables import run_steps, runs
from tests.run_helpers import (
    WEATHER,
    WorkerProcess,
    call_ids,
    check_run,
    check_step,
    fresh_database,
    kill9,
    marker,
    messages_of,
    new_assistant,
    new_thread,
    sdk,
    serve,
    server_env,
    steps_of,
    text,
    upstream_bodies,
    wait_run,
    wait_until,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TOKENS = " ".join(["tok"] * 20)


def answering(client, upstream, m: str, thread_id: str, run_id: str):
    """The run's answer step, once the model was asked for the answer (the dev upstream sends its first chunk
    at once). The step alone is not enough: a model offered no tool has it written before it is called
    (runner/answer_steps.py)."""
    return upstream_bodies(upstream, m) and [s for s in steps_of(client, thread_id, run_id)
                                              if s["type"] == "message_creation" and s["status"] == "in_progress"]


def assert_single_answer(client, thread_id: str, run_id: str, expected: str) -> None:
    steps = steps_of(client, thread_id, run_id)
    assert [(s["type"], s["status"]) for s in steps] == [("message_creation", "completed")], steps
    (answer,) = messages_of(client, thread_id, "assistant")
    assert answer["status"] == "completed" and text(answer) == expected
    assert answer["id"] == steps[0]["step_details"]["message_creation"]["message_id"]
    assert answer["run_id"] == run_id


# --- expiry ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def short_ttl(database_url, upstream, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ttl")
    with fresh_database(database_url, tmp) as url:
        with serve(server_env(url, upstream, tmp, ASSISTD_RUN_TTL_SECONDS="2")) as proc:
            yield sdk(proc)


def test_run_left_in_requires_action_expires(short_ttl, upstream):
    client = short_ttl
    assistant = new_assistant(client, tools=[WEATHER])
    thread = new_thread(client, f'{marker("exp")} [tool: get_weather {{"city": "Baku"}}]')
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    raw = check_run(run, ttl=2)
    assert raw["status"] == "requires_action" and raw["expires_at"] == raw["created_at"] + 2
    done = wait_run(client, thread.id, run.id, "expired", timeout=8, ttl=2)
    assert done["required_action"] is None and done["expires_at"] is None
    assert done["cancelled_at"] is None and done["failed_at"] is None and done["completed_at"] is None
    (step,) = steps_of(client, thread.id, run.id)
    assert step["status"] == "expired" and step["expired_at"] is not None
    with pytest.raises(openai.BadRequestError):
        client.beta.threads.runs.submit_tool_outputs(
            run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": call_ids(run)[0], "output": "late"}])
    with pytest.raises(openai.BadRequestError):
        client.beta.threads.runs.cancel(run.id, thread_id=thread.id)
    # the thread is free again
    again = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id,
        additional_messages=[{"role": "user", "content": "[reply: fresh]"}])
    assert check_run(again, ttl=2)["status"] == "completed"


def test_tool_outputs_after_expires_at_are_refused(short_ttl):
    client = short_ttl
    thread = new_thread(client, f'{marker("late")} [tool: get_weather {{"city": "Riga"}}]')
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=new_assistant(
        client, tools=[WEATHER]).id)
    assert run.status == "requires_action"
    wait_until(lambda: time.time() >= run.expires_at, what="expires_at")
    with pytest.raises(openai.BadRequestError):
        client.beta.threads.runs.submit_tool_outputs(
            run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": call_ids(run)[0], "output": "late"}])
    wait_run(client, thread.id, run.id, "expired", timeout=5, ttl=2)


def test_run_still_executing_at_expires_at_expires(short_ttl, upstream):
    """"If the runs take too long to execute and go beyond the time stated in expires_at, … expire the run"."""
    client = short_ttl
    m = marker("slow")
    thread = new_thread(client, f"{m} [chunk-delay: 0.3] [tokens: 30]")
    run = client.beta.threads.runs.create(thread.id, assistant_id=new_assistant(client).id)
    wait_until(lambda: answering(client, upstream, m, thread.id, run.id), what="the answer to start")
    done = wait_run(client, thread.id, run.id, "expired", timeout=5, ttl=2)
    assert done["expires_at"] is None and done["usage"] is not None
    (step,) = steps_of(client, thread.id, run.id)
    assert step["status"] == "expired" and step["expired_at"] is not None
    (answer,) = messages_of(client, thread.id, "assistant")
    assert answer["status"] == "incomplete" and answer["incomplete_details"] == {"reason": "run_expired"}
    assert 0 < text(answer).count("tok") < 30


@pytest.fixture(scope="module")
def unserved(database_url, upstream, tmp_path_factory):
    """An API-only server with no worker anywhere, whose runs expire 2 s after creation."""
    tmp = tmp_path_factory.mktemp("unserved")
    with fresh_database(database_url, tmp) as url:
        with serve(server_env(url, upstream, tmp, ASSISTD_WORKERS="0", ASSISTD_RUN_TTL_SECONDS="2")) as proc:
            yield proc


def test_a_run_nobody_takes_expires_and_ends_its_stream(unserved):
    """runner/sweeper.py: every process ends runs past expires_at that nobody executes, API-only ones too."""
    from tests.test_streaming import stream_post

    client = sdk(unserved)
    assistant = new_assistant(client)
    thread = new_thread(client, "[reply: never said]")
    with httpx.Client(base_url=f"{unserved.url}/v1", headers={"Authorization": "Bearer sk-dev"}, timeout=30) as http:
        s = stream_post(http, f"/threads/{thread.id}/runs", {"assistant_id": assistant.id, "stream": True})
    assert s.names() == ["thread.run.created", "thread.run.queued", "thread.run.expired", "done"]
    run = check_run(client.beta.threads.runs.retrieve(s.first("thread.run.created")["id"], thread_id=thread.id), ttl=2)
    assert run["status"] == "expired" and run["expires_at"] is None and run["started_at"] is None
    assert run == s.first("thread.run.expired")
    assert steps_of(client, thread.id, run["id"]) == [] and messages_of(client, thread.id, "assistant") == []


def test_a_queued_run_cancelled_with_nobody_to_take_it_ends_cancelled(unserved):
    client = sdk(unserved)
    thread = new_thread(client, "[reply: never said]")
    run = client.beta.threads.runs.create(thread.id, assistant_id=new_assistant(client).id)
    assert client.beta.threads.runs.cancel(run.id, thread_id=thread.id).status == "cancelling"
    done = wait_run(client, thread.id, run.id, "cancelled", timeout=8, ttl=2)
    assert done["cancelled_at"] is not None and done["expires_at"] is None


# --- many at once --------------------------------------------------------------------------------------------

def test_fifty_concurrent_runs_on_fifty_threads(client):
    assistant = new_assistant(client)
    m = marker("conc")

    def one(i: int) -> tuple[str, str]:
        thread = new_thread(client, f"{m}-{i}")
        run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
        assert check_run(run)["status"] == "completed", run
        return thread.id, run.id

    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(one, range(50)))
    for i, (thread_id, run_id) in enumerate(results):
        (answer,) = messages_of(client, thread_id, "assistant")
        assert text(answer) == f"echo: {m}-{i}" and answer["run_id"] == run_id


# --- crashes -------------------------------------------------------------------------------------------------

def test_server_killed_mid_run_resumes_it_after_restart(database_url, upstream, tmp_path):
    m = marker("crash")
    slow_call = '[tool: get_weather {"city": "a b c d e f g h i j k l m n o p"}]'
    with fresh_database(database_url, tmp_path) as url:
        env = server_env(url, upstream, tmp_path, ASSISTD_LEASE_SECONDS="2")
        first = serve(env).start()
        try:
            client = sdk(first)
            assistant = new_assistant(client, tools=[WEATHER])
            thread = new_thread(client, f"{m} [chunk-delay: 0.3] [tokens: 20]")
            run = client.beta.threads.runs.create(thread.id, assistant_id=assistant.id)
            tool_thread = new_thread(client, f"{m}-tool [chunk-delay: 0.4] {slow_call}")
            tool_run = client.beta.threads.runs.create(tool_thread.id, assistant_id=assistant.id)
            wait_run(client, thread.id, run.id, "in_progress")
            wait_until(lambda: answering(client, upstream, m, thread.id, run.id), what="the answer to start")
            wait_until(lambda: steps_of(client, tool_thread.id, tool_run.id), what="the tool call to start")
        finally:
            kill9(first)
        with serve(env) as second:
            client = sdk(second)
            done = wait_run(client, thread.id, run.id, "completed", timeout=20)
            assert done["usage"]["completion_tokens"] == 20
            assert_single_answer(client, thread.id, run.id, TOKENS)

            waiting = wait_run(client, tool_thread.id, tool_run.id, "requires_action", timeout=10)
            (step,) = steps_of(client, tool_thread.id, tool_run.id)  # the interrupted one, adopted
            assert [c["id"] for c in step["step_details"]["tool_calls"]] == call_ids(waiting)
            assert [c["function"]["arguments"] for c in step["step_details"]["tool_calls"]] == [
                '{"city":"a b c d e f g h i j k l m n o p"}']
    assert len(upstream_bodies(upstream, f"{m} ")) == 2
    assert len(upstream_bodies(upstream, f"{m}-tool")) == 2


@pytest.fixture
def split_deployment(database_url, is_postgres, upstream, tmp_path):
    """PostgreSQL only: an API-only server, and the env for separate `assistd worker` processes."""
    if not is_postgres:
        pytest.skip("`assistd worker` runs beside `serve` on PostgreSQL only")
    with fresh_database(database_url, tmp_path) as url:
        with serve(server_env(url, upstream, tmp_path, ASSISTD_WORKERS="0")) as api:
            yield sdk(api), server_env(url, upstream, tmp_path, ASSISTD_LEASE_SECONDS="2", ASSISTD_WORKERS="4")


def start_slow_run(client, m: str, chunk_delay: float):
    assistant = new_assistant(client)
    thread = new_thread(client, f"{m} [chunk-delay: {chunk_delay}] [tokens: 20]")
    run = client.beta.threads.runs.create(thread.id, assistant_id=assistant.id)
    return thread, run


def test_api_only_server_leaves_runs_to_workers(split_deployment):
    client, worker_env = split_deployment
    thread = new_thread(client, f"{marker('queue')} [reply: later]")
    run = client.beta.threads.runs.create(thread.id, assistant_id=new_assistant(client).id)
    assert check_run(client.beta.threads.runs.retrieve(run.id, thread_id=thread.id))["status"] == "queued"
    with WorkerProcess(worker_env):
        wait_run(client, thread.id, run.id, "completed")
    assert_single_answer(client, thread.id, run.id, "later")


def test_worker_process_takes_tool_outputs_and_cancels(split_deployment, upstream):
    """Tool outputs and cancels reach a run executed by another process (lease release, heartbeat)."""
    client, worker_env = split_deployment
    assistant = new_assistant(client, tools=[WEATHER])
    with WorkerProcess(worker_env):
        thread = new_thread(client, f'{marker("wtool")} [tool: get_weather {{"city": "Tartu"}}]')
        run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
        assert check_run(run)["status"] == "requires_action"
        done = client.beta.threads.runs.submit_tool_outputs_and_poll(
            run_id=run.id, thread_id=thread.id, tool_outputs=[{"tool_call_id": call_ids(run)[0], "output": "9C"}])
        assert check_run(done)["status"] == "completed"
        assert text(messages_of(client, thread.id, "assistant")[0]) == "tool results: 9C"

        m = marker("wcancel")
        thread, run = start_slow_run(client, m, 0.3)
        wait_until(lambda: answering(client, upstream, m, thread.id, run.id), what="the answer to start")
        started = time.monotonic()
        client.beta.threads.runs.cancel(run.id, thread_id=thread.id)
        wait_run(client, thread.id, run.id, "cancelled", timeout=2)
        assert time.monotonic() - started < 2
        (step,) = steps_of(client, thread.id, run.id)
        assert step["status"] == "cancelled"


def test_worker_killed_mid_run_another_worker_finishes_it(split_deployment, upstream):
    client, worker_env = split_deployment
    m = marker("wkill")
    first = WorkerProcess(worker_env).start()
    try:
        thread, run = start_slow_run(client, m, 0.3)
        wait_until(lambda: answering(client, upstream, m, thread.id, run.id), what="the answer to start")
    finally:
        kill9(first)
    with WorkerProcess(worker_env):
        wait_run(client, thread.id, run.id, "completed", timeout=20)
    assert_single_answer(client, thread.id, run.id, TOKENS)
    assert len(upstream_bodies(upstream, m)) == 2


def test_sigterm_lets_a_worker_finish_its_run_and_exit(split_deployment, upstream):
    client, worker_env = split_deployment
    worker = WorkerProcess(worker_env).start()
    try:
        m = marker("wterm")
        thread, run = start_slow_run(client, m, 0.1)
        wait_until(lambda: answering(client, upstream, m, thread.id, run.id), what="the answer to start")
        assert worker.proc is not None
        worker.proc.send_signal(signal.SIGTERM)
        assert worker.proc.wait(15) == 0, worker.log_tail()
    finally:
        worker.stop()
    done = check_run(client.beta.threads.runs.retrieve(run.id, thread_id=thread.id))
    if done["status"] != "completed":  # released instead: the next worker resumes it
        with WorkerProcess(worker_env):
            wait_run(client, thread.id, run.id, "completed", timeout=20)
    assert_single_answer(client, thread.id, run.id, TOKENS)


# --- races inside the engine ----------------------------------------------------------------------------------

def test_a_cancel_landing_while_the_turn_is_recorded_wins(database_url, tmp_path):
    """The model has finished (asking for a tool) when the client's cancel commits, just before the turn is
    recorded: the run must end cancelled, not wait in requires_action for outputs nobody will send."""
    project = "proj_racetest000000000000000"

    async def scenario(url: str):
        db = Database(url, pool_size=2)
        await migrate(db)
        try:
            async with db.write() as conn:
                assistant = await assistant_service.create(conn, project, CreateAssistant(model="m", tools=[WEATHER]))
                thread = await thread_service.create(conn, project, CreateThread(
                    messages=[{"role": "user", "content": "weather?"}]))
                run = (await run_service.create(conn, project, thread["id"],
                                                CreateRun(assistant_id=assistant["id"]), Outbox())).run

            class Provider:
                async def stream_chat(self, request):
                    yield ToolCallDelta(0, "call_race", "get_weather", '{"city":"Oslo"}')
                    yield Finish("tool_calls")
                    async with db.write() as conn:  # the API's cancel, committed from elsewhere
                        await run_service.cancel(conn, project, thread["id"], run["id"], Outbox())
                    yield Usage(5, 3)

            class Router:
                def provider_for(self, model):
                    return Provider()

                def context_window(self, model):
                    return 128_000

            await RunExecutor(db, MemoryBus(), Router(), run["id"], project).execute()
            async with db.read() as conn:
                final = await objects.get_object(conn, runs, run["id"])
                steps = [orjson.loads(raw) for (raw,) in await conn.execute(
                    select(run_steps.c.data).where(run_steps.c.run_id == run["id"]))]
            return final, steps
        finally:
            await db.close()

    with fresh_database(database_url, tmp_path) as url:
        final, steps = asyncio.run(scenario(url))
    raw = check_run(final)
    assert raw["status"] == "cancelled" and raw["required_action"] is None
    (step,) = steps
    assert check_step(step)["status"] == "cancelled"
    assert [c["id"] for c in step["step_details"]["tool_calls"]] == ["call_race"]

