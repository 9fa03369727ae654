"""HTTP side of the scripted dev upstream: an OpenAI-compatible Starlette app.

Endpoints: ``POST /v1/chat/completions`` (JSON and SSE, replies planned by
:mod:`assistd.devupstream.script`), ``POST /v1/embeddings`` (deterministic hashed
bag-of-words vectors), ``GET /v1/models[/{id}]``, and the test-only recording endpoints
``GET /_requests?contains=TEXT`` / ``DELETE /_requests``. Any API key is accepted.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import math
import re
import secrets
import string
import struct
import time
from collections import deque
from collections.abc import AsyncIterator
from functools import lru_cache
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from .script import BadRequest, OnceRegistry, Reply, count_words, plan_reply, reply_deltas, stream_cut_at

MODEL_IDS = ("gpt-4o-mini", "gpt-4o", "scripted", "text-embedding-3-small")
RECORD_LIMIT = 2000
DEFAULT_DIMENSIONS = 256
_ALNUM = string.ascii_letters + string.digits
_EMBED_WORD = re.compile(r"\w+")
# Above this many input characters embeddings are computed off the event loop so one big
# ingestion request can't stall every concurrent stream.
_EMBED_THREAD_CHARS = 50_000


class ApiError(Exception):
    """Raised by handlers; rendered as an OpenAI error envelope."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code


class StreamAborted(Exception):
    """Raised mid-stream on purpose ([stream-error]) so uvicorn cuts the connection."""


# --------------------------------------------------------------------------- helpers


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def _envelope(status: int, message: str, type_: str, param: str | None = None, code: str | None = None) -> Response:
    return _json({"error": {"message": message, "type": type_, "param": param, "code": code}}, status)


def _scripted_error(status: int) -> Response:
    """The envelope a real OpenAI server would send for ``status``."""
    if status == 429:
        return _envelope(status, "Rate limit reached (scripted).", "rate_limit_error", None, "rate_limit_exceeded")
    if status >= 500:
        return _envelope(
            status, f"The server had an error while processing your request (scripted {status}).", "server_error"
        )
    kind = {
        401: ("authentication_error", "invalid_api_key"),
        403: ("permission_error", None),
        404: ("not_found_error", None),
        409: ("conflict_error", None),
    }
    type_, code = kind.get(status, ("invalid_request_error", None))
    return _envelope(status, f"Scripted error {status}.", type_, None, code)


async def _read_json(request: Request) -> Any:
    try:
        return orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"We could not parse the JSON body of your request: {exc}") from None


def _random_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(24))


# --------------------------------------------------------------------------- recording


class Recorder:
    """Ring buffer of request bodies so tests can assert on what assistd sent upstream."""

    def __init__(self, limit: int = RECORD_LIMIT) -> None:
        self._items: deque[tuple[int, str, bytes]] = deque(maxlen=limit)
        self._seq = 0

    def add(self, path: str, body: Any) -> None:
        self._seq += 1
        # Serialise once now: filtering works on this text and the GET needs no re-encoding.
        self._items.append((self._seq, path, orjson.dumps(body)))

    def query(self, contains: str | None) -> list[dict[str, Any]]:
        needle = contains.encode() if contains else b""
        return [
            {"seq": seq, "path": path, "body": orjson.Fragment(raw)} for seq, path, raw in self._items if needle in raw
        ]

    def clear(self) -> int:
        count = len(self._items)
        self._items.clear()
        return count


# --------------------------------------------------------------------------- chat


def _usage(reply: Reply) -> dict[str, int]:
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
    }


def _completion(reply: Reply, base: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.text, "refusal": None}
    if reply.tool_calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in reply.tool_calls
        ]
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": reply.finish_reason}
    return {"id": base["id"], "object": "chat.completion", **base, "choices": [choice], "usage": _usage(reply)}


