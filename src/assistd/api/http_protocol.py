"""uvicorn's httptools protocol with a deadline on request heads.

uvicorn times out an idle keep-alive connection, but not one that is slow to send its request line and
headers: a fresh connection (or one whose next request started) can trickle a header byte now and then
and hold its socket and parser forever. Here every connection must deliver a complete request head within
``header_timeout_seconds`` of connecting, and again of its previous response; it is closed otherwise (by a
sweep every tenth of the timeout, at most every second, so up to that much later).

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


class _HeadDeadlines:
    """The head deadlines of one server's connections, checked by one timer every ``interval`` seconds.

    A deadline is a number each connection sets per request; one sweep over the open connections closes
    those past theirs (at most ``interval`` late). A timer armed and cancelled per request instead
    (``loop.call_later``) cost ~2 µs of every request, a few percent of a cached GET.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float) -> None:
        self.loop = loop
        self.interval = interval
        self.connections: set[_HeadDeadlineProtocol] = set()
        self._timer: asyncio.TimerHandle | None = None

    def watch(self, connection: _HeadDeadlineProtocol) -> None:
        self.connections.add(connection)
        if self._timer is None:
            self._timer = self.loop.call_later(self.interval, self._sweep)

    def forget(self, connection: _HeadDeadlineProtocol) -> None:
        self.connections.discard(connection)

    def _sweep(self) -> None:
        self._timer = None
        now = self.loop.time()
        late = [c for c in self.connections if c.head_deadline is not None and c.head_deadline <= now]
        for connection in late:
            connection.head_timed_out()
        if self.connections:  # no timer while no connection is open
            self._timer = self.loop.call_later(self.interval, self._sweep)


class _HeadDeadlineProtocol(HttpToolsProtocol):
    # The base class's methods are called directly, not through super(): these run several times per request.
    header_timeout = 10.0
    head_deadline: float | None = None  # loop time by which the request head must be complete
    _deadlines: _HeadDeadlines
    _in_head = True  # the bytes arriving now belong to a request line or headers
    _head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        HttpToolsProtocol.connection_made(self, transport)
        # One sweeper per server (uvicorn's ServerState is shared by its connections), so per event loop.
        deadlines = getattr(self.server_state, "assistd_head_deadlines", None)
        if deadlines is None:
            # A tenth of the timeout, at most a second: a slow head is cut off within 10% (or 1 s) of it.
            deadlines = _HeadDeadlines(self.loop, min(1.0, self.header_timeout / 10))
            self.server_state.assistd_head_deadlines = deadlines  # type: ignore[attr-defined]
        self._deadlines = deadlines
        deadlines.watch(self)
        self.head_deadline = self.loop.time() + self.header_timeout

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._head_too_large()
                return
        HttpToolsProtocol.data_received(self, data)

    def on_headers_complete(self) -> None:
        self.head_deadline = None
        self._in_head = False
        self._head_bytes = 0
        HttpToolsProtocol.on_headers_complete(self)

    def on_message_complete(self) -> None:
        self._in_head = True  # what follows is the next (pipelined) request's head
        HttpToolsProtocol.on_message_complete(self)

    def on_response_complete(self) -> None:
        HttpToolsProtocol.on_response_complete(self)
        # A pipelined request already parsed starts now; otherwise the next head must come in time.
        if not self.transport.is_closing() and not self.pipeline and self.cycle.response_complete:
            self.head_deadline = self.loop.time() + self.header_timeout

    def connection_lost(self, exc: Exception | None) -> None:
        self.head_deadline = None
        self._deadlines.forget(self)
        HttpToolsProtocol.connection_lost(self, exc)

    def _head_too_large(self) -> None:
        self.head_deadline = None
        self._in_head = False  # nothing more is parsed or counted on this connection
        if self.transport.is_closing():
            return
        log.info("closing a connection: its request head is over %s bytes", MAX_HEAD_BYTES)
        if self.cycle is None or self.cycle.response_complete:  # no response of ours is under way
            body = error_json(f"Request head too large: the request line and headers may hold at most "
                              f"{MAX_HEAD_BYTES} bytes.", "invalid_request_error", None, None)
            self.transport.write(_TOO_LARGE % (len(body), body))
        self.transport.close()

    def head_timed_out(self) -> None:
        self.head_deadline = None
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being served (its head arrived in time)
        if not self.transport.is_closing():
            log.debug("closing a connection: no complete request head within %ss", self.header_timeout)
            self.transport.close()


def protocol_with_header_timeout(seconds: float) -> type[HttpToolsProtocol]:
    """The protocol class to give ``uvicorn.run(http=...)``."""
    return type("HttpProtocol", (_HeadDeadlineProtocol,), {"header_timeout": seconds})
