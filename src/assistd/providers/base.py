"""What the run engine sees of a model upstream: a request, a stream of events, one error type.

A provider turns a :class:`ChatRequest` into an async iterator of :data:`ChatEvent` in upstream
order: any number of :class:`TextDelta` / :class:`ToolCallDelta`, then one :class:`Finish`, then
exactly one :class:`Usage`. Every upstream failure surfaces as :class:`ProviderError`.

Consume it with ``contextlib.aclosing`` (or run it inside a task that may be cancelled) so the
HTTP stream is released as soon as you stop reading, not when the generator is garbage-collected::

    async with aclosing(provider.stream_chat(request)) as events:
        async for event in events:
            ...
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeAlias

ProviderErrorCode: TypeAlias = Literal["server_error", "rate_limit_exceeded", "invalid_prompt"]


@dataclass(frozen=True, slots=True)
class ChatRequest:
    model: str  # the model name the assistant/run asked for; the router maps it to an upstream name
    messages: list[dict[str, Any]]  # OpenAI chat messages (system/user/assistant with tool_calls/tool)
    tools: list[dict[str, Any]] | None = None  # chat-completions tool definitions
    tool_choice: str | dict[str, Any] | None = None  # "none" | "auto" | "required" | {"type": "function", ...}
    parallel_tool_calls: bool | None = None
    temperature: float | None = None
    top_p: float | None = None
    # Sent upstream as ``max_tokens`` (not ``max_completion_tokens``): vLLM, Ollama and llama.cpp all
    # understand it, while several of them ignore or reject the newer name.
    max_tokens: int | None = None
    response_format: dict[str, Any] | None = None  # passed through (json_object, json_schema)
    reasoning_effort: str | None = None


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    index: int  # which parallel call this piece belongs to; pieces of one call share it
    id: str | None  # usually only on the first piece of a call
    name: str | None  # usually only on the first piece of a call
    arguments: str  # a piece of the JSON arguments text ("" allowed)


@dataclass(frozen=True, slots=True)
class Finish:
    reason: str  # "stop" | "length" | "tool_calls" | "content_filter" (as the upstream said)


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int


ChatEvent: TypeAlias = TextDelta | ToolCallDelta | Finish | Usage


class ProviderError(Exception):
    """An upstream failure, already classified for the run's ``last_error``."""

    def __init__(self, code: ProviderErrorCode, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code: ProviderErrorCode = code
        self.message = message
        self.status = status  # the upstream HTTP status, when there was one

    def __repr__(self) -> str:
        return f"ProviderError(code={self.code!r}, message={self.message!r}, status={self.status!r})"


class ChatProvider(Protocol):
    # Declared without ``async``: implementations are ``async def`` generators, which a type checker
    # sees as plain functions returning an AsyncGenerator — closable, so call sites wrap it in ``aclosing``.
    def stream_chat(self, request: ChatRequest) -> AsyncGenerator[ChatEvent, None]: ...

    async def aclose(self) -> None: ...
