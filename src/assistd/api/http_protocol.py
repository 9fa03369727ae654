"""uvicorn's httptools protocol with a deadline on request heads.

uvicorn times out an idle keep-alive connection, but not one that is slow to send its request line and
headers: a fresh connection (or one whose next request started) can trickle a header byte now and then
and hold its socket and parser forever. Here every connection must deliver a complete request head within
``header_timeout_seconds`` of connecting, and again of its previous response; it is closed otherwise.

The same deadline bounds a body the app answered without reading (a 401, a 413): uvicorn keeps reading and
dropping it after the response, and a client still sending it when the deadline passes is cut off. While
the app reads a body, api/request_body.py's timeout applies instead.
"""

from __future__ import annotations

import asyncio
import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("assistd.api")


class _HeadDeadlineProtocol(HttpToolsProtocol):
    header_timeout = 10.0
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._cancel_head_timer()
        super().on_headers_complete()

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
