"""The scripted dev upstream, exercised as a real subprocess through the official openai client."""

from __future__ import annotations

import asyncio
import base64
import math
import re
import resource
import struct
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest
from openai import OpenAI
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from tests.servers import LiveProcess, free_port

CALL_ID = re.compile(r"^call_[A-Za-z0-9]{24}$")
CONCURRENT_STREAMS = 1000


def _allow_many_sockets(needed: int) -> None:
    """The concurrency test opens ~1000 sockets per side; children inherit this limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    _allow_many_sockets(4 * CONCURRENT_STREAMS)
    port = free_port()
    with LiveProcess(["dev-upstream", "--port", str(port)], port, ready_path="/v1/models") as proc:
        yield proc.url


@pytest.fixture(scope="module")
def client(base_url: str) -> Iterator[OpenAI]:
    # No retries: error tests must see the first answer, not the client's retry of it.
    with OpenAI(base_url=f"{base_url}/v1", api_key="x", max_retries=0, timeout=10) as c:
        yield c


@pytest.fixture(scope="module")
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=10) as c:
        yield c


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def chat(client: OpenAI, text: str, **kwargs: Any) -> ChatCompletion:
    return client.chat.completions.create(model="scripted", messages=user(text), **kwargs)


def stream_chunks(client: OpenAI, messages: list[dict[str, Any]], **kwargs: Any) -> list[ChatCompletionChunk]:
    stream = client.chat.completions.create(model="scripted", messages=messages, stream=True, **kwargs)
    return list(stream)


def raw_sse(http: httpx.Client, body: dict[str, Any]) -> list[dict[str, Any]]:
    """SSE data payloads, strictly validated against the openai chunk model."""
    response = http.post("/v1/chat/completions", json={"model": "scripted", "stream": True, **body})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    lines = [line[len("data: ") :] for line in response.text.split("\n\n") if line]
    assert lines[-1] == "[DONE]"
    chunks = [orjson.loads(line) for line in lines[:-1]]
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk, strict=False)
    return chunks


def text_of(chunks: list[ChatCompletionChunk]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


# --------------------------------------------------------------------------- plain chat


def test_models(client: OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert {"gpt-4o-mini", "gpt-4o", "scripted"} <= ids
    assert client.models.retrieve("gpt-4o").id == "gpt-4o"


def test_echo_non_stream(client: OpenAI, http: httpx.Client) -> None:
    completion = chat(client, "  hello world  ")
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "scripted"
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == "echo: hello world"
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (3, 3)
    assert completion.usage.total_tokens == 6
    raw = http.post("/v1/chat/completions", json={"model": "gpt-4o", "messages": user("hi")}).json()
    assert ChatCompletion.model_validate(raw).choices[0].message.content == "echo: hi"


def test_echo_stream_with_usage(client: OpenAI, http: httpx.Client) -> None:
    chunks = stream_chunks(client, user("one two three four"), stream_options={"include_usage": True})
    assert {c.id for c in chunks} == {chunks[0].id} and chunks[0].id.startswith("chatcmpl-")
    assert all(c.object == "chat.completion.chunk" and c.model == "scripted" for c in chunks)
    content_chunks = [c for c in chunks if c.choices]
    assert len(content_chunks) == 5  # one per word
    assert content_chunks[0].choices[0].delta.role == "assistant"
    assert text_of(chunks) == "echo: one two three four"
    assert [c.choices[0].finish_reason for c in content_chunks] == [None] * 4 + ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 5 and chunks[-1].usage.prompt_tokens == 5
    raw = raw_sse(http, {"messages": user("x y"), "stream_options": {"include_usage": True}})
    assert raw[-1]["choices"] == [] and raw[-1]["usage"]["total_tokens"] == 3 + 3


def test_stream_without_usage_has_no_usage_chunk(client: OpenAI) -> None:
    chunks = stream_chunks(client, user("a b"))
    assert all(c.choices for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_reply_directive_nesting_escapes_and_parts(client: OpenAI) -> None:
    text = r"ignored [reply: Hi, you [see] \] this]  also ignored"
    assert chat(client, text).choices[0].message.content == "Hi, you [see] ] this"
    assert text_of(stream_chunks(client, user(text))) == "Hi, you [see] ] this"
    parts = [
        {"role": "user", "content": [{"type": "text", "text": "[reply: "}, {"type": "text", "text": "from parts]"}]}
    ]
    completion = client.chat.completions.create(model="scripted", messages=parts)
    assert completion.choices[0].message.content == "from parts"


def test_only_last_user_message_counts(client: OpenAI) -> None:
    messages = [
        {"role": "system", "content": "[reply: nope]"},
        *user("[reply: old]"),
        {"role": "assistant", "content": "old"},
        *user("newest"),
    ]
    completion = client.chat.completions.create(model="scripted", messages=messages)
    assert completion.choices[0].message.content == "echo: newest"


# --------------------------------------------------------------------------- tools

WEATHER_TOOL = {"type": "function", "function": {"name": "unrelated", "parameters": {"type": "object"}}}


def test_parallel_tool_calls(client: OpenAI) -> None:
    text = 'go [tool: get_weather {"city": "Paris", "tags": ["a]", 1]}] [tool: lookup]'
    completion = chat(client, text, tools=[WEATHER_TOOL])
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_weather", "lookup"]
    assert calls[0].function.arguments == '{"city":"Paris","tags":["a]",1]}'
    assert calls[1].function.arguments == "{}"
    assert all(CALL_ID.match(c.id) for c in calls) and calls[0].id != calls[1].id


def test_tool_calls_stream(client: OpenAI, http: httpx.Client) -> None:
    text = '[reply: Let me check.] [tool: a {"x": "long value here"}] [tool: b {"y": 2}]'
    chunks = stream_chunks(client, user(text))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert text_of(chunks) == "Let me check."
    calls: dict[int, dict[str, Any]] = {}
    pieces: dict[int, int] = {}
    for chunk in chunks:
        for delta in chunk.choices[0].delta.tool_calls or []:
            assert delta.function is not None
            if delta.id:  # the first chunk of a call names it and carries empty arguments
                assert delta.type == "function" and delta.function.arguments == ""
                calls[delta.index] = {"id": delta.id, "name": delta.function.name, "args": ""}
            else:
                calls[delta.index]["args"] += delta.function.arguments or ""
                pieces[delta.index] = pieces.get(delta.index, 0) + 1
    assert [(c["name"], c["args"]) for c in calls.values()] == [("a", '{"x":"long value here"}'), ("b", '{"y":2}')]
    assert all(CALL_ID.match(c["id"]) for c in calls.values())
    assert all(2 <= n <= 3 for n in pieces.values())
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert [c.choices[0].finish_reason for c in chunks[:-1]] == [None] * (len(chunks) - 1)
    raw_sse(http, {"messages": user(text)})  # strict shape validation of the same stream


def _after_tools(directives: str, rounds: int) -> list[dict[str, Any]]:
    messages = user(directives)
    for n in range(rounds):
        call = {"id": f"call_{n}", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        messages += [
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": f"call_{n}", "content": f"r{n}"},
        ]
    return messages


def test_tool_results_end_the_loop(client: OpenAI) -> None:
    messages = _after_tools("[tool: f {}]", 1)
    messages.append({"role": "tool", "tool_call_id": "call_x", "content": "second"})
    completion = client.chat.completions.create(model="scripted", messages=messages)
    assert completion.choices[0].message.content == "tool results: r0; second"
    assert completion.choices[0].finish_reason == "stop"


@pytest.mark.parametrize(("directive", "rounds_with_tools"), [("[tool-again]", 2), ("[tool-again: 3]", 3)])
def test_tool_again(client: OpenAI, directive: str, rounds_with_tools: int) -> None:
    for done in range(rounds_with_tools + 1):
        messages = _after_tools(f"[tool: f {{}}] {directive}", done)
        choice = client.chat.completions.create(model="scripted", messages=messages).choices[0]
        expected = "tool_calls" if done < rounds_with_tools else "stop"
        assert choice.finish_reason == expected, done


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("status", "exc_type", "err_type", "code"),
    [
        (429, openai.RateLimitError, "rate_limit_error", "rate_limit_exceeded"),
        (400, openai.BadRequestError, "invalid_request_error", None),
        (500, openai.InternalServerError, "server_error", None),
        (503, openai.InternalServerError, "server_error", None),
    ],
)
def test_scripted_errors(
    client: OpenAI, status: int, exc_type: type[openai.APIStatusError], err_type: str, code: str | None
) -> None:
    for stream in (False, True):
        with pytest.raises(exc_type) as info:
            chat(client, f"[error: {status}]", stream=stream)
        assert info.value.status_code == status
        assert info.value.type == err_type and info.value.code == code


def test_error_once(client: OpenAI) -> None:
    text = f"[error-once: 503] unique {time.time_ns()}"
    with pytest.raises(openai.InternalServerError):
        chat(client, text)
    assert chat(client, text).choices[0].message.content.startswith("echo: unique")
    assert chat(client, text).choices[0].finish_reason == "stop"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[tool: f {bad json}]", "bad JSON arguments for tool 'f'"),
        ("[tool: f [1, 2]]", "must be a JSON object"),
        ("[delay: soon]", "needs a number"),
        ("[reply: never closed", "unterminated"),
        ("[usage: lots]", "prompt=N completion=M"),
    ],
)
def test_malformed_directives_are_400(client: OpenAI, text: str, fragment: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        chat(client, text)
    assert fragment in info.value.message


def test_stream_error_cuts_connection(client: OpenAI) -> None:
    received: list[ChatCompletionChunk] = []
    with pytest.raises(openai.APIConnectionError):
        stream = client.chat.completions.create(
            model="scripted", messages=user("[reply: a b c d e f] [stream-error]"), stream=True
        )
        received.extend(stream)  # raises once the connection is cut
    assert text_of(received) == "a b"
    assert chat(client, "still alive").choices[0].message.content == "echo: still alive"


@pytest.mark.parametrize(
    ("path", "method", "content", "status", "fragment"),
    [
        ("/v1/nope", "POST", b"{}", 404, "Unknown request URL"),
        ("/v1/chat/completions", "POST", b"{not json", 400, "could not parse the JSON"),
        ("/v1/chat/completions", "POST", b'{"model": "m"}', 400, "messages"),
        ("/v1/chat/completions", "POST", b"[1, 2]", 400, "JSON object"),
        ("/v1/chat/completions", "POST", b'{"model": "m", "messages": [1]}', 400, "messages"),
        (
            "/v1/chat/completions",
            "POST",
            b'{"model":"m","messages":[{"role":"user"}],"max_tokens":"x"}',
            400,
            "max_tokens",
        ),
        ("/v1/chat/completions", "GET", None, 405, "Method Not Allowed"),
        ("/v1/models/no-such-model", "GET", None, 404, "does not exist"),
    ],
)
def test_http_errors_use_openai_envelope(
    http: httpx.Client, path: str, method: str, content: bytes | None, status: int, fragment: str
) -> None:
    response = http.request(method, path, content=content)
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert fragment in error["message"]


# --------------------------------------------------------------------------- lengths, json, usage


def test_tokens_and_max_tokens_cut(client: OpenAI) -> None:
    completion = chat(client, "[tokens: 50]")
    assert completion.choices[0].message.content == " ".join(["tok"] * 50)
    assert completion.usage is not None and completion.usage.completion_tokens == 50
    cut = chat(client, "[tokens: 50]", max_tokens=7)
    assert cut.choices[0].message.content == " ".join(["tok"] * 7)
    assert cut.choices[0].finish_reason == "length"
    assert cut.usage is not None and cut.usage.completion_tokens == 7
    chunks = stream_chunks(client, user("[reply: a b c d e]"), max_completion_tokens=3)
    assert text_of(chunks) == "a b c" and chunks[-1].choices[0].finish_reason == "length"
    assert chat(client, "[reply: a b]", max_tokens=2).choices[0].finish_reason == "stop"


def test_length_directive(client: OpenAI) -> None:
    choice = chat(client, "[reply: short] [length]").choices[0]
    assert (choice.message.content, choice.finish_reason) == ("short", "length")


def test_max_tokens_drops_tool_calls_that_do_not_fit(client: OpenAI) -> None:
    choice = chat(client, '[tool: a {"k": "v"}] [tool: b {"long": "x y z w"}]', max_tokens=3).choices[0]
    assert choice.finish_reason == "length"
    assert [c.function.name for c in choice.message.tool_calls or []] == ["a"]


def test_json_mode(client: OpenAI) -> None:
    assert orjson.loads(chat(client, "[json] say hi").choices[0].message.content) == {"echo": "say hi"}
    content = chat(client, 'quote "me"', response_format={"type": "json_object"}).choices[0].message.content
    assert orjson.loads(content) == {"echo": 'quote "me"'}


def test_usage_override(client: OpenAI) -> None:
    usage = chat(client, "[usage: prompt=1000 completion=7] hi").usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (1000, 7, 1007)
    chunks = stream_chunks(client, user("[usage: completion=2]"), stream_options={"include_usage": True})
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 2


# --------------------------------------------------------------------------- timing


def test_delay_non_stream(client: OpenAI) -> None:
    start = time.monotonic()
    chat(client, "[delay: 0.3]")
    assert time.monotonic() - start >= 0.3


def test_delay_stream_sends_headers_first(http: httpx.Client) -> None:
    body = {"model": "m", "stream": True, "messages": user("[delay: 0.4] [reply: x y]")}
    start = time.monotonic()
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        headers_at = time.monotonic() - start
        first = next(response.iter_raw())
        first_at = time.monotonic() - start
    assert headers_at < 0.3
    assert first_at >= 0.4
    assert first.startswith(b"data: ")


def test_chunk_delay(client: OpenAI) -> None:
    start = time.monotonic()
    chunks = stream_chunks(client, user("[chunk-delay: 0.05] [reply: a b c d e]"))
    assert len(chunks) == 5 and time.monotonic() - start >= 0.2


def test_concurrent_streams(base_url: str) -> None:
    """1000 streams each held open 0.5 s are served side by side: many have their response started before
    the first one ends (a server taking them one at a time would start none). Ordered, not timed.

    Raw asyncio sockets rather than httpx: httpx's pool, not the server, is the bottleneck here.
    """
    host, port = base_url.removeprefix("http://").split(":")
    happened: list[str] = []

    async def one(n: int) -> bytes:
        body = orjson.dumps({"model": "m", "stream": True, "messages": user(f"[delay: 0.5] [reply: hi {n}]")})
        reader, writer = await asyncio.open_connection(host, int(port))
        head = (
            f"POST /v1/chat/completions HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
            f"connection: close\r\ncontent-length: {len(body)}\r\n\r\n"
        )
        writer.write(head.encode() + body)
        started = await reader.readuntil(b"\r\n\r\n")
        happened.append("start")
        data = started + await reader.read()  # until the server closes: the whole chunked response
        happened.append("end")
        writer.close()
        return data

    async def main() -> list[bytes]:
        return await asyncio.gather(*(one(n) for n in range(CONCURRENT_STREAMS)))

    responses = asyncio.run(main())
    for n, response in enumerate(responses):
        assert response.startswith(b"HTTP/1.1 200") and b"data: [DONE]" in response
        assert f'"content":" {n}"'.encode() in response
    assert happened.index("end") > 1, "the streams were served one after another"


# --------------------------------------------------------------------------- embeddings


def _cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_embeddings_via_client_base64(client: OpenAI, http: httpx.Client) -> None:
    texts = ["the cat sat on the mat", "a cat sat on a mat", "quarterly revenue grew"]
    result = client.embeddings.create(model="text-embedding-3-small", input=texts)
    vectors = [d.embedding for d in result.data]
    assert [d.index for d in result.data] == [0, 1, 2]
    assert all(len(v) == 256 and math.isclose(math.sqrt(_cosine(v, v)), 1, rel_tol=1e-5) for v in vectors)
    assert _cosine(vectors[0], vectors[1]) > _cosine(vectors[0], vectors[2]) + 0.3
    assert result.usage.prompt_tokens == 6 + 6 + 3 == result.usage.total_tokens
    recorded = http.get("/_requests", params={"contains": "quarterly revenue grew"}).json()["data"]
    assert recorded[-1]["body"]["encoding_format"] == "base64"


def test_embeddings_float_dimensions_and_determinism(http: httpx.Client) -> None:
    def embed(**extra: Any) -> list[Any]:
        response = http.post("/v1/embeddings", json={"model": "e", "input": "Hello hello world", **extra})
        assert response.status_code == 200
        return response.json()["data"][0]["embedding"]

    floats = embed(dimensions=64)
    assert len(floats) == 64 and floats == embed(dimensions=64)
    packed = base64.b64decode(embed(dimensions=64, encoding_format="base64"))
    assert list(struct.unpack("<64f", packed)) == pytest.approx(floats, rel=1e-6)


@pytest.mark.parametrize(
    "payload",
    [
        {"input": [1, 2, 3]},
        {"input": [[1, 2]]},
        {"input": []},
        {"input": ""},
        {"input": "x", "dimensions": 0},
        {"input": "x", "encoding_format": "int8"},
    ],
)
def test_embeddings_rejects_bad_input(http: httpx.Client, payload: dict[str, Any]) -> None:
    response = http.post("/v1/embeddings", json={"model": "e", **payload})
    assert response.status_code == 400 and response.json()["error"]["type"] == "invalid_request_error"


# --------------------------------------------------------------------------- recording


def test_recording_endpoints(client: OpenAI, http: httpx.Client) -> None:
    marker = f"marker-{time.time_ns()}"
    chat(client, f"{marker} one")
    chat(client, f"{marker} two", stream=True).close()
    http.post("/v1/embeddings", json={"model": "e", "input": marker})
    found = http.get("/_requests", params={"contains": marker}).json()["data"]
    assert [r["path"] for r in found] == ["/v1/chat/completions"] * 2 + ["/v1/embeddings"]
    assert found[0]["seq"] < found[1]["seq"] < found[2]["seq"]
    assert found[0]["body"]["messages"] == user(f"{marker} one") and found[1]["body"]["stream"] is True
    assert http.get("/_requests").json()["data"]  # no filter: everything retained
    assert http.delete("/_requests").json()["deleted"] >= 3
    assert http.get("/_requests").json()["data"] == []
    chat(client, marker)
    assert http.get("/_requests").json()["data"][0]["seq"] > found[2]["seq"]  # seq never resets


def test_async_client_stream_helper_accumulates(base_url: str) -> None:
    """assistd uses AsyncOpenAI; its stream helper rebuilds the final message from our deltas."""

    async def main() -> Any:
        async with openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key="x", max_retries=0) as client:
            async with client.chat.completions.stream(
                model="gpt-4o-mini",
                tools=[WEATHER_TOOL],
                stream_options={"include_usage": True},
                messages=user('[reply: Checking now.] [tool: f {"a": 1}] [tool: g {"b": [2]}]'),
            ) as stream:
                return await stream.get_final_completion()

    completion = asyncio.run(main())
    message = completion.choices[0].message
    assert message.content == "Checking now."
    assert [(c.function.name, c.function.arguments) for c in message.tool_calls] == [
        ("f", '{"a":1}'),
        ("g", '{"b":[2]}'),
    ]
    assert completion.choices[0].finish_reason == "tool_calls"
    assert completion.usage is not None and completion.usage.completion_tokens == 2 + 2 + 2
