"""Client function calls as the model streams them: one ``tool_calls`` step per model call, shown call by
call, after which the run waits on the client for their outputs (``requires_action``)."""

from __future__ import annotations

from typing import Any

from assistd import ids
from assistd.providers.base import ToolCallDelta
from assistd.runner.run_scope import RunScope
from assistd.runner.turn import Turn
from assistd.services.run_objects import tool_call_delta


async def _ensure_step(scope: RunScope, turn: Turn) -> dict[str, Any]:
    if turn.tool_step is not None:
        return turn.tool_step
    orphan = turn.orphans.pop("tool_calls", None)
    if orphan is not None:  # adopted: its calls are rewritten by this attempt's
        orphan["step_details"]["tool_calls"] = []
        turn.tool_step = orphan
        return orphan
    turn.tool_step = await scope.open_tool_step([])
    return turn.tool_step


async def on_delta(scope: RunScope, turn: Turn, delta: ToolCallDelta) -> None:
    """A piece of a client call, published as a step delta at once."""
    step = await _ensure_step(scope, turn)
    calls = turn.calls
    call = calls.get(delta.index)
    if call is None:
        call = {"id": delta.id or ids.new_id("tool_call"), "type": "function",
                "function": {"name": delta.name or "", "arguments": "", "output": None}}
        calls[delta.index] = call
        piece: dict[str, Any] = {"id": call["id"], "type": "function",
                                 "function": {"name": call["function"]["name"],
                                              "arguments": delta.arguments, "output": None}}
    else:
        if delta.name and not call["function"]["name"]:
            call["function"]["name"] = delta.name
        piece = {"type": "function", "function": {"arguments": delta.arguments}}
    call["function"]["arguments"] += delta.arguments
    index = list(calls).index(delta.index)
    await scope.publish("thread.run.step.delta", tool_call_delta(step["id"], index, piece))


def required_action(turn: Turn) -> dict[str, Any]:
    """What the client is asked for: an output for each of the turn's calls."""
    tool_calls = [{"id": c["id"], "type": "function",
                   "function": {"name": c["function"]["name"], "arguments": c["function"]["arguments"]}}
                  for c in turn.calls.values()]
    return {"type": "submit_tool_outputs", "submit_tool_outputs": {"tool_calls": tool_calls}}
