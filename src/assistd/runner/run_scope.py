"""What every part of one execution of a run shares: the run as last read, where it is stored, where its
events go, and the model router — handed to the answer, the client calls and each server tool."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from assistd.events.base import Event, EventBus, run_channel
from assistd.providers.router import ModelRouter
from assistd.services.outbox import Outbox
from assistd.services.run_objects import new_step
from assistd.services.runs import insert_step
from assistd.services.step_render import shown
from assistd.store.db import Database


@dataclass
class RunScope:
    db: Database
    bus: EventBus
    router: ModelRouter
    run_id: str
    project_id: str
    run: dict[str, Any] = field(default_factory=dict)  # as this execution last read or wrote it

    async def publish(self, name: str, data: dict[str, Any]) -> None:
        """An event of the run, published now (a delta: stored only when its step completes)."""
        await self.bus.publish(run_channel(self.run_id), Event(name, data))

    async def open_tool_step(self, tool_calls: list[dict[str, Any]]) -> dict[str, Any]:
        """A tool_calls step inserted in_progress in a transaction of its own, announced once committed."""
        outbox = Outbox(self.run_id)
        async with self.db.write() as conn:
            step = new_step(self.run, "tool_calls", {"type": "tool_calls", "tool_calls": tool_calls})
            await insert_step(conn, self.project_id, step)
            outbox.add("thread.run.step.created", shown(step))
            outbox.add("thread.run.step.in_progress", shown(step))
        await outbox.flush(self.bus)
        return step
