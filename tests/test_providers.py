"""assistd.providers against a real dev-upstream subprocess (plus a tiny raw server for odd upstreams)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from assistd.config import Settings
from assistd.providers import (
    DEFAULT_CONTEXT_WINDOW,
    ChatEvent,
    ChatRequest,
    Finish,
    ModelRouter,
    OpenAICompatibleProvider,
    ProviderError,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from tests.servers import LiveProcess, free_port

CALL_ID = re.compile(r"^call_[A-Za-z0-9]{24}$")
FAST = {"backoff_base": 0.01, "backoff_max": 0.05}  # keep retry tests quick


@pytest.fixture(scope="module")
def dev_url() -> Iterator[str]:
    """Base URL (without /v1) of a dev upstream subprocess shared by this module."""
    port = free_port()
    with LiveProcess(["dev-upstream", "--port", str(port)], port, ready_path="/v1/models") as proc:
        yield proc.url


def recorded(dev_url: str, marker: str) -> list[dict[str, Any]]:
    """Chat request bodies the dev upstream received whose JSON contains ``marker``."""
    data = httpx.get(f"{dev_url}/_requests", params={"contains": marker}, timeout=5).json()["data"]
    return [item["body"] for item in data if item["path"] == "/v1/chat/completions"]


def user(text: str, **fields: Any) -> ChatRequest:
    """A one-message request; a unique marker makes its recorded requests (and error-once) its own."""
    marker = uuid.uuid4().hex
    return ChatRequest(fields.pop("model", "gpt-4o-mini"), [{"role": "user", "content": f"{text} {marker}"}], **fields)


def marker_of(request: ChatRequest) -> str:
    return str(request.messages[-1]["content"]).rsplit(" ", 1)[1]


async def collect(provider: OpenAICompatibleProvider, request: ChatRequest) -> list[ChatEvent]:
    try:
        return [event async for event in provider.stream_chat(request)]
    finally:
        await provider.aclose()


def stream(dev_url: str, request: ChatRequest, **options: Any) -> list[ChatEvent]:
    # A provider per event loop: its HTTP connections belong to the loop that opened them.
    provider = OpenAICompatibleProvider(f"{dev_url}/v1", "x", **{"max_retries": 2, **FAST, **options})
    return asyncio.run(collect(provider, request))


def fails(dev_url: str, request: ChatRequest, **options: Any) -> tuple[ProviderError, list[ChatEvent]]:
    """The ProviderError a stream ends with, and the events yielded before it."""
    seen: list[ChatEvent] = []

    async def run() -> None:
        provider = OpenAICompatibleProvider(f"{dev_url}/v1", "x", **{"max_retries": 2, **FAST, **options})
        try:
            async for event in provider.stream_chat(request):
                seen.append(event)
        finally:
            await provider.aclose()

    with pytest.raises(ProviderError) as info:
        asyncio.run(run())
    return info.value, seen


def text_of(events: list[ChatEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def test_text_stream_reassembles_and_ends_with_finish_then_one_usage(dev_url: str) -> None:
    request = user("[reply: The quick  brown fox, jumps!]", max_tokens=50, tool_choice="auto")
    events = stream(dev_url, request)
    assert text_of(events) == "The quick  brown fox, jumps!"
    assert len([e for e in events if isinstance(e, TextDelta)]) > 1  # it really streamed
    assert events[-2:] == [Finish("stop"), Usage(prompt_tokens=8, completion_tokens=5)]  # dev upstream counts words
    assert sum(isinstance(e, Usage) for e in events) == 1

    [body] = recorded(dev_url, marker_of(request))
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["max_tokens"] == 50 and "max_completion_tokens" not in body
    # Unset fields are not sent as nulls, and tool_choice without tools would be a 400 at OpenAI.
    for key in ("temperature", "top_p", "response_format", "reasoning_effort", "tools", "tool_choice"):
        assert key not in body


def test_parallel_tool_calls_reassemble_per_index_with_ids(dev_url: str) -> None:
    tools = [
        {"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}
        for name in ("get_weather", "get_time")
    ]
    request = user(
        '[tool: get_weather {"city": "Paris", "units": ["c"]}] [tool: get_time {"tz": "Europe/Paris"}]',
        tools=tools,
        tool_choice="auto",
        parallel_tool_calls=True,
        temperature=0.2,
    )
    events = stream(dev_url, request)
    calls: dict[int, dict[str, Any]] = {}
    for e in events:
        if isinstance(e, ToolCallDelta):
            call = calls.setdefault(e.index, {"id": None, "name": None, "arguments": ""})
            call["id"] = call["id"] or e.id
            call["name"] = call["name"] or e.name
            call["arguments"] += e.arguments
    assert sorted(calls) == [0, 1]
    assert [calls[i]["name"] for i in (0, 1)] == ["get_weather", "get_time"]
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris", "units": ["c"]}
    assert json.loads(calls[1]["arguments"]) == {"tz": "Europe/Paris"}
    assert all(CALL_ID.match(c["id"]) for c in calls.values()) and calls[0]["id"] != calls[1]["id"]
    assert sum(isinstance(e, ToolCallDelta) and e.id is not None for e in events) == 2  # ids as sent, once each
    assert isinstance(events[-2], Finish) and events[-2].reason == "tool_calls"
    assert isinstance(events[-1], Usage) and events[-1].completion_tokens > 0

    [body] = recorded(dev_url, marker_of(request))
    assert body["tools"] == tools and body["tool_choice"] == "auto" and body["parallel_tool_calls"] is True
    assert body["temperature"] == 0.2


@pytest.mark.parametrize(
    ("text", "max_tokens", "reason"),
    [("[reply: a b c]", None, "stop"), ("[reply: a b c] [length]", None, "length"), ("[tokens: 10]", 3, "length")],
)
def test_finish_reasons(dev_url: str, text: str, max_tokens: int | None, reason: str) -> None:
    events = stream(dev_url, user(text, max_tokens=max_tokens))
    assert [e for e in events if isinstance(e, Finish)] == [Finish(reason)]
    if max_tokens:
        assert text_of(events) == "tok tok tok"


def test_rate_limit_is_retried_then_reported(dev_url: str) -> None:
    request = user("[error: 429]")
    error, seen = fails(dev_url, request, max_retries=2)
    assert (error.code, error.status, seen) == ("rate_limit_exceeded", 429, [])
    assert len(recorded(dev_url, marker_of(request))) == 3  # the first try + 2 retries


def test_one_server_error_is_retried_transparently(dev_url: str) -> None:
    request = user("[error-once: 500] [reply: fine now]")
    events = stream(dev_url, request)
    assert text_of(events) == "fine now" and isinstance(events[-1], Usage)
    assert len(recorded(dev_url, marker_of(request))) == 2


@pytest.mark.parametrize("status", [400, 404, 413, 422])
def test_client_errors_are_invalid_prompt_without_retry(dev_url: str, status: int) -> None:
    request = user(f"[error: {status}]")
    error, _ = fails(dev_url, request)
    assert (error.code, error.status) == ("invalid_prompt", status)
    assert error.message == f"Scripted error {status}."  # the upstream's own words
    assert len(recorded(dev_url, marker_of(request))) == 1


def test_cut_stream_after_output_is_server_error_without_retry(dev_url: str) -> None:
    request = user("[reply: one two three four five] [stream-error]")
    error, seen = fails(dev_url, request)
    assert error.code == "server_error" and error.status is None
    assert text_of(seen) == "one two"  # output had started: retrying would have duplicated it
    assert len(recorded(dev_url, marker_of(request))) == 1


def test_cancelling_the_consumer_closes_the_stream_promptly(dev_url: str) -> None:
    request = user("[delay: 5] [reply: too late]")

    async def run() -> tuple[float, list[Any]]:
        provider = OpenAICompatibleProvider(f"{dev_url}/v1", "x")
        try:

            async def consume() -> None:
                async for _ in provider.stream_chat(request):
                    pass

            task = asyncio.create_task(consume())
            while not recorded(dev_url, marker_of(request)):  # the request is in flight
                await asyncio.sleep(0.02)
            started = time.monotonic()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # Pinned SDK internals: the pool must hold no connection still reading the reply.
            pool = provider._client._client._transport._pool  # type: ignore[attr-defined]
            return time.monotonic() - started, list(pool.connections)
        finally:
            await provider.aclose()

    elapsed, connections = asyncio.run(run())
    assert elapsed < 1.0
    assert connections == []


def test_connection_refused_is_server_error_after_bounded_retries(caplog: pytest.LogCaptureFixture) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    caplog.set_level(logging.WARNING, logger="assistd.providers.openai_compat")
    started = time.monotonic()
    error, _ = fails(closed, user("hi"), max_retries=3, connect_timeout=1.0)
    assert error.code == "server_error" and error.status is None
    assert "could not reach the upstream" in error.message
    assert len([r for r in caplog.records if "retrying in" in r.getMessage()]) == 3
    assert time.monotonic() - started < 3


# --------------------------------------------------------------------------- odd upstreams


@asynccontextmanager
async def _raw_server(responses: list[bytes]) -> AsyncIterator[str]:
    """Serve the given raw HTTP responses, one per connection, in order; yields the base URL."""
    queue = list(responses)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"content-length: *(\d+)", head, re.IGNORECASE).group(1))  # type: ignore[union-attr]
        await reader.readexactly(length)
        writer.write(queue.pop(0))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"


def _sse(*chunks: dict[str, Any]) -> bytes:
    body = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
    head = f"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {len(body)}\r\n"
    return head.encode() + b"connection: close\r\n\r\n" + body


def _chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m", "choices": [choice]}


def test_usage_is_estimated_and_retry_after_honoured_for_plain_servers() -> None:
    busy = b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 0.3\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}"
    reply = _sse(_chunk({"role": "assistant", "content": "x" * 10}), _chunk({"content": "y" * 6}, "stop"))

    async def run() -> tuple[list[ChatEvent], float]:
        async with _raw_server([busy, reply]) as url:
            provider = OpenAICompatibleProvider(url, "x", max_retries=1, **FAST)
            started = time.monotonic()
            events = await collect(provider, ChatRequest("m", [{"role": "user", "content": "z" * 41}]))
            return events, time.monotonic() - started

    events, elapsed = asyncio.run(run())
    assert elapsed >= 0.3  # Retry-After beat our 10 ms backoff
    assert events[-2:] == [Finish("stop"), Usage(prompt_tokens=11, completion_tokens=4)]  # ceil(chars / 4)


def test_streams_ending_without_finish_are_cuts_but_a_cut_after_finish_is_not() -> None:
    silent = _sse(_chunk({"role": "assistant", "content": ""}))  # no output, no finish: safe to retry
    good = _sse(_chunk({"content": "hello"}, "stop"))
    half = _sse(_chunk({"content": "partial"}))  # output, then a clean end without finish_reason
    whole = _sse(_chunk({"content": "done"}, "stop"))
    whole = whole.replace(b"data: [DONE]\n\n", b"")  # the connection closes short of content-length

    async def run(responses: list[bytes]) -> list[ChatEvent]:
        async with _raw_server(responses) as url:
            provider = OpenAICompatibleProvider(url, "x", max_retries=1, **FAST)
            return await collect(provider, ChatRequest("m", [{"role": "user", "content": "hi"}]))

    assert text_of(asyncio.run(run([silent, good]))) == "hello"
    with pytest.raises(ProviderError) as info:
        asyncio.run(run([half, good]))
    assert info.value.code == "server_error" and "without a finish_reason" in info.value.message
    events = asyncio.run(run([whole]))
    assert events == [TextDelta("done"), Finish("stop"), Usage(prompt_tokens=1, completion_tokens=1)]


# --------------------------------------------------------------------------- router


def _settings(tmp_path: Path, dev_url: str, toml: str | None) -> Settings:
    models_file = None
    if toml is not None:
        models_file = tmp_path / "models.toml"
        models_file.write_text(toml)
    return Settings(llm_base_url=f"{dev_url}/v1", llm_api_key="k", models_file=models_file)


def test_router_maps_names_to_upstream_models_and_context_windows(dev_url: str, tmp_path: Path) -> None:
    toml = f"""
