"""The run executor alone, in this process: a SQLite file, the in-memory bus and the scripted model
(providers/scripted.py, the dev upstream's planner without HTTP). Milliseconds per run, so the executor's
logic — answers, limits, client tool calls, upstream errors — can be covered without servers.

What a client sees is tested against the live server elsewhere (tests/test_runs.py and the others);
these check the engine's own outcome: the run's status, its steps, its message, and its events in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from assistd.events.base import Event, run_channel
from assistd.events.memory import MemoryBus
from assistd.observability import metrics
from assistd.observability import runs as observe_runs
from assistd.providers.base import ToolCallDelta
from assistd.providers.scripted import ScriptedProvider
from assistd.runner import tool_set
from assistd.runner.execute import RunExecutor
from assistd.runner.run_scope import RunScope
from assistd.runner.server_tools import Offer, Recorded, Recording, ToolEngines
from assistd.schemas.assistants import CreateAssistant
from assistd.schemas.runs import CreateRun, SubmitToolOutputs
from assistd.schemas.threads import CreateThread
from assistd.services import assistants, messages, runs, threads
from assistd.services.outbox import Outbox
from assistd.services.run_objects import new_step, set_step_status
from assistd.services.runs import insert_step, list_run_steps
from assistd.store import keys
from assistd.store.db import Database
from assistd.store.migrate import migrate

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}}


class Engine:
    """A database, a bus and the scripted model, on one event loop."""

    def __init__(self, path: Path) -> None:
        self.db = Database(f"sqlite:///{path}", pool_size=2)
        self.bus = MemoryBus()
        self.model = ScriptedProvider()
        self.project = ""

    async def start(self) -> None:
        await migrate(self.db)
        async with self.db.write() as conn:
            self.project = await keys.ensure_project(conn, "inprocess")

    async def run(self, text: str, run_options: dict[str, Any] | None = None, **assistant: Any
                  ) -> tuple[dict[str, Any], list[Event]]:
        """Queue a run on a new thread saying ``text`` (``run_options``: the run's own parameters), execute
        it here; the run as stored and its events."""
        async with self.db.write() as conn:
            asst = await assistants.create(conn, self.project, CreateAssistant(model="gpt-4o-mini", **assistant))
            thread, _ = await threads.create_with_messages(
                conn, self.project, CreateThread(messages=[{"role": "user", "content": text}]))
            asked = CreateRun(assistant_id=asst["id"], **(run_options or {}))
            queued = await runs.create(conn, self.project, thread["id"], asked, Outbox())
        run = queued.run
        events: list[Event] = []
        sub = await self.bus.subscribe(run_channel(run["id"]))
        await RunExecutor(self.db, self.bus, self.model, run["id"], self.project).execute()  # type: ignore[arg-type]
        while (event := sub.ready()) is not None:
            events.append(event)
        await sub.close()
        async with self.db.read() as conn:
            stored = await runs.get(conn, self.project, thread["id"], run["id"])
        assert stored is not None
        return stored, events

    async def steps(self, run_id: str) -> list[dict[str, Any]]:
        async with self.db.read() as conn:
            return await list_run_steps(conn, run_id)

    async def answer(self, thread_id: str) -> str:
        async with self.db.read() as conn:
            page = await messages.list_page(conn, self.project, thread_id, _all())
        said = [m for m in map(orjson.loads, page.items) if m["role"] == "assistant"]
        return "".join(p["text"]["value"] for m in said for p in m["content"] if p["type"] == "text")


def _all() -> Any:
    from assistd.pagination import PageParams

    return PageParams(limit=100, order="asc", after=None, before=None)


@pytest.fixture
def engine(tmp_path: Path) -> Callable[[Callable[[Engine], Awaitable[None]]], None]:
    def run(test: Callable[[Engine], Awaitable[None]]) -> None:
        async def main() -> None:
            e = Engine(tmp_path / "engine.db")
            await e.start()
            try:
                await test(e)
            finally:
                await e.db.close()

        asyncio.run(asyncio.wait_for(main(), 30))

    return run


def names(events: list[Event]) -> list[str]:
    out: list[str] = []
    for e in events:
        if not (out and e.name == out[-1] == "thread.message.delta"):
            out.append(e.name)
    return out


def test_a_text_answer_completes_with_its_message_and_step(engine):
    async def test(e: Engine) -> None:
        run, events = await e.run("hello [reply: all good here]")
        assert run["status"] == "completed" and run["usage"]["total_tokens"] > 0
        assert names(events) == [
            "thread.run.in_progress", "thread.run.step.created", "thread.run.step.in_progress",
            "thread.message.created", "thread.message.in_progress", "thread.message.delta",
            "thread.message.completed", "thread.run.step.completed", "thread.run.completed"]
        (step,) = await e.steps(run["id"])
        assert step["type"] == "message_creation" and step["status"] == "completed"
        assert await e.answer(run["thread_id"]) == "all good here"

    engine(test)


def test_a_client_tool_call_stops_in_requires_action(engine):
    async def test(e: Engine) -> None:
        run, events = await e.run('weather? [tool: get_weather {"city": "Oslo"}]', tools=[WEATHER])
        assert run["status"] == "requires_action"
        (call,) = run["required_action"]["submit_tool_outputs"]["tool_calls"]
        assert call["function"] == {"name": "get_weather", "arguments": '{"city":"Oslo"}'}
        assert names(events)[-1] == "thread.run.requires_action"
        (step,) = await e.steps(run["id"])
        assert step["type"] == "tool_calls" and step["status"] == "in_progress"

    engine(test)


def test_the_completion_token_limit_makes_the_run_incomplete(engine):
    async def test(e: Engine) -> None:
        run, _ = await e.run("go on [length]")
        assert run["status"] == "incomplete"
        assert run["incomplete_details"] == {"reason": "max_completion_tokens"}

    engine(test)


def test_an_upstream_error_fails_the_run_and_a_passing_one_is_retried(engine):
    async def test(e: Engine) -> None:
        run, events = await e.run("boom [error: 400]")
        assert run["status"] == "failed" and run["last_error"]["code"] == "invalid_prompt"
        assert names(events)[-1] == "thread.run.failed"
        run, _ = await e.run("once [error-once: 503] [reply: fine]")
        assert run["status"] == "completed" and await e.answer(run["thread_id"]) == "fine"

    engine(test)


def test_an_upstream_count_over_max_prompt_tokens_makes_the_run_incomplete(engine):
    async def test(e: Engine) -> None:
        run, events = await e.run("hi [usage: prompt=5000] [reply: fine]", run_options={"max_prompt_tokens": 1000})
        assert run["status"] == "incomplete" and run["incomplete_details"] == {"reason": "max_prompt_tokens"}
        (step,) = await e.steps(run["id"])  # what the model said is kept
        assert step["type"] == "message_creation" and step["status"] == "completed"
        assert await e.answer(run["thread_id"]) == "fine"
        assert names(events)[-1] == "thread.run.incomplete"

    engine(test)


class ClockTool:
    """A third server-side tool, written as any would be (runner/server_tools.py): offered on every call,
    it answers the time it was asked for, recorded as one completed step."""

    kind = "clock"

    def __init__(self, scope: RunScope, engines: ToolEngines) -> None:
        self.scope = scope
        self.calls: dict[int, dict[str, Any]] = {}
        self.entries: list[dict[str, Any]] = []

    def plan(self, run: dict[str, Any], steps: list[dict[str, Any]]) -> Offer:
        self.calls, self.entries = {}, []
        function = {"type": "function", "function": {"name": "clock", "parameters": {"type": "object"}}}
        return Offer(self.kind, "clock", function, forcible=False)

    def replay(self, entry: dict[str, Any]) -> tuple[dict[str, Any], str]:
        asked = entry["clock"]["asked"]
        call = {"id": entry["id"], "type": "function", "function": {"name": "clock", "arguments": asked}}
        return call, entry["clock"]["time"]

    async def on_delta(self, delta: ToolCallDelta, *, taken: bool) -> bool:
        if delta.index not in self.calls:
            if taken or delta.name != "clock":
                return False
            self.calls[delta.index] = {"id": delta.id, "type": "clock", "clock": {"asked": "", "time": ""}}
        self.calls[delta.index]["clock"]["asked"] += delta.arguments
        return True

    def called(self) -> bool:
        return bool(self.entries)

    def open_step(self) -> None:
        return None

    async def execute(self) -> None:
        for call in self.calls.values():
            call["clock"]["time"] = "12:00 in " + orjson.loads(call["clock"]["asked"])["tz"]
        self.entries = list(self.calls.values())

    async def record(self, rec: Recording) -> Recorded:
        if not self.entries or rec.run["status"] == "cancelling" or rec.over_prompt:
            return Recorded()
        step = new_step(rec.run, "tool_calls", {"type": "tool_calls", "tool_calls": self.entries})
        set_step_status(step, "completed", usage=rec.take_usage())
        await insert_step(rec.conn, self.scope.project_id, step)
        rec.outbox.add("thread.run.step.created", step)
        rec.outbox.add("thread.run.step.completed", step)
        return Recorded(executed=True)

    def take_answer_parts(self) -> list[dict[str, Any]]:
        return []

    def annotate(self, text: str) -> list[dict[str, Any]]:
        return []


def test_a_third_server_tool_is_one_class_and_its_registration(engine, monkeypatch):
    monkeypatch.setattr(tool_set, "SERVER_TOOLS", (*tool_set.SERVER_TOOLS, ClockTool))

    async def test(e: Engine) -> None:
        run, events = await e.run('time? [tool: clock {"tz": "UTC"}]')
        assert run["status"] == "completed"
        assert e.model.requests[0]["tools"][-1]["function"]["name"] == "clock"
        clock, answer = await e.steps(run["id"])
        assert clock["status"] == "completed" and clock["usage"]["total_tokens"] > 0
        assert clock["step_details"]["tool_calls"][0]["clock"]["time"] == "12:00 in UTC"
        assert answer["type"] == "message_creation"
        # The model read the tool's output back as the call it made and its result.
        assert await e.answer(run["thread_id"]) == "tool results: 12:00 in UTC"
        assert names(events)[-1] == "thread.run.completed"

    engine(test)


# --- the instrumentation's memory (observability/runs.py) ----------------------------------------------

def _tracked() -> dict[str, int]:
    return {name: len(getattr(observe_runs, name)) for name in
            ("_executions", "_step_started", "_projects", "_queued_at", "_ended", "_marks")}


@pytest.fixture
def fresh_instrumentation(monkeypatch):
    for name in ("_executions", "_step_started", "_projects", "_queued_at", "_marks"):
        monkeypatch.setattr(observe_runs, name, {})
    monkeypatch.setattr(observe_runs, "_ended", set())
    # Restored after the test, whatever the test sets them to.
    monkeypatch.setattr(metrics, "ENABLED", metrics.ENABLED)
    monkeypatch.setattr(metrics, "PROJECT_LABEL", metrics.PROJECT_LABEL)


async def _every_kind_of_run(e: Engine) -> None:
    """One of each: answered, failed, waiting on the client and never answered, answered after the client's
    outputs (submitted as the API would, then executed again), cancelled before it started."""
    assert (await e.run("hello [reply: fine]"))[0]["status"] == "completed"
    assert (await e.run("boom [error: 400]"))[0]["status"] == "failed"
    assert (await e.run('[tool: get_weather {"city": "Oslo"}]', tools=[WEATHER]))[0]["status"] == "requires_action"
    run, _ = await e.run('[tool: get_weather {"city": "Rome"}]', tools=[WEATHER])
    (call,) = run["required_action"]["submit_tool_outputs"]["tool_calls"]
    async with e.db.write() as conn:
        await runs.submit_tool_outputs(conn, e.project, run["thread_id"], run["id"], SubmitToolOutputs(
            tool_outputs=[{"tool_call_id": call["id"], "output": "sunny"}]), Outbox())
    await RunExecutor(e.db, e.bus, e.model, run["id"], e.project).execute()  # type: ignore[arg-type]
    async with e.db.write() as conn:
        asst = await assistants.create(conn, e.project, CreateAssistant(model="gpt-4o-mini"))
        thread = await threads.create(conn, e.project, CreateThread())
        queued = await runs.create(conn, e.project, thread["id"], CreateRun(assistant_id=asst["id"]), Outbox())
        await runs.cancel(conn, e.project, thread["id"], queued.run["id"], Outbox())
    await RunExecutor(e.db, e.bus, e.model, queued.run["id"], e.project).execute()  # type: ignore[arg-type]
    async with e.db.read() as conn:
        assert (await runs.get(conn, e.project, thread["id"], queued.run["id"]) or {})["status"] == "cancelled"


@pytest.mark.parametrize("metrics_on,project_label", [(True, True), (True, False), (False, False)])
def test_the_instrumentation_keeps_nothing_of_runs_that_ended_or_left(engine, fresh_instrumentation,
                                                                       metrics_on, project_label):
    """What observability/runs.py notes of a run or step (its project, queue time, step starts, marks) goes
    when the run ends or its execution does — metrics on or off — so a worker's tables do not grow with runs."""
    metrics.configure(metrics_on, project_label)

    async def test(e: Engine) -> None:
        for _ in range(5):
            await _every_kind_of_run(e)
            assert _tracked() == dict.fromkeys(_tracked(), 0)

    engine(test)


def test_runs_queued_here_and_executed_elsewhere_are_remembered_up_to_the_bound(engine, fresh_instrumentation,
                                                                                 monkeypatch):
    """An API-only serve queues runs that workers start and end: their queue time and project stay here until
    dropped, oldest first, at the bound."""
    monkeypatch.setattr(observe_runs, "_MAX_TRACKED", 3)

    async def test(e: Engine) -> None:
        async with e.db.write() as conn:
            asst = await assistants.create(conn, e.project, CreateAssistant(model="gpt-4o-mini"))
            created = []
            for _ in range(7):
                thread = await threads.create(conn, e.project, CreateThread())
                queued = await runs.create(conn, e.project, thread["id"], CreateRun(assistant_id=asst["id"]), Outbox())
                created.append(queued.run["id"])
        assert list(observe_runs._queued_at) == created[-3:] and list(observe_runs._projects) == created[-3:]

    engine(test)
