"""A :class:`~assistd.providers.base.ChatProvider` for any OpenAI-compatible ``/chat/completions``.

Works with OpenAI, vLLM, Ollama, llama.cpp and the dev upstream. Choices made for that breadth:

* Always streams, with ``stream_options.include_usage``; when a server still sends no usage, it is
  estimated (about four characters per token) so callers always get exactly one :class:`Usage`.
* Only keys that are set are sent (llama.cpp and others reject unknown ``null``s), ``max_tokens``
  rather than ``max_completion_tokens`` (the name every compatible server understands), and
  ``tool_choice`` / ``parallel_tool_calls`` only alongside a non-empty ``tools`` (OpenAI answers 400
  otherwise).
* Retries are ours, not the SDK's (``max_retries=0`` there): bounded, exponential backoff with
  jitter, honouring ``Retry-After``, on 408/409/429/5xx, timeouts, connection errors and streams
  that break — but only while nothing has been yielded yet, since a retry after output has
  started would duplicate it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import AsyncGenerator, Iterable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import openai
from openai import AsyncOpenAI, AsyncStream, Timeout
from openai._base_client import make_request_options

from assistd.observability.upstream import ModelCall, upstream_label

from .base import ChatEvent, ChatRequest, Finish, ProviderError, TextDelta, ToolCallDelta, Usage

logger = logging.getLogger(__name__)

CHARS_PER_TOKEN = 4  # the usual rule of thumb for English text with BPE tokenizers
_INVALID_PROMPT_STATUSES = frozenset({400, 404, 413, 422})  # context too long, unknown model, bad body
_RETRYABLE_STATUSES = frozenset({408, 409, 429})  # plus every 5xx


class _StreamIncomplete(Exception):
    """The upstream closed the stream cleanly but never said why it finished: treat as a cut."""


class OpenAICompatibleProvider:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        upstream_model: str | None = None,
        max_retries: int = 3,
        timeout: float = 600.0,
        connect_timeout: float = 10.0,
        backoff_base: float = 0.25,
        backoff_max: float = 8.0,
        retry_after_max: float = 60.0,
    ) -> None:
        self.base_url = base_url
        self._upstream = upstream_label(base_url)
        self.upstream_model = upstream_model  # None: send the requested model name unchanged
        self.max_retries = max(0, max_retries)
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.retry_after_max = retry_after_max
        self._client = AsyncOpenAI(
            base_url=base_url,
            # The SDK refuses an empty key; local servers don't care what it is.
            api_key=api_key or "not-needed",
            max_retries=0,
            timeout=Timeout(timeout, connect=connect_timeout),
        )

    async def aclose(self) -> None:
        await self._client.close()

    async def stream_chat(self, request: ChatRequest) -> AsyncGenerator[ChatEvent, None]:
        params = request_params(request, self.upstream_model or request.model)
        attempt = 0
        call = ModelCall(self._upstream, request.model)
        state = _StreamState()
        try:
            while True:
                state = _StreamState()
                try:
                    # The SDK's own request and stream machinery (auth, timeouts, status errors, the SSE decoder,
                    # error events, [DONE]), but chunks as plain dicts: ``chat.completions.create`` runs the
                    # params through its type transform and builds a pydantic chunk per delta, which made up
                    # most of a call's CPU (about 6 ms for a short streamed answer against ~1 ms this way).
                    stream = await self._client.post(
                        "/chat/completions", body=params, cast_to=object, stream=True,
                        stream_cls=AsyncStream[object], options=_REQUEST_OPTIONS)
                    # `async with` closes the HTTP response on every exit: end, error, cancellation of
                    # the consuming task, or the consumer closing this generator at a `yield`.
                    async with stream:
                        async for chunk in stream:
                            for event in state.feed(chunk):
                                state.started = True
                                yield event
                    if state.finish is None:
                        raise _StreamIncomplete("the model upstream's stream ended without a finish_reason")
                except (openai.OpenAIError, _StreamIncomplete, ValueError) as exc:
                    error, retryable, retry_after = classify(exc, started=state.started)
                    if state.finish is not None and isinstance(exc, openai.APIConnectionError):
                        # Cut after the finish chunk: the output is whole, only the usage chunk was lost.
                        logger.warning(
                            "upstream %s: stream cut after finish (%r); usage estimated", self.base_url, exc.__cause__
                        )
                        used = state.usage(request.messages)
                        call.done(used.prompt_tokens, used.completion_tokens)
                        yield used
                        return
                    if not retryable or state.started or attempt >= self.max_retries:
                        call.failed(error.code)
                        raise error from exc
                    delay = self._retry_delay(attempt, retry_after)
                    attempt += 1
                    logger.warning(
                        "upstream %s attempt %d/%d failed (%s: %s); retrying in %.2fs",
                        self.base_url, attempt, self.max_retries + 1, error.code, error.message, delay,
                    )  # fmt: skip
                    call.retried()
                    await asyncio.sleep(delay)
                    continue
                used = state.usage(request.messages)
                call.done(used.prompt_tokens, used.completion_tokens)
                yield used
                return
        finally:
            if not call.ended:  # the consumer stopped reading (a run cancelled): what it cost so far
                used = state.usage(request.messages)
                call.cut(used.prompt_tokens, used.completion_tokens)

    def _retry_delay(self, attempt: int, retry_after: float | None) -> float:
        # Jitter spreads out many runs that failed together (one upstream hiccup hits them all).
        delay = min(self.backoff_max, self.backoff_base * 2**attempt * random.uniform(0.75, 1.25))
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.retry_after_max))
        return delay


_REQUEST_OPTIONS = make_request_options(security={"bearer_auth": True})  # as chat.completions.create


def request_params(request: ChatRequest, model: str) -> dict[str, Any]:
    """The ``chat.completions.create`` keyword arguments for ``request``; unset fields are left out."""
    params: dict[str, Any] = {
        "model": model,
        "messages": request.messages,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    optional: dict[str, Any] = {
        "temperature": request.temperature,
        "top_p": request.top_p,
        "max_tokens": request.max_tokens,
        "response_format": request.response_format,
        "reasoning_effort": request.reasoning_effort,
    }
    if request.tools:
        optional |= {
            "tools": request.tools,
            "tool_choice": request.tool_choice,
            "parallel_tool_calls": request.parallel_tool_calls,
        }
    params.update((key, value) for key, value in optional.items() if value is not None)
    return params


@dataclass(slots=True)
class _StreamState:
    """Turns chunks into events for one attempt and remembers what the final Usage needs."""

    started: bool = False
    finish: str | None = None
    output_chars: int = 0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    def feed(self, chunk: Any) -> list[ChatEvent]:
        """Events of one chunk: a decoded JSON object (the provider's), or an SDK chunk object."""
        events: list[ChatEvent] = []
        usage = _field(chunk, "usage")
        if usage is not None:  # last one wins: some servers repeat running totals
            self.prompt_tokens = _field(usage, "prompt_tokens")
            self.completion_tokens = _field(usage, "completion_tokens")
        choices = _field(chunk, "choices")
        for choice in choices if isinstance(choices, list | tuple) else ():
            if _field(choice, "index", 0) != 0:  # we never ask for n > 1
                continue
            delta = _field(choice, "delta")
            if delta is not None:
                events += self._delta_events(delta)
            reason = _field(choice, "finish_reason")
            if reason and self.finish is None:
                self.finish = "tool_calls" if reason == "function_call" else reason
                events.append(Finish(self.finish))
        return events

    def _delta_events(self, delta: Any) -> list[ChatEvent]:
        events: list[ChatEvent] = []
        text = _field(delta, "content")
        if text:
            self.output_chars += len(text)
            events.append(TextDelta(text))
        calls = _field(delta, "tool_calls")
        for position, call in enumerate(calls if isinstance(calls, list | tuple) else ()):
            function = _field(call, "function")
            name = _field(function, "name")
            arguments = _field(function, "arguments") or ""
            self.output_chars += len(name or "") + len(arguments)
            # Some servers (older Ollama) send whole calls without an index: their list position is it.
            index = _field(call, "index")
            events.append(ToolCallDelta(position if index is None else index, _field(call, "id"), name, arguments))
        legacy = _field(delta, "function_call")  # pre-tools servers: one call, no id
        if legacy is not None:
            arguments = _field(legacy, "arguments") or ""
            name = _field(legacy, "name")
            self.output_chars += len(name or "") + len(arguments)
            events.append(ToolCallDelta(0, None, name, arguments))
        return events

    def usage(self, messages: Iterable[Mapping[str, Any]]) -> Usage:
        prompt = self.prompt_tokens
        if prompt is None:
            prompt = estimate_tokens(sum(map(_message_chars, messages)))
        completion = self.completion_tokens
        if completion is None:
            completion = estimate_tokens(self.output_chars)
        return Usage(prompt_tokens=prompt, completion_tokens=completion)


def _field(obj: Any, name: str, default: Any = None) -> Any:
    """``obj[name]`` of a decoded JSON object, ``obj.name`` of an SDK object; ``default`` when absent."""
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def estimate_tokens(chars: int) -> int:
    return math.ceil(chars / CHARS_PER_TOKEN)


def _message_chars(message: Mapping[str, Any]) -> int:
    content = message.get("content")
    if isinstance(content, str):
        chars = len(content)
    elif isinstance(content, list):
        chars = sum(len(p.get("text") or "") for p in content if isinstance(p, dict))
    else:
        chars = 0
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            chars += len(str(function.get("name") or "")) + len(str(function.get("arguments") or ""))
    return chars


def classify(exc: BaseException, *, started: bool = False) -> tuple[ProviderError, bool, float | None]:
    """(the ProviderError to raise, whether a retry may help, the server's Retry-After in seconds)."""
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        message = _upstream_message(exc)
        if status == 429:
            return ProviderError("rate_limit_exceeded", message, status), True, _retry_after(exc.response.headers)
        if status in _INVALID_PROMPT_STATUSES:
            return ProviderError("invalid_prompt", message, status), False, None
        retryable = status >= 500 or status in _RETRYABLE_STATUSES
        error = ProviderError("server_error", f"upstream answered HTTP {status}: {message}", status)
        return error, retryable, _retry_after(exc.response.headers) if retryable else None
    if isinstance(exc, openai.APITimeoutError):
        return ProviderError("server_error", "the model upstream timed out"), True, None
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__
        what = "the connection to the model upstream broke mid-stream" if started else "could not reach the upstream"
        detail = f": {type(cause).__name__}: {cause}" if cause is not None else ""
        return ProviderError("server_error", what + detail), True, None
    if isinstance(exc, openai.APIError):  # an error object sent inside the event stream
        return ProviderError("server_error", f"the model upstream reported an error: {exc.message}"), True, None
    if isinstance(exc, _StreamIncomplete):
        return ProviderError("server_error", str(exc)), True, None
    return ProviderError("server_error", f"bad stream from the model upstream: {exc}"), True, None


def _upstream_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, Mapping) and isinstance(body.get("message"), str) and body["message"]:
        return body["message"]
    if isinstance(body, str) and body.strip():
        return body.strip()[:500]
    return exc.message


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms``, or ``retry-after`` seconds/HTTP date)."""
    try:
        if (ms := headers.get("retry-after-ms")) is not None:
            return max(0.0, float(ms) / 1000)
        if (value := headers.get("retry-after")) is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, OverflowError):
        return None
