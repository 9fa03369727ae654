"""Run events across processes over PostgreSQL LISTEN/NOTIFY (asyncpg); see docs/events.md.

Subscribers in this process get an event directly, as with MemoryBus; other processes get it through one
NOTIFY channel shared by every run, routed by the run channel named in the payload's header:

    "{publisher} {seq} {i}/{n} {channel}\\n{part i of n of the JSON body}"

A publisher's notifications are sent by one writer task on one connection, so they arrive in publish
order; receivers skip their own (already delivered locally) and any ``seq`` already seen (a batch resent
after a lost acknowledgement), which makes delivery exactly-once while connected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import Any

import asyncpg
import orjson

from assistd.events.base import Event
from assistd.events.relay import RETRY_SECONDS, RelayBus, why
from assistd.store.pg_tls import pg_connect

log = logging.getLogger("assistd.events")



PG_CHANNEL = "assistd_events"
MAX_PAYLOAD = 7900  # Postgres rejects payloads of 8000 bytes or more; headroom for a careful margin
_HEADER_ROOM = 64  # publisher (12) + seq + "i/n" + spaces, generously
_NOTIFY = "SELECT pg_notify($1, $2)"
_HEALTH_SECONDS = 10.0  # the listening connection is probed this often: NOTIFY alone never notices a dead TCP peer


def split_utf8(body: bytes, size: int) -> list[str]:
    """Cut ``body`` into strings of at most ``size`` bytes, never inside a multi-byte character
    (each part must be valid text for Postgres on its own)."""
    parts: list[str] = []
    start = 0
    while start < len(body):
        end = min(start + size, len(body))
        while end < len(body) and body[end] & 0xC0 == 0x80:  # a continuation byte: back off
            end -= 1
        parts.append(body[start:end].decode())
        start = end
    return parts


class PostgresBus(RelayBus):
    def __init__(self, dsn: str) -> None:
        super().__init__()
        self.dsn, self._tls = pg_connect(dsn)
        self.id = secrets.token_hex(6)
        self._own = self.id + " "
        self._seq = 0
        self._last_seq: dict[str, int] = {}  # per publisher: drops resent batches
        self._partial: dict[str, tuple[int, list[str]]] = {}  # per publisher: parts of one event so far
        self._listen_conn: asyncpg.Connection | None = None
        self._pub_conn: asyncpg.Connection | None = None

    # --- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> None:
        # The first LISTEN happens here, not in the background: once start() returns, every event
        # published anywhere reaches this process. A database down at start-up is an error.
        lost = await self._listen()
        self._running = True
        self._tasks = [asyncio.create_task(self._listen_loop(lost)), asyncio.create_task(self._write_loop())]

    def connected(self) -> bool:
        return self._running and self._listen_conn is not None

    async def _close_connections(self) -> None:
        for conn in (self._listen_conn, self._pub_conn):
            if conn is not None and not conn.is_closed():
                with contextlib.suppress(Exception):
                    await conn.close(timeout=2)
        self._listen_conn = self._pub_conn = None

    # --- publishing ----------------------------------------------------------------------------------

    def encode(self, channel: str, event: Event) -> list[str]:
        """The notification payloads carrying one event, in order."""
        if "\n" in channel:
            raise ValueError(f"channel names cannot contain a newline: {channel!r}")
        budget = MAX_PAYLOAD - _HEADER_ROOM - len(channel.encode())
        if budget < 1024:
            raise ValueError(f"channel name too long for NOTIFY: {channel[:40]!r}…")
        body = orjson.dumps({"n": event.name, "d": event.data})
        self._seq += 1
        chunks = [body.decode()] if len(body) <= budget else split_utf8(body, budget)
        n = len(chunks)
        return [f"{self.id} {self._seq} {i}/{n} {channel}\n{chunk}" for i, chunk in enumerate(chunks)]

    async def _send(self, batch: list[list[str]]) -> None:
        # A pipelined executemany: one round trip, one implicit transaction, parts kept in order.
        args = [(PG_CHANNEL, payload) for parts in batch for payload in parts]
        loop = asyncio.get_running_loop()
        deadline, delay = loop.time() + RETRY_SECONDS, 0.05
        while True:
            try:
                if self._pub_conn is None or self._pub_conn.is_closed():
                    self._pub_conn = await asyncpg.connect(self.dsn, timeout=5, **self._tls)
                if len(args) == 1:
                    await self._pub_conn.execute(_NOTIFY, *args[0], timeout=5)
                else:
                    await self._pub_conn.executemany(_NOTIFY, args, timeout=5)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # A query error (not a lost connection) would fail again: drop at once.
                fatal = isinstance(exc, asyncpg.PostgresError) and not isinstance(
                    exc, asyncpg.PostgresConnectionError | asyncpg.exceptions.OperatorInterventionError)
                if self._pub_conn is not None:
                    self._pub_conn.terminate()
                    self._pub_conn = None
                if fatal or loop.time() + delay > deadline:
                    log.error("dropped %d event notification(s): %s", len(args), why(exc))
                    return
                # Resending may duplicate a batch whose commit we did not hear of: receivers skip its seqs.
                log.warning("sending event notifications failed (%s); retrying in %.2fs", why(exc), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    # --- receiving -----------------------------------------------------------------------------------

    async def _listen(self) -> asyncio.Event:
        conn = await asyncpg.connect(self.dsn, timeout=5, **self._tls)
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        try:
            await conn.add_listener(PG_CHANNEL, self._on_notify)
        except BaseException:
            conn.terminate()
            raise
        self._listen_conn = conn
        return lost

    async def _listen_loop(self, lost: asyncio.Event) -> None:
        delay = 0.1
        while True:
            conn = self._listen_conn
            while conn is not None and not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), _HEALTH_SECONDS)
                if not lost.is_set():
                    try:
                        await conn.fetchval("SELECT 1", timeout=5)
                    except asyncio.CancelledError:
                        raise
                    except Exception:
                        break
            if conn is not None:
                conn.terminate()
                self._listen_conn = None
                # What is sent while we are away is lost: the streams open now end with an error event.
                log.warning("event bus: lost the LISTEN connection; reconnecting")
                self._interrupt_streams()
            self._partial.clear()
            await asyncio.sleep(delay)
            try:
                lost = await self._listen()
                log.warning("event bus: LISTEN connection re-established")
                delay = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = min(delay * 2, 5.0)
                log.warning("event bus: reconnecting to PostgreSQL failed (%s); next try in %.1fs", why(exc), delay)

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        if payload.startswith(self._own):
            return  # ours: local subscribers already have it
        try:
            head, _, chunk = payload.partition("\n")
            publisher, seq_text, part, channel = head.split(" ", 3)
            seq = int(seq_text)
            i_text, _, n_text = part.partition("/")
            i, n = int(i_text), int(n_text)
        except ValueError:
            log.warning("event bus: ignoring a malformed notification %r", payload[:80])
            return
        if i == 0:
            if seq <= self._last_seq.get(publisher, 0):
                return  # a resent batch
            self._last_seq[publisher] = seq
            self._partial.pop(publisher, None)
            if channel not in self._subscribers:
                return  # nobody here streams this run: drop before parsing the JSON
            if n == 1:
                self._deliver(channel, chunk)
            else:
                self._partial[publisher] = (seq, [chunk])
            return
        pending = self._partial.get(publisher)
        if pending is None or pending[0] != seq or len(pending[1]) != i:
            return  # the head was dropped (no subscriber then) or lost in a reconnect
        pending[1].append(chunk)
        if i + 1 == n:
            del self._partial[publisher]
            self._deliver(channel, "".join(pending[1]))

    def _deliver(self, channel: str, body: str) -> None:
        try:
            raw = orjson.loads(body)
            event = Event(raw["n"], raw["d"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("event bus: ignoring an undecodable event on %s", channel)
            return
        for sub in self._subscribers.get(channel, ()):
            sub.queue.put_nowait(event)
