"""``assistd worker --metrics-port``: /metrics (and /healthz) on a process that serves no API.

A few lines of asyncio instead of prometheus_client's threaded server: the queue gauges are read with the
process's own async database engine, on its own loop.
"""

from __future__ import annotations

import asyncio
import contextlib

from assistd.observability import metrics, scrape

_READ_TIMEOUT = 10.0


async def start(host: str, port: int, gauges: metrics.ScrapeGauges | None) -> asyncio.Server:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _READ_TIMEOUT)
            parts = head.split(b" ", 2)
            path = parts[1].split(b"?", 1)[0] if len(parts) > 1 else b""
            if parts[0] == b"GET" and path == b"/metrics":
                status, ctype, body = b"200 OK", metrics.CONTENT_TYPE.encode(), await scrape.exposition(gauges)
            elif parts[0] == b"GET" and path == b"/healthz":
                status, ctype, body = b"200 OK", b"application/json", b'{"status":"ok"}'
            else:
                status, ctype, body = b"404 Not Found", b"text/plain", b"not found\n"
            writer.write(b"HTTP/1.1 " + status + b"\r\ncontent-type: " + ctype + b"\r\ncontent-length: "
                         + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body)
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    return await asyncio.start_server(answer, host, port)
