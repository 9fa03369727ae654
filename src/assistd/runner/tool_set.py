"""The server tools of one run's execution, in the order they are registered here, and what the executor
asks of them together: their offers, the owner of a streamed call, execution, recording, and what they
add to an answer. A new server-side tool is a ``ServerTool`` module plus its line in ``SERVER_TOOLS``."""

from __future__ import annotations

from typing import Any

from assistd.providers.base import ToolCallDelta
from assistd.runner.code_steps import CodeInterpreterSteps
from assistd.runner.run_scope import RunScope
from assistd.runner.search_steps import FileSearchSteps
from assistd.runner.server_tools import Offer, Recorded, Recording, Replay, ServerTool, ToolEngines, ToolFactory

# Every server tool, in the order the model is offered them.
SERVER_TOOLS: tuple[ToolFactory, ...] = (
    FileSearchSteps,
    CodeInterpreterSteps,
)


class ToolSet:
    def __init__(self, scope: RunScope, engines: ToolEngines) -> None:
        self.tools: list[ServerTool] = [make(scope, engines) for make in SERVER_TOOLS]
        # A stored call of each kind as the model made it, and its output: how the transcript replays it.
        self.replays: dict[str, Replay] = {tool.kind: tool.replay for tool in self.tools}

    def plan(self, run: dict[str, Any], steps: list[dict[str, Any]]) -> list[Offer]:
        """Start a model call: what each tool finds of the run so far; the tools offered on it."""
        offers = [tool.plan(run, steps) for tool in self.tools]
        return [offer for offer in offers if offer is not None]

    def owner_of(self, step: dict[str, Any]) -> str | None:
        """The kind of server tool whose calls ``step`` holds (None: an answer, or client calls)."""
        if step.get("type") != "tool_calls":
            return None
        kinds = {call.get("type") for call in step["step_details"]["tool_calls"]}
        return next((tool.kind for tool in self.tools if tool.kind in kinds), None)

    async def on_delta(self, delta: ToolCallDelta, *, taken: bool) -> bool:
        """Whether a server tool took the streamed piece (``taken``: its index is a client call's)."""
        for tool in self.tools:
            if await tool.on_delta(delta, taken=taken):
                return True
        return False

    def called(self) -> bool:
        return any(tool.called() for tool in self.tools)

    async def execute(self) -> None:
        """Execute the model's calls, tool after tool; raises ``ToolFailed``."""
        for tool in self.tools:
            await tool.execute()

    async def record(self, rec: Recording) -> list[Recorded]:
        """Each tool's steps, in the order they were created: those opened while the model streamed first,
        then those written whole now (so the call's usage goes to the first)."""
        ordered = sorted(self.tools, key=lambda tool: tool.open_step() is None)
        return [await tool.record(rec) for tool in ordered]

    def open_calls(self) -> dict[str, list[dict[str, Any]]]:
        """The steps the tools opened, by id: their calls as streamed or executed so far."""
        opened = (tool.open_step() for tool in self.tools)
        return {step["id"]: calls for step, calls in filter(None, opened)}

    def take_answer_parts(self) -> list[dict[str, Any]]:
        return [part for tool in self.tools for part in tool.take_answer_parts()]

    def annotate(self, text: str) -> list[dict[str, Any]]:
        """Every tool's annotations of an answer's text, in order of appearance."""
        found: list[dict[str, Any]] = []
        for tool in self.tools:
            more = tool.annotate(text)
            if more:
                found = sorted(found + more, key=lambda a: a["start_index"]) if found else more
        return found
