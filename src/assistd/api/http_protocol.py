"""uvicorn's httptools protocol with a deadline on request heads.

uvicorn times out an idle keep-alive connection, but not one that is slow to send its request line and
headers: a fresh connection (or one whose next request started) can trickle a header byte now and then
and hold its socket and parser forever. Here every connection must deliver a complete request head within
``header_timeout_seconds`` of connecting, and again of its previous response; it is closed otherwise.

A request head is also bounded in size (``MAX_HEAD_BYTES``): httptools has no limit of its own and joins a
long header value piece by piece, in time quadratic in its length, on the event loop: one keyless
connection trickling 50 MB of a single header stalled every request for seconds. A head over the limit
gets a 431 and the connection is closed.

The same deadline bounds a body the app answered without reading (a 401, a 413): uvicorn keeps reading and
dropping it after the response, and a client still sending it when the deadline passes is cut off. While
the app reads a body, api/request_body.py's timeout applies instead.
"""

from __future__ import annotations

import asyncio
import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from assistd.errors import error_json

log = logging.getLogger("assistd.api")


# A request line and headers together; nginx's default is 4 × 8 KiB per header, 8 KiB for the line. Counted
# per network read (at most 256 KiB), so a head up to 768 KiB is always accepted whatever follows it.
MAX_HEAD_BYTES = 1024 * 1024
_TOO_LARGE = (b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
              b"connection: close\r\ncontent-length: %d\r\n\r\n%s")


class _HeadDeadlineProtocol(HttpToolsProtocol):
    header_timeout = 10.0
    _head_timer: asyncio.TimerHandle | None = None
    _in_head = True  # the bytes arriving now belong to a request line or headers
    _head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._head_too_large()
                return
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._cancel_head_timer()
        self._in_head = False
        self._head_bytes = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_head = True  # what follows is the next (pipelined) request's head
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # A pipelined request already parsed starts now; otherwise the next head must come in time.
        if not self.transport.is_closing() and not self.pipeline and self.cycle.response_complete:
            self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_large(self) -> None:
        self._cancel_head_timer()
        self._in_head = False  # nothing more is parsed or counted on this connection
        if self.transport.is_closing():
            return
        log.info("closing a connection: its request head is over %s bytes", MAX_HEAD_BYTES)
        if self.cycle is None or self.cycle.response_complete:  # no response of ours is under way
            body = error_json(f"Request head too large: the request line and headers may hold at most "
                              f"{MAX_HEAD_BYTES} bytes.", "invalid_request_error", None, None)
            self.transport.write(_TOO_LARGE % (len(body), body))
        self.transport.close()

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being served (its head arrived in time)
        if not self.transport.is_closing():
            log.debug("closing a connection: no complete request head within %ss", self.header_timeout)
            self.transport.close()


def protocol_with_header_timeout(seconds: float) -> type[HttpToolsProtocol]:
    """The protocol class to give ``uvicorn.run(http=...)``."""
    return type("HttpProtocol", (_HeadDeadlineProtocol,), {"header_timeout": seconds})
