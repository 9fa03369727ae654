"""An in-process scripted model: the dev upstream's planner (devupstream/script.py) behind the provider
interface, with no HTTP and no subprocess — so the executor's logic can be tested in milliseconds.

Same directives as the dev upstream (``[tool: name {...}]``, ``[tokens: n]``, ``[length]``, ``[error: 500]``…),
the same cutting of a reply into deltas, the same usage counts. Errors map as the OpenAI-compatible provider
maps the upstream's HTTP statuses; retryable ones are retried at once, as that provider would after a pause.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

from assistd.devupstream.script import OnceRegistry, plan_reply, reply_deltas, stream_cut_at
from assistd.providers.base import ChatEvent, ChatRequest, Finish, ProviderError, TextDelta, ToolCallDelta, Usage
from assistd.providers.openai_compat import request_params

ATTEMPTS = 3


def _error(status: int) -> tuple[ProviderError, bool]:
    """The error the OpenAI-compatible provider raises for ``status``, and whether it retries."""
    if status == 429:
        return ProviderError("rate_limit_exceeded", "Rate limit reached (scripted).", status), True
    if status in (400, 413, 422):
        return ProviderError("invalid_prompt", f"Scripted error {status}.", status), False
    retryable = status >= 500 or status in (408, 409)
    return ProviderError("server_error", f"upstream answered HTTP {status}: scripted", status), retryable


class ScriptedProvider:
    def __init__(self, *, context_window: int = 128_000) -> None:
        self.once = OnceRegistry()
        self.window = context_window
        self.requests: list[dict[str, Any]] = []  # the request bodies, as the real provider would send them

    async def stream_chat(self, request: ChatRequest) -> AsyncGenerator[ChatEvent, None]:
        body = request_params(request, request.model)
        for attempt in range(ATTEMPTS):
            self.requests.append(body)
            reply = plan_reply(body, self.once)
            if reply.delay:
                await asyncio.sleep(reply.delay)
            if reply.error_status is None:
                break
            error, retryable = _error(reply.error_status)
            if not retryable or attempt + 1 == ATTEMPTS:
                raise error
        deltas = reply_deltas(reply)
        cut_at = stream_cut_at(reply, deltas)
        for i, delta in enumerate(deltas):
            if i and reply.chunk_delay:
                await asyncio.sleep(reply.chunk_delay)
            if i == cut_at:
                raise ProviderError("server_error", "the connection to the model upstream broke mid-stream")
            if delta.get("content"):
                yield TextDelta(delta["content"])
            for call in delta.get("tool_calls", ()):
                function = call.get("function") or {}
                yield ToolCallDelta(call["index"], call.get("id"), function.get("name"), function.get("arguments", ""))
        yield Finish(reply.finish_reason)
        yield Usage(reply.prompt_tokens, reply.completion_tokens)

    # The router's part, so that the executor can take this provider as its router in tests.
    def provider_for(self, model: str) -> ScriptedProvider:
        return self

    def context_window(self, model: str) -> int:
        return self.window

    async def aclose(self) -> None:
        pass