[upstreams.dev]
base_url = "{dev_url}/v1"
api_key = "dev"

[models."my-alias"]
upstream = "dev"
model = "scripted"
context_window = 8192
"""
    router = ModelRouter.from_settings(_settings(tmp_path, dev_url, toml), max_retries=0)
    assert router.context_window("my-alias") == 8192
    assert router.context_window("anything-else") == DEFAULT_CONTEXT_WINDOW
    assert router.provider_for("my-alias") is router.provider_for("my-alias")
    # Unlisted names pass through to the default upstream and share one provider.
    assert router.provider_for("other-a") is router.provider_for("other-b")
    assert router.provider_for("other-a") is not router.provider_for("my-alias")

    aliased, passthrough = user("[reply: ok]", model="my-alias"), user("[reply: ok]", model="other-a")

    async def run() -> None:
        try:
            for request in (aliased, passthrough):
                events = [e async for e in router.provider_for(request.model).stream_chat(request)]
                assert text_of(events) == "ok"
        finally:
            await router.aclose()

    asyncio.run(run())
    assert [b["model"] for b in recorded(dev_url, marker_of(aliased))] == ["scripted"]
    assert [b["model"] for b in recorded(dev_url, marker_of(passthrough))] == ["other-a"]


def test_router_fallback_route_and_no_file(dev_url: str, tmp_path: Path) -> None:
    router = ModelRouter.from_settings(
        _settings(tmp_path, dev_url, '[models."*"]\nupstream = "default"\nmodel = "scripted"\ncontext_window = 4096\n')
    )
    assert router.context_window("whatever") == 4096
    assert router.route("whatever").model == "scripted"
    plain = ModelRouter.from_settings(_settings(tmp_path, dev_url, None))
    assert plain.context_window("gpt-4o") == DEFAULT_CONTEXT_WINDOW and plain.route("gpt-4o").model is None


@pytest.mark.parametrize(
    ("toml", "problem"),
    [
        ("[models.x\nupstream = 1", "invalid TOML"),
        ('[models."a"]\nupstream = "nowhere"\n', "upstream 'nowhere' is not defined"),
        ('[models."a"]\ncontext_window = "big"\n', "context_window must be of type int"),
        ('[models."a"]\ncontext_window = 0\n', "context_window must be a positive"),
        ('[models."a"]\nupstrem = "default"\n', "unknown key(s) upstrem"),
        ('[upstreams.local]\napi_key = "k"\n', "[upstreams.local]: base_url is required"),
        ('[upstreams.local]\nbase_url = "localhost:1"\n', "must start with http"),
        ('[upstreams.default]\nbase_url = "http://x"\n', '"default" is reserved'),
        ('[upstreams.l]\nbase_url = "http://x"\napi_key_env = "ASSISTD_TEST_NO_SUCH_VAR"\n', "is not set"),
        ("upstreams = 3\n", "[upstreams] must be a table"),
        ("model = {}\n", "the top level: unknown key(s) model"),
    ],
)
def test_bad_models_file_is_a_clear_value_error(tmp_path: Path, toml: str, problem: str) -> None:
    settings = _settings(tmp_path, "http://127.0.0.1:1", toml)
    with pytest.raises(ValueError) as info:
        ModelRouter.from_settings(settings)
    assert problem in str(info.value) and str(settings.models_file) in str(info.value)


def test_missing_models_file_is_a_value_error(tmp_path: Path) -> None:
    settings = Settings(models_file=tmp_path / "absent.toml")
    with pytest.raises(ValueError, match="cannot read it"):
        ModelRouter.from_settings(settings)
