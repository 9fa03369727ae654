"""What one model call of a run holds from its first delta until its outcome is recorded: the answer and
the client function calls streamed so far, and what an interrupted attempt of it left. The executor
(runner/execute.py) starts each call with a new one, so nothing of a call leaks into the next (the server
tools keep their calls of the call themselves, renewed by their ``plan``: runner/server_tools.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Turn:
    # In-progress steps an interrupted attempt of this turn left, by kind: reused, never duplicated.
    orphans: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The answer being streamed, its step, its text so far and the index of its text part (after its
    # images): kept so that a cancel can store what was said so far.
    message: dict[str, Any] | None = None
    message_step: dict[str, Any] | None = None
    text: list[str] = field(default_factory=list)
    text_index: int = 0
    # Client function calls streamed so far (by upstream index) and their step.
    calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    tool_step: dict[str, Any] | None = None
