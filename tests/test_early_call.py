"""A head start's first model call is sent from the transaction that creates the run (runner/early_call.py):
the run's executor takes it over after the commit, and a transaction that rolls back closes it unread.

In this process: a SQLite file, the in-memory bus, the scripted model, the worker pool and the launcher
as the API routes use them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import pytest

from assistd.events.base import Event, Subscription
from assistd.events.memory import MemoryBus
from assistd.providers.base import ChatEvent, ChatRequest, Finish, ProviderError, TextDelta
from assistd.providers.scripted import ScriptedProvider
from assistd.runner.early_call import EarlyCall
from assistd.runner.launcher import Queued, RunLauncher
from assistd.runner.pool import WorkerPool
from assistd.schemas.assistants import CreateAssistant
from assistd.schemas.runs import CreateThreadAndRun
from assistd.services import assistants, runs
from assistd.services.outbox import Outbox
from assistd.services.runs import Lease
from assistd.store import keys
from assistd.store.db import Database
from assistd.store.migrate import migrate


class Upstream:
    """A stream of two text deltas whose first waits for ``release``; notes whether it was closed."""

    def __init__(self, fail: bool = False) -> None:
        self.release = asyncio.Event()
        self.closed = False
        self.fail = fail

    async def stream(self) -> AsyncGenerator[ChatEvent, None]:
        try:
            await self.release.wait()
            if self.fail:
                raise ProviderError("server_error", "no")
            yield TextDelta("a")
            yield TextDelta("b")
            yield Finish("stop")
        finally:
            self.closed = True


async def _drain(events: AsyncGenerator[ChatEvent, None]) -> list[ChatEvent]:
    return [event async for event in events]


def test_the_events_come_whole_and_in_order() -> None:
    async def main() -> None:
        upstream = Upstream()
        call = EarlyCall(upstream.stream())
        upstream.release.set()
        assert await _drain(call.events()) == [TextDelta("a"), TextDelta("b"), Finish("stop")]
        assert upstream.closed

    asyncio.run(main())


def test_an_upstream_error_reaches_the_consumer() -> None:
    async def main() -> None:
        upstream = Upstream(fail=True)
        call = EarlyCall(upstream.stream())
        upstream.release.set()
        with pytest.raises(ProviderError):
            await _drain(call.events())

    asyncio.run(main())


def test_an_abandoned_call_is_closed_before_or_after_its_first_event() -> None:
    async def main() -> None:
        waiting = Upstream()
        EarlyCall(waiting.stream()).abandon()  # still waiting for the upstream
        answered = Upstream()
        answered.release.set()
        call = EarlyCall(answered.stream())
        await asyncio.sleep(0.01)  # its first event is in: the stream waits at it
        call.abandon()
        await asyncio.sleep(0.01)
        assert waiting.closed and answered.closed

    asyncio.run(main())


def test_a_consumer_cancelled_while_waiting_cancels_the_call() -> None:
    async def main() -> None:
        upstream = Upstream()
        call = EarlyCall(upstream.stream())
        consumer = asyncio.create_task(_drain(call.events()))
        await asyncio.sleep(0.01)
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer
        assert upstream.closed

    asyncio.run(main())


class CountingModel(ScriptedProvider):
    """The scripted model, counting the calls sent and those closed."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = self.closed = 0

    async def stream_chat(self, request: ChatRequest) -> AsyncGenerator[ChatEvent, None]:
        self.sent += 1
        try:
            async for event in super().stream_chat(request):
                yield event
        finally:
            self.closed += 1


class FailingSubscribe(MemoryBus):
    """A bus that cannot subscribe: the streamed create's transaction fails after the run is reserved."""

    async def subscribe(self, channel: str) -> Subscription:
        raise RuntimeError("no subscription")


async def _create(tmp: Path, bus: MemoryBus, stream: bool) -> tuple[CountingModel, Database, WorkerPool, Any]:
    db = Database(f"sqlite:///{tmp / 'engine.db'}", pool_size=2)
    await migrate(db)
    async with db.write() as conn:
        project = await keys.ensure_project(conn, "inprocess")
        assistant = await assistants.create(conn, project, CreateAssistant(model="gpt-4o-mini"))
    model = CountingModel()
    pool = WorkerPool(db, bus, model, concurrency=2)  # type: ignore[arg-type]
    launcher = RunLauncher(db, bus, pool)
    req = CreateThreadAndRun.model_validate({"assistant_id": assistant["id"], "stream": stream,
                                             "thread": {"messages": [{"role": "user", "content": "[reply: hi]"}]}})

    async def action(conn: Any, outbox: Outbox, lease: Lease | None) -> Queued:
        _, queued, messages = await runs.create_thread_and_run(conn, project, req, outbox, 600, lease)
        return queued, [], messages

    return model, db, pool, launcher.queue(project, action, stream=stream)


def test_a_head_start_sends_its_first_call_once_and_completes(tmp_path: Path) -> None:
    async def main() -> None:
        model, db, pool, queued = await _create(tmp_path, MemoryBus(), stream=True)
        launched = await queued
        seen: list[Event] = []
        assert launched.events is not None
        while (event := await launched.events.get(timeout=5)) is not None:
            seen.append(event)
            if event.name == "thread.run.completed":
                break
        await launched.events.close()
        while pool.active:
            await asyncio.sleep(0.01)
        names = [e.name for e in seen]
        assert names[:4] == ["thread.created", "thread.run.created", "thread.run.queued", "thread.run.in_progress"]
        assert "".join(e.data["delta"]["content"][0]["text"]["value"] for e in seen
                       if e.name == "thread.message.delta") == "hi"
        assert model.sent == model.closed == 1
        await db.close()

    asyncio.run(asyncio.wait_for(main(), 30))


def test_a_rolled_back_head_start_closes_its_first_call(tmp_path: Path) -> None:
    async def main() -> None:
        model, db, pool, queued = await _create(tmp_path, FailingSubscribe(), stream=True)
        with pytest.raises(RuntimeError):
            await queued
        for _ in range(100):
            if model.closed:
                break
            await asyncio.sleep(0.01)
        assert model.sent == model.closed == 1 and pool.active == 0
        async with db.read() as conn:
            assert (await conn.exec_driver_sql("SELECT count(*) FROM runs")).scalar() == 0
        await db.close()

    asyncio.run(asyncio.wait_for(main(), 30))
