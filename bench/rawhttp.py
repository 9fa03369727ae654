"""A minimal HTTP/1.1 keep-alive client on asyncio streams, for benchmarks with many concurrent requests and
streams (httpx's pool, not the server, is the bottleneck at a thousand streams).

Handles what assistd and the dev upstream send: ``Content-Length`` bodies and ``Transfer-Encoding:
chunked`` streams (SSE). ``Connection.stream`` yields the body as it arrives, for time-to-first-token.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        return orjson.loads(self.body)


class Connection:
    def __init__(self, host: str, port: int, headers: dict[str, str] | None = None) -> None:
        self.host, self.port = host, port
        self.base_headers = {"host": f"{host}:{port}", **{k.lower(): v for k, v in (headers or {}).items()}}
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> Connection:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port, limit=1 << 20)
        return self

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
            self.writer = self.reader = None

    def _send(self, method: str, path: str, body: object | None) -> None:
        assert self.writer is not None, "open() first"
        raw = b"" if body is None else orjson.dumps(body)
        headers = dict(self.base_headers)
        if body is not None:
            headers["content-type"] = "application/json"
            headers["content-length"] = str(len(raw))
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        self.writer.write(head.encode() + raw)

    async def _head(self) -> tuple[int, dict[str, str]]:
        assert self.reader is not None
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        return status, headers

    async def _body(self, headers: dict[str, str]) -> AsyncIterator[bytes]:
        assert self.reader is not None
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")  # no trailers from our servers
                    return
                chunk = await self.reader.readexactly(size + 2)
                yield chunk[:-2]
        elif "content-length" in headers:
            n = int(headers["content-length"])
            if n:
                yield await self.reader.readexactly(n)
        else:  # until the server closes
            while chunk := await self.reader.read(65536):
                yield chunk

    async def request(self, method: str, path: str, body: object | None = None) -> Response:
        self._send(method, path, body)
        status, headers = await self._head()
        parts = [chunk async for chunk in self._body(headers)]
        return Response(status, headers, b"".join(parts))

    async def stream(self, method: str, path: str, body: object | None = None) -> AsyncIterator[bytes]:
        """The body's pieces as they arrive; raises RuntimeError on a non-200 answer."""
        self._send(method, path, body)
        status, headers = await self._head()
        if status != 200:
            rest = b"".join([chunk async for chunk in self._body(headers)])
            raise RuntimeError(f"{method} {path}: HTTP {status} {rest[:300]!r}")
        async for chunk in self._body(headers):
            yield chunk


async def sse_events(pieces: AsyncIterator[bytes]) -> AsyncIterator[tuple[str | None, bytes]]:
    """(event name, data) for each server-sent event in a stream of body pieces."""
    buf = b""
    async for piece in pieces:
        buf += piece
        while (end := buf.find(b"\n\n")) >= 0:
            block, buf = buf[:end], buf[end + 2:]
            name, data = None, []
            for line in block.split(b"\n"):
                if line.startswith(b"event: "):
                    name = line[7:].decode()
                elif line.startswith(b"data: "):
                    data.append(line[6:])
            if data or name:
                yield name, b"\n".join(data)
