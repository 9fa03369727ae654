"""Server-sent events for a run, in the hosted API's wire format (``event: NAME`` / ``data: JSON``).

The stream ends after the run's last event (``completed``, ``failed``, ``cancelled``, ``expired``,
``incomplete``) or when it stops for the client (``requires_action``), with ``event: done`` /
``data: [DONE]``. A client that disconnects only closes its subscription: the run goes on.
When nothing is heard for a while the stream sends a keep-alive comment and checks the stored run, so it
ends even if the process executing the run could not deliver its events here.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Awaitable, Callable

import orjson
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from assistd.events.base import Event, Subscription, error_event
from assistd.observability import metrics

log = logging.getLogger("assistd.sse")

STOP_EVENTS = frozenset({
    "thread.run.completed", "thread.run.failed", "thread.run.cancelled", "thread.run.expired",
    "thread.run.incomplete", "thread.run.requires_action",
})
_STOP_STATUSES = {name.removeprefix("thread.run."): name for name in STOP_EVENTS}
KEEPALIVE_SECONDS = 1.0
DONE = b"event: done\ndata: [DONE]\n\n"


def encode(event: Event) -> bytes:
    return b"event: " + event.name.encode() + b"\ndata: " + orjson.dumps(event.data) + b"\n\n"


_BATCH = 64  # events written together at most


def _stops(event: Event) -> bool:
    return event.name in STOP_EVENTS or event.name == "error"


def _queued(subscription: Subscription) -> Event | None:
    """The next event already waiting, without waiting."""
    return subscription.ready()


def _with_waiting(subscription: Subscription, event: Event) -> tuple[bytes, bool]:
    """``event`` and the events already queued behind it, encoded as one write (a run's events come in
    bursts: a transaction's outbox, deltas faster than the client reads); True when the stream ends there.
    Same bytes, fewer sends and wake-ups."""
    parts = [encode(event)]
    while not _stops(event) and len(parts) < _BATCH and (queued := _queued(subscription)) is not None:
        event = queued
        parts.append(encode(event))
    return b"".join(parts), _stops(event)


async def run_events(
    subscription: Subscription, load_run: Callable[[], Awaitable[dict | None]]
) -> AsyncGenerator[bytes, None]:
    idle = 0.0
    metrics.active_streams.inc()
    try:
        while True:
            # On a busy loop the wait can time out in the same turn as an event arrives: look again.
            event = await subscription.get(timeout=KEEPALIVE_SECONDS) or _queued(subscription)
            if event is not None:
                idle = 0.0
                chunk, stop = _with_waiting(subscription, event)
                yield chunk
                if stop:
                    break
                continue
            idle += KEEPALIVE_SECONDS
            yield b": keep-alive\n\n"
            if idle >= 5 * KEEPALIVE_SECONDS:
                idle = 0.0
                run = await load_run()
                if run is None or run["status"] in _STOP_STATUSES:
                    # Events that came in meanwhile precede the state read: send them first (they may
                    # end with the run's own last event).
                    stop = False
                    while not stop and (queued := _queued(subscription)) is not None:
                        chunk, stop = _with_waiting(subscription, queued)
                        yield chunk
                    if run is not None and not stop:
                        yield encode(Event(_STOP_STATUSES[run["status"]], run))
                    break
        yield DONE
    except Exception as exc:  # after the first byte an error can only travel as an event
        log.exception("stream failed")
        yield encode(error_event(f"Stream failed: {type(exc).__name__}"))
        yield DONE
    finally:
        metrics.active_streams.dec()
        await subscription.close()


class EventStreamResponse(StreamingResponse):
    """Closes its body when the response ends however it ends. A client that goes away while a chunk is
    being sent leaves Starlette's loop with the generator parked at its ``yield``: without this, the
    generator (and the run subscription it holds, queueing every later event of the run) stays open
    until the garbage collector finds it."""

    body_iterator: AsyncGenerator[bytes, None]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.body_iterator.aclose()


def sse_response(body: AsyncGenerator[bytes, None]) -> StreamingResponse:
    return EventStreamResponse(body, media_type="text/event-stream",
                               headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
