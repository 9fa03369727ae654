"""A pull-based multipart/form-data reader over the raw request stream.

python-multipart's parser is push-based (callbacks fire during ``write``); this wrapper feeds it one
network chunk at a time and hands the events out as ``next_part()`` / ``iter_data()``, so a file part
can be streamed straight into a blob store: at most one network chunk (plus one small form field) is held
in memory, whatever the upload's size. Nothing is spooled to disk here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header

from assistd.errors import APIError, InvalidRequest

MAX_PARTS = 32
MAX_BOUNDARY = 256  # python-multipart's own limit (RFC 2046 allows 70; no client sends more)


@dataclass(frozen=True)
class Part:
    name: str
    filename: str | None  # None for a plain form field


def _decode(raw: bytes) -> str:
    # Clients send UTF-8 (RFC 7578 §4.2, and what every SDK does); fall back rather than fail on latin-1.
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _unescape_html5(value: str) -> str:
    """Undo the HTML5 form encoding browsers and httpx apply to names: ``"`` → %22, controls → %XX."""
    if "%" not in value:
        return value
    for code in [0x22, *range(0x20)]:
        value = value.replace(f"%{code:02X}", chr(code)).replace(f"%{code:02x}", chr(code))
    return value


class MultipartReader:
    def __init__(self, body: AsyncIterator[bytes], content_type: str | None, *, max_body_bytes: int,
                 too_large: APIError) -> None:
        ctype, options = parse_options_header((content_type or "").encode("latin-1", "replace"))
        boundary = options.get(b"boundary")
        if ctype != b"multipart/form-data" or not boundary:
            raise InvalidRequest(
                f"Invalid Content-Type header ({(content_type or 'none')[:100]}), expected multipart/form-data "
                "with a boundary.")
        if len(boundary) > MAX_BOUNDARY:
            raise InvalidRequest(f"Invalid multipart boundary: longer than {MAX_BOUNDARY} characters.")
        self._body = body
        self._max_body_bytes = max_body_bytes
        self._too_large = too_large
        self._seen = 0
        self.started = False  # whether any of the body was read (Expect: 100-continue)
        self.exhausted = False
        self._events: deque[tuple[Any, ...]] = deque()
        self._headers: list[tuple[bytes, bytes]] = []
        self._field = bytearray()
        self._value = bytearray()
        self._parts = 0
        try:
            self._parser = self._new_parser(boundary)
        except ValueError as exc:  # FormParserError is one
            raise InvalidRequest(f"Invalid multipart boundary: {exc}") from None

    def _new_parser(self, boundary: bytes) -> MultipartParser:
        return MultipartParser(boundary, callbacks={
            "on_part_begin": self._on_part_begin,
            "on_header_field": lambda data, start, end: self._field.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._value.extend(data[start:end]),
            "on_header_end": self._on_header_end,
            "on_headers_finished": self._on_headers_finished,
            "on_part_data": lambda data, start, end: self._events.append(("data", bytes(data[start:end]))),
            "on_part_end": lambda: self._events.append(("part_end",)),
        })

    # --- parser callbacks (header sizes and counts are bounded by the parser itself) ---

    def _on_part_begin(self) -> None:
        self._headers = []

    def _on_header_end(self) -> None:
        self._headers.append((bytes(self._field).strip().lower(), bytes(self._value).strip()))
        self._field.clear()
        self._value.clear()

    def _on_headers_finished(self) -> None:
        self._parts += 1
        if self._parts > MAX_PARTS:
            raise InvalidRequest(f"Too many form fields: at most {MAX_PARTS} are accepted.")
        self._events.append(("headers", self._headers))

    # --- pulling ---

    @property
    def _ended(self) -> bool:
        return self._parser.state == MultipartState.END

    async def _next_event(self) -> tuple[Any, ...] | None:
        while not self._events:
            if self._ended:
                return None
            try:
                chunk = await anext(self._body)
            except StopAsyncIteration:
                self.exhausted = True
                raise InvalidRequest("Invalid multipart body: it ended before its closing boundary.") from None
            self.started = True
            self._seen += len(chunk)
            if self._seen > self._max_body_bytes:
                raise self._too_large
            try:
                self._parser.write(chunk)
            except FormParserError as exc:  # MultipartParseError and the rest
                raise InvalidRequest(f"Invalid multipart body: {exc}") from None
        return self._events.popleft()

    async def next_part(self) -> Part | None:
        """The next part's name and filename (skipping what is left of the current one), or None at the end."""
        while (event := await self._next_event()) is not None:
            if event[0] == "headers":
                return self._part(event[1])
        return None

    def _part(self, headers: list[tuple[bytes, bytes]]) -> Part:
        disposition = next((v for k, v in headers if k == b"content-disposition"), b"")
        kind, options = parse_options_header(disposition)
        if kind != b"form-data" or b"name" not in options:
            raise InvalidRequest("Invalid multipart body: a part lacks 'Content-Disposition: form-data; name=…'.")
        filename = options.get(b"filename")
        return Part(name=_unescape_html5(_decode(options[b"name"])),
                    filename=None if filename is None else _unescape_html5(_decode(filename)))

    async def iter_data(self) -> AsyncIterator[bytes]:
        """The current part's bytes, as they arrive."""
        while (event := await self._next_event()) is not None:
            if event[0] == "part_end":
                return
            if event[0] == "data" and event[1]:
                yield event[1]

    async def read_text(self, name: str, max_bytes: int) -> str:
        data = bytearray()
        async for chunk in self.iter_data():
            data += chunk
            if len(data) > max_bytes:
                raise InvalidRequest(f"Invalid '{name}': longer than {max_bytes} bytes.", param=name)
        return _decode(bytes(data))

    async def drain(self, seconds: float) -> None:
        """Read and drop the rest of the body, for a while, so the client (still sending) reads our error
        response instead of a connection reset. nginx's "lingering close", for the same reason."""
        if self.exhausted:
            return
        with contextlib.suppress(Exception):
            async with asyncio.timeout(seconds):
                async for _ in self._body:
                    pass
