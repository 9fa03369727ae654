"""api/sse.run_events on its own: events queued behind one go out in the same write, and none is lost when
the wait times out in the same loop turn as they arrive (a busy server) or when the stream falls back to
the stored run."""

from __future__ import annotations

import asyncio

import pytest

from assistd.api import sse
from assistd.events.base import Event
from assistd.events.memory import MemoryBus


def _names(chunks: list[bytes]) -> list[str]:
    text = b"".join(chunks).decode()
    return [line[len("event: "):] for line in text.split("\n") if line.startswith("event: ")]


async def _collect(gen) -> list[bytes]:  # noqa: ANN001
    return [chunk async for chunk in gen]


def test_queued_events_go_out_together_and_stop_at_the_run_end():
    async def main() -> list[bytes]:
        bus = MemoryBus()
        sub = await bus.subscribe("run:r")
        for name in ("thread.run.created", "thread.run.queued", "thread.run.in_progress",
                     "thread.run.completed", "thread.run.step.created"):
            await bus.publish("run:r", Event(name, {"id": "r"}))
        return await _collect(sse.run_events(sub, lambda: None))  # type: ignore[arg-type]

    chunks = asyncio.run(main())
    assert _names(chunks) == ["thread.run.created", "thread.run.queued", "thread.run.in_progress",
                              "thread.run.completed", "done"]
    assert len(chunks) == 2  # the four events in one write, then done


def test_events_are_not_lost_when_every_wait_times_out(monkeypatch: pytest.MonkeyPatch):
    """A loop so busy that each wait's timeout fires in the turn an event arrives: the wait reports nothing,
    the events are in the queue all the same, and the stored run is already completed."""
    monkeypatch.setattr(sse, "KEEPALIVE_SECONDS", 0.0)

    async def main() -> list[bytes]:
        bus = MemoryBus()
        sub = await bus.subscribe("run:r")

        async def timed_out(timeout: float | None = None) -> None:
            return None

        sub.get = timed_out  # type: ignore[method-assign]
        for name in ("thread.message.created", "thread.message.delta", "thread.run.completed"):
            await bus.publish("run:r", Event(name, {"id": "r"}))

        async def load_run() -> dict:
            return {"id": "r", "status": "completed"}

        return await _collect(sse.run_events(sub, load_run))

    assert _names(asyncio.run(main())) == ["thread.message.created", "thread.message.delta",
                                            "thread.run.completed", "done"]


def test_fallback_sends_queued_events_before_the_stored_state(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(sse, "KEEPALIVE_SECONDS", 0.0)

    async def main() -> list[bytes]:
        bus = MemoryBus()
        sub = await bus.subscribe("run:r")
        seen = 0

        async def get(timeout: float | None = None) -> None:
            return None

        sub.get = get  # type: ignore[method-assign]

        async def load_run() -> dict:
            nonlocal seen
            seen += 1
            # events (without the run's last one) arrive while the stored run is read
            await bus.publish("run:r", Event("thread.message.delta", {"id": "m"}))
            return {"id": "r", "status": "completed"}

        return await _collect(sse.run_events(sub, load_run))

    names = _names(asyncio.run(main()))
    assert names == ["thread.message.delta", "thread.run.completed", "done"]
