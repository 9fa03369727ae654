"""Run events across processes over Redis pub/sub (``redis.asyncio``); see docs/events.md.

Same design as PostgresBus: local subscribers get an event directly; other processes get it through one
Redis channel shared by every run, routed by the run channel in the message header:

    b"{publisher} {seq} {channel}\\n{JSON body}"

No size limit applies, so there are no parts. One writer task sends, in publish order; receivers skip
their own messages and any ``seq`` already seen (a pipeline resent after a lost reply).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from assistd.events.base import Event
from assistd.events.relay import RETRY_SECONDS, RelayBus, why

log = logging.getLogger("assistd.events")



REDIS_CHANNEL = "assistd:events"
_HEALTH_SECONDS = 5.0  # silence this long on the subscriber connection → PING; no answer → reconnect


class RedisBus(RelayBus):
    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self.id = secrets.token_hex(6)
        self._own = (self.id + " ").encode()
        self._seq = 0
        self._last_seq: dict[bytes, int] = {}  # per publisher: drops resent messages
        self._pub: Redis | None = None
        self._sub: tuple[Redis, PubSub] | None = None

    def _client(self, role: str) -> Redis:
        # No hidden retries: failures surface here, get logged, and are retried with backoff by us.
        return Redis.from_url(self.url, retry=Retry(NoBackoff(), 0), socket_connect_timeout=5,
                              socket_keepalive=True, client_name=f"assistd-events-{role}-{self.id}")

    # --- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> None:
        # Subscribed (confirmed by Redis) before start() returns: from then on nothing published is missed.
        try:
            await self._subscribe()
        except BaseException:
            await self._drop_sub()
            raise
        self._pub = self._client("pub")
        self._running = True
        self._tasks = [asyncio.create_task(self._read_loop()), asyncio.create_task(self._write_loop())]

    def connected(self) -> bool:
        return self._running and self._sub is not None

    async def _close_connections(self) -> None:
        await self._drop_sub()
        if self._pub is not None:
            with contextlib.suppress(Exception):
                await self._pub.aclose()
            self._pub = None

    # --- publishing ----------------------------------------------------------------------------------

    def encode(self, channel: str, event: Event) -> bytes:
        if "\n" in channel:
            raise ValueError(f"channel names cannot contain a newline: {channel!r}")
        self._seq += 1
        return f"{self.id} {self._seq} {channel}\n".encode() + orjson.dumps({"n": event.name, "d": event.data})

    async def _send(self, batch: list[bytes]) -> None:
        assert self._pub is not None
        loop = asyncio.get_running_loop()
        deadline, delay = loop.time() + RETRY_SECONDS, 0.05
        while True:
            try:
                if len(batch) == 1:
                    await self._pub.publish(REDIS_CHANNEL, batch[0])
                else:
                    pipe = self._pub.pipeline(transaction=False)
                    for message in batch:
                        pipe.publish(REDIS_CHANNEL, message)
                    await pipe.execute()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if loop.time() + delay > deadline:
                    log.error("dropped %d event message(s): %s", len(batch), why(exc))
                    return
                # Resending may duplicate messages Redis did take: receivers skip their seqs.
                log.warning("publishing events to Redis failed (%s); retrying in %.2fs", why(exc), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    # --- receiving -----------------------------------------------------------------------------------

    async def _subscribe(self) -> PubSub:
        client = self._client("sub")
        pubsub = client.pubsub()
        self._sub = (client, pubsub)
        await pubsub.subscribe(REDIS_CHANNEL)
        reply = await pubsub.get_message(timeout=5)
        if reply is None or reply["type"] != "subscribe":
            raise ConnectionError(f"Redis did not confirm SUBSCRIBE {REDIS_CHANNEL}: {reply!r}")
        return pubsub

    async def _drop_sub(self) -> None:
        if self._sub is not None:
            client, pubsub = self._sub
            self._sub = None
            with contextlib.suppress(Exception):
                await pubsub.aclose()
            with contextlib.suppress(Exception):
                await client.aclose()

    async def _read_loop(self) -> None:
        delay = 0.1
        while True:
            try:
                if self._sub is None:
                    pubsub = await self._subscribe()
                    log.warning("event bus: Redis subscription re-established")
                    delay = 0.1
                else:
                    pubsub = self._sub[1]
                await self._read(pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Messages sent while we were away are gone: the streams open now end with an error event.
                log.warning("event bus: Redis subscription lost (%s); reconnecting in %.1fs", why(exc), delay)
                if self._sub is not None:
                    self._interrupt_streams()
                await self._drop_sub()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _read(self, pubsub: PubSub) -> None:
        unanswered = False
        while True:
            message = await pubsub.get_message(timeout=_HEALTH_SECONDS)
            if message is None:
                # A dead peer may never close the socket: ask, and give up if still nothing comes.
                if unanswered:
                    raise ConnectionError(f"no answer to PING within {_HEALTH_SECONDS}s")
                unanswered = True
                await pubsub.ping()
                continue
            unanswered = False
            if message["type"] == "message":
                self._on_message(message["data"])

    def _on_message(self, data: Any) -> None:
        if data.startswith(self._own):
            return  # ours: local subscribers already have it
        try:
            head, _, body = data.partition(b"\n")
            publisher, seq_text, channel_bytes = head.split(b" ", 2)
            seq = int(seq_text)
            channel = channel_bytes.decode()
        except (ValueError, UnicodeDecodeError):
            log.warning("event bus: ignoring a malformed message %r", bytes(data[:80]))
            return
        if seq <= self._last_seq.get(publisher, 0):
            return  # resent
        self._last_seq[publisher] = seq
        subs = self._subscribers.get(channel)
        if not subs:
            return  # nobody here streams this run: drop before parsing the JSON
        try:
            raw = orjson.loads(body)
            event = Event(raw["n"], raw["d"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("event bus: ignoring an undecodable event on %s", channel)
            return
        for sub in subs:
            sub.queue.put_nowait(event)