def _sse(data: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


async def _stream(reply: Reply, base: dict[str, Any], include_usage: bool) -> AsyncIterator[bytes]:
    base = {"id": base["id"], "object": "chat.completion.chunk", **base}
    if include_usage:  # real servers send "usage": null on every chunk but the last
        base["usage"] = None
    if reply.delay:
        await asyncio.sleep(reply.delay)
    deltas = reply_deltas(reply)
    cut_at = stream_cut_at(reply, deltas)
    for i, delta in enumerate(deltas):
        if i and reply.chunk_delay:
            await asyncio.sleep(reply.chunk_delay)
        if i == cut_at:
            raise StreamAborted("[stream-error] directive: connection cut on purpose")
        if i == 1 and reply.malformed:
            yield b'data: {"id": "chatcmpl-malformed", "choices": [{"delta": \n\n'
        finish = reply.finish_reason if i == len(deltas) - 1 else None
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        yield _sse({**base, "choices": [choice]})
    if include_usage:
        yield _sse({**base, "choices": [], "usage": _usage(reply)})
    yield b"data: [DONE]\n\n"


# --------------------------------------------------------------------------- embeddings


@lru_cache(maxsize=100_000)
def _word_features(word: str, dimensions: int) -> tuple[tuple[int, float], ...]:
    """Signed hashed features of one word: the word itself plus its trigrams at lower weight.

    blake2b (not ``hash()``) keeps vectors identical across processes and restarts.
    """
    padded = f"#{word}#"
    grams = [(word, 1.0)] + [("#3" + padded[i : i + 3], 0.25) for i in range(len(padded) - 2)]
    features = []
    for feature, weight in grams:
        h = int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "little")
        features.append((h % dimensions, weight if h >> 63 else -weight))
    return tuple(features)


def embed(text: str, dimensions: int = DEFAULT_DIMENSIONS) -> list[float]:
    """Deterministic L2-normalised embedding: texts sharing words get similar vectors."""
    vector = [0.0] * dimensions
    for word in _EMBED_WORD.findall(text.lower()):
        for index, weight in _word_features(word, dimensions):
            vector[index] += weight
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector] if norm else vector


