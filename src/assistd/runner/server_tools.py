"""The interface of a server-side tool (file_search, code_interpreter): a tool the model calls like a
function, that the server executes and records as a ``tool_calls`` step, the model then reading its
outputs in its next call. The executor, the request builder and the endings handle them as one list
(runner/tool_set.py, where each kind is registered), never by name.

A tool object lives for one execution of a run. It keeps what it needs of the run (``plan`` reads it from
the run's steps at each model call: file_search's citable sources, code_interpreter's written files) and
its calls of the current model call, renewed by ``plan``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from assistd.providers.base import ToolCallDelta
from assistd.services.outbox import Outbox
from assistd.services.run_objects import usage

if TYPE_CHECKING:
    from assistd.runner.run_scope import RunScope
    from assistd.services.vector_search import Retrieval
    from assistd.tools.code_tool import CodeTool


@dataclass(frozen=True)
class Offer:
    """A server tool as the model is offered it on one call."""

    kind: str  # the tool's type (in a run's tools, its tool_choice, and its calls' entries in steps)
    name: str  # the chat function's name on this call
    function: dict[str, Any]  # the chat-completions tool definition
    forcible: bool  # a tool_choice naming this kind still forces it (only its first call in a run is forced)


@dataclass(frozen=True)
class ToolEngines:
    """What this process gives server tools to execute with; None where it has none (the tool is then not
    offered, though what earlier calls left — citations, written files — still counts)."""

    retrieval: Retrieval | None = None  # file_search: the index and the embedder
    code: CodeTool | None = None  # code_interpreter: the sandboxed Python sessions


class ToolFailed(Exception):
    """The tool could not execute its calls: the run fails (server_error) with ``message``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class Recording:
    """One model call's outcome being recorded, in one transaction: the run (locked), its after-commit
    events, whether the call went over ``max_prompt_tokens``, and the call's usage, which the first step
    recorded takes (``take_usage``) so that it is counted once."""

    conn: AsyncConnection
    run: dict[str, Any]
    outbox: Outbox
    usage: dict[str, int]
    over_prompt: bool = False

    def take_usage(self) -> dict[str, int]:
        taken, self.usage = self.usage, usage(0, 0)
        return taken


@dataclass(frozen=True)
class Recorded:
    """What a tool's ``record`` left: ``executed``, its calls ran (the model reads their outputs next);
    ``unexecuted``, a step it opened whose calls did not run (cancelled if the run ends now)."""

    executed: bool = False
    unexecuted: dict[str, Any] | None = None


Replay = Callable[[dict[str, Any]], tuple[dict[str, Any], str]]  # a stored entry → the model's call, its output


class ServerTool(Protocol):
    kind: str

    def plan(self, run: dict[str, Any], steps: list[dict[str, Any]]) -> Offer | None:
        """Start a model call: read what the run's earlier calls left; how it is offered (None: not)."""

    def replay(self, entry: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """A stored call of this kind as the model made it (a chat tool call) and the output it read."""

    async def on_delta(self, delta: ToolCallDelta, *, taken: bool) -> bool:
        """Take the streamed piece if it belongs to one of this tool's calls (``taken``: its index is a
        client function call's); False when it is not this tool's."""

    def called(self) -> bool:
        """Whether the model called it on this call (then it did not only answer in text)."""

    def open_step(self) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        """The step it opened while the model streamed, if any, with its calls as streamed or executed so
        far (what closes it if the run ends meanwhile)."""

    async def execute(self) -> None:
        """Run this call's calls, before its outcome is recorded; raises ``ToolFailed``."""

    async def record(self, rec: Recording) -> Recorded:
        """Write its step(s) of this call into ``rec``."""

    def take_answer_parts(self) -> list[dict[str, Any]]:
        """Content parts that open the run's next answer (code_interpreter's images), taken once."""

    def annotate(self, text: str) -> list[dict[str, Any]]:
        """Annotations of an answer's text that point at what the tool gave (citations, file links)."""


ToolFactory = Callable[["RunScope", ToolEngines], ServerTool]
