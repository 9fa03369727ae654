"""What one model call of a run holds from its first delta until its outcome is recorded. The executor
(runner/execute.py) starts each turn with a new one, so nothing of a turn leaks into the next."""

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
    # file_search calls (by upstream index), executed once the model's answer is complete.
    search_calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    # code_interpreter calls (entries, by upstream index), their step, and whether they were executed.
    code_calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    code_step: dict[str, Any] | None = None
    code_ran: bool = False