def _embedding_inputs(body: Any) -> tuple[list[str], int, bool]:
    """Validate an embeddings request: (texts, dimensions, as_base64)."""
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    if not isinstance(body.get("model"), str):
        raise ApiError(400, "you must provide a model parameter", param="model")
    raw = body.get("input")
    texts = [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise ApiError(
            400,
            "'input' must be a non-empty string or array of strings "
            "(token arrays are not supported by the dev upstream)",
            param="input",
        )
    if not all(texts) or len(texts) > 2048:
        raise ApiError(400, "'input' strings must be non-empty and at most 2048 of them", param="input")
    dimensions = body.get("dimensions", DEFAULT_DIMENSIONS)
    if not isinstance(dimensions, int) or isinstance(dimensions, bool) or not 1 <= dimensions <= 4096:
        raise ApiError(400, "'dimensions' must be an integer between 1 and 4096", param="dimensions")
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise ApiError(400, "'encoding_format' must be 'float' or 'base64'", param="encoding_format")
    return texts, dimensions, encoding == "base64"


def _embedding_payload(texts: list[str], dimensions: int, as_base64: bool) -> list[dict[str, Any]]:
    data = []
    for index, text in enumerate(texts):
        vector: Any = embed(text, dimensions)
        if as_base64:  # what the openai client asks for by default: float32 little-endian
            vector = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": vector})
    return data


# --------------------------------------------------------------------------- app


class DevUpstream:
    """Request handlers plus the per-app state (recording buffer, error-once memory)."""

    def __init__(self) -> None:
        self.recorder = Recorder()
        self.once = OnceRegistry()

    def routes(self) -> list[Route]:
        return [
            Route("/v1/chat/completions", self.chat, methods=["POST"]),
            Route("/v1/embeddings", self.embeddings, methods=["POST"]),
            Route("/v1/models", self.list_models, methods=["GET"]),
            Route("/v1/models/{model_id:path}", self.get_model, methods=["GET"]),
            Route("/_requests", self.list_requests, methods=["GET"]),
            Route("/_requests", self.clear_requests, methods=["DELETE"]),
        ]

    async def _recorded_body(self, request: Request) -> Any:
        body = await _read_json(request)
        self.recorder.add(request.url.path, body)
        return body

    async def chat(self, request: Request) -> Response:
        body = await self._recorded_body(request)
        reply = plan_reply(body, self.once)
        base = {
            "id": _random_id("chatcmpl-"),
            "created": int(time.time()),
            "model": body["model"],
            "system_fingerprint": "fp_scripted",
        }
        if reply.error_status is not None or not body.get("stream"):
            if reply.delay:
                await asyncio.sleep(reply.delay)
            if reply.error_status is not None:
                return _scripted_error(reply.error_status)
            return _json(_completion(reply, base))
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        return StreamingResponse(
            _stream(reply, base, include_usage), media_type="text/event-stream", headers={"cache-control": "no-cache"}
        )

    async def embeddings(self, request: Request) -> Response:
        body = await self._recorded_body(request)
        texts, dimensions, as_base64 = _embedding_inputs(body)
        if sum(map(len, texts)) > _EMBED_THREAD_CHARS:
            data = await asyncio.to_thread(_embedding_payload, texts, dimensions, as_base64)
        else:
            data = _embedding_payload(texts, dimensions, as_base64)
        tokens = sum(count_words(t) for t in texts)
        return _json(
            {
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def list_models(self, request: Request) -> Response:
        return _json({"object": "list", "data": [_model(m) for m in MODEL_IDS]})

    async def get_model(self, request: Request) -> Response:
        model_id = request.path_params["model_id"]
        if model_id not in MODEL_IDS:
            raise ApiError(404, f"The model '{model_id}' does not exist", param="model", code="model_not_found")
        return _json(_model(model_id))

    async def list_requests(self, request: Request) -> Response:
        return _json({"data": self.recorder.query(request.query_params.get("contains"))})

    async def clear_requests(self, request: Request) -> Response:
        return _json({"deleted": self.recorder.clear()})


def _model(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": 1700000000, "owned_by": "assistd-dev"}


async def _on_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return _envelope(exc.status, exc.message, exc.type, exc.param, exc.code)


async def _on_bad_request(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BadRequest)
    return _envelope(400, exc.message, "invalid_request_error", exc.param)


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"Unknown request URL: {request.method} {request.url.path}."
        return _envelope(404, message, "invalid_request_error", None, "unknown_url")
    return _envelope(exc.status_code, str(exc.detail), "invalid_request_error")


async def _on_crash(request: Request, exc: Exception) -> Response:
    # Last resort: still an OpenAI-shaped body so clients report the message, not a parse error.
    return _envelope(500, f"dev upstream internal error: {exc!r}", "server_error")


def build_app() -> Starlette:
    upstream = DevUpstream()
    app = Starlette(
        routes=upstream.routes(),
        exception_handlers={
            ApiError: _on_api_error,
            BadRequest: _on_bad_request,
            HTTPException: _on_http_error,
            Exception: _on_crash,
        },
    )
    app.state.upstream = upstream
    return app


class _HideDeliberateAborts(logging.Filter):
    """Drop uvicorn's traceback for [stream-error] cuts; they are expected, not bugs."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], StreamAborted))


def serve(host: str, port: int, *, log_level: str = "warning") -> None:
    """Run the dev upstream until interrupted."""
    import uvicorn  # imported lazily: build_app() users (in-process tests) don't need it

    config = uvicorn.Config(
        build_app(), host=host, port=port, log_level=log_level, access_log=False, timeout_keep_alive=30, backlog=4096
    )
    # After Config: it (re)configures logging, and the filter must survive that.
    logging.getLogger("uvicorn.error").addFilter(_HideDeliberateAborts())
    uvicorn.Server(config).run()
