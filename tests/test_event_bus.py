"""One contract for every event bus backend, without the HTTP server.

Each contract test runs on a *topology*: ``local`` publishes and subscribes on one bus instance (direct
delivery), ``remote`` publishes on one instance and subscribes on another (two processes' worth of
buses: NOTIFY or Redis in between). A backend whose server is unreachable is skipped with the reason,
except PostgreSQL when ``CI=true``. Channels are random per test: other test runs may share the servers.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import secrets
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from assistd.events import Event, EventBus, MemoryBus, Subscription, create_bus
from assistd.events.postgres import MAX_PAYLOAD, PG_CHANNEL, PostgresBus
from assistd.events.redis import RedisBus

PG_URL = os.environ.get("ASSISTD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("ASSISTD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
SRC = str(Path(__file__).resolve().parents[1] / "src")


def run(coro: Coroutine[Any, Any, None], timeout: float = 20) -> None:
    asyncio.run(asyncio.wait_for(coro, timeout))


@functools.cache
def unreachable(backend: str) -> str | None:
    """Why ``backend``'s server cannot be used, or None."""

    async def probe() -> None:
        if backend == "postgres":
            import asyncpg

            conn = await asyncpg.connect(PG_URL, timeout=2)
            await conn.close()
        elif backend == "redis":
            from redis.asyncio import Redis

            client = Redis.from_url(REDIS_URL, socket_connect_timeout=2)
            try:
                await client.ping()
            finally:
                await client.aclose()

    try:
        asyncio.run(asyncio.wait_for(probe(), 5))
    except Exception as exc:
        return f"{backend} unreachable ({type(exc).__name__}: {exc})"
    return None


def require(backend: str) -> None:
    reason = unreachable(backend)
    if reason is None:
        return
    if backend == "postgres" and os.environ.get("CI") == "true":
        pytest.fail(reason + "; CI=true requires PostgreSQL")
    pytest.skip(reason)


def new_bus(backend: str) -> EventBus:
    return {"memory": MemoryBus, "postgres": lambda: PostgresBus(PG_URL), "redis": lambda: RedisBus(REDIS_URL)}[
        backend]()


@contextlib.asynccontextmanager
async def started(*backends: str) -> AsyncIterator[list[EventBus]]:
    buses = [new_bus(b) for b in backends]
    try:
        for bus in buses:
            await bus.start()
        yield buses
    finally:
        for bus in buses:
            await bus.aclose()


Pair = Callable[[], contextlib.AbstractAsyncContextManager[tuple[EventBus, EventBus]]]


@pytest.fixture(params=["memory-local", "postgres-local", "postgres-remote", "redis-local", "redis-remote"])
def pair(request: pytest.FixtureRequest) -> Pair:
    """(publishing bus, subscribing bus): the same instance, or two."""
    backend, topology = request.param.split("-")
    require(backend)

    @contextlib.asynccontextmanager
    async def make() -> AsyncIterator[tuple[EventBus, EventBus]]:
        async with started(*[backend] * (1 if topology == "local" else 2)) as buses:
            yield buses[0], buses[-1]

    return make


@pytest.fixture(params=["postgres", "redis"])
def remote(request: pytest.FixtureRequest) -> str:
    require(request.param)
    return request.param


def channel() -> str:
    return "run:test_" + secrets.token_hex(6)


async def take(sub: Subscription, n: int, timeout: float = 5) -> list[Event]:
    out = []
    for _ in range(n):
        event = await sub.get(timeout)
        assert event is not None, f"only {len(out)} of {n} events arrived"
        out.append(event)
    return out


async def silent(sub: Subscription, wait: float = 0.1) -> bool:
    return await sub.get(wait) is None


def big_event() -> Event:
    # ~300 KB, with 2-, 3- and 4-byte UTF-8 characters so NOTIFY parts must be cut between characters.
    return Event("thread.run.created", {"instructions": "é€𝄞 ab" * 30_000, "n": list(range(100))})


# --- the contract, every backend and topology ------------------------------------------------------


def test_order_of_1000_events(pair: Pair) -> None:
    async def body() -> None:
        async with pair() as (pub, bus):
            ch = channel()
            sub = await bus.subscribe(ch)
            for i in range(1000):
                await pub.publish(ch, Event("thread.message.delta", {"i": i}))
            assert [e.data["i"] for e in await take(sub, 1000)] == list(range(1000))
            assert await silent(sub)  # and nothing twice

    run(body())


def test_no_event_for_other_channels(pair: Pair) -> None:
    async def body() -> None:
        async with pair() as (pub, bus):
            mine, other = channel(), channel()
            sub = await bus.subscribe(mine)
            await pub.publish(other, Event("other", {}))
            await pub.publish(mine, Event("mine", {}))
            assert (await take(sub, 1))[0].name == "mine"
            assert await silent(sub)

    run(body())


def test_two_subscribers_get_everything(pair: Pair) -> None:
    async def body() -> None:
        async with pair() as (pub, bus):
            ch = channel()
            first, second = await bus.subscribe(ch), await bus.subscribe(ch)
            for i in range(50):
                await pub.publish(ch, Event("e", {"i": i}))
            for sub in (first, second):
                assert [e.data["i"] for e in await take(sub, 50)] == list(range(50))

    run(body())


def test_close_stops_delivery(pair: Pair) -> None:
    async def body() -> None:
        async with pair() as (pub, bus):
            ch = channel()
            kept, closed = await bus.subscribe(ch), await bus.subscribe(ch)
            await closed.close()
            await pub.publish(ch, Event("after-close", {}))
            assert (await take(kept, 1))[0].name == "after-close"
            assert await silent(closed)

    run(body())


def test_large_event_arrives_intact(pair: Pair) -> None:
    async def body() -> None:
        async with pair() as (pub, bus):
            ch = channel()
            sub = await bus.subscribe(ch)
            await pub.publish(ch, Event("before", {}))
            await pub.publish(ch, big_event())
            await pub.publish(ch, Event("after", {}))
            before, big, after = await take(sub, 3)
            assert (before.name, after.name) == ("before", "after")
            assert big == big_event()

    run(body())


def test_get_returns_none_on_silence(pair: Pair) -> None:
    async def body() -> None:
        async with pair() as (_, bus):
            sub = await bus.subscribe(channel())
            started_at = time.monotonic()
            assert await sub.get(timeout=0.1) is None
            assert time.monotonic() - started_at < 1

    run(body())


# --- across processes (postgres, redis) ------------------------------------------------------------


def test_subscriber_on_the_publishing_instance_gets_each_event_once(remote: str) -> None:
    async def body() -> None:
        async with started(remote, remote) as (a, b):
            ch = channel()
            here, there = await a.subscribe(ch), await b.subscribe(ch)
            for i in range(100):
                await a.publish(ch, Event("e", {"i": i}))
            for sub in (here, there):
                assert [e.data["i"] for e in await take(sub, 100)] == list(range(100))
            assert await silent(here, 0.2)  # its own notifications came back and were skipped
            assert await silent(there)

    run(body())


def test_concurrent_publishers_do_not_interleave_within_a_channel(remote: str) -> None:
    async def body() -> None:
        async with started(remote, remote, remote) as (a, c, b):
            channels = [channel() for _ in range(4)]
            subs = [await b.subscribe(ch) for ch in channels]
            local = await a.subscribe(channels[0])

            async def publish(bus: EventBus, ch: str) -> None:
                for i in range(200):
                    await bus.publish(ch, Event("e", {"ch": ch, "i": i}))
                    await asyncio.sleep(0)  # let the other publishers in between

            await asyncio.gather(*(publish(bus, ch) for bus, ch in zip([a, a, c, c], channels, strict=True)))
            for ch, sub in zip(channels, subs, strict=True):
                assert [(e.data["ch"], e.data["i"]) for e in await take(sub, 200)] == [(ch, i) for i in range(200)]
                assert await silent(sub, 0.05)
            assert [e.data["i"] for e in await take(local, 200)] == list(range(200))

    run(body())


PUBLISHER = textwrap.dedent("""
    import asyncio, sys
    from assistd.events import Event
    from assistd.events.postgres import PostgresBus
    from assistd.events.redis import RedisBus

    async def main(backend, url, ch, n):
        bus = PostgresBus(url) if backend == "postgres" else RedisBus(url)
        await bus.start()
        await bus.publish(ch, Event("big", {"s": "é€𝄞" * 80_000}))
        for i in range(n):
            await bus.publish(ch, Event("e", {"i": i}))
        await bus.aclose()  # sends what is queued first

    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
""")


def test_events_from_another_process_arrive_once_in_order(remote: str) -> None:
    async def body() -> None:
        async with started(remote) as (bus,):
            ch = channel()
            sub = await bus.subscribe(ch)
            env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", PUBLISHER, remote, PG_URL if remote == "postgres" else REDIS_URL, ch, "500",
                env=env, stderr=subprocess.PIPE)
            _, stderr = await proc.communicate()
            assert proc.returncode == 0, stderr.decode()
            big, *rest = await take(sub, 501)
            assert big.data == {"s": "é€𝄞" * 80_000}
            assert [e.data["i"] for e in rest] == list(range(500))
            assert await silent(sub)

    run(body())


def test_listener_reconnects_after_losing_its_connection(remote: str) -> None:
    async def body() -> None:
        async with started(remote, remote) as (a, b):
            ch = channel()
            sub = await b.subscribe(ch)
            await kill_connection(b, "sub")
            # What a sends while b is away may be lost: b's streams hear so at once, then events flow again.
            interrupted = await sub.get(10)
            assert interrupted is not None and interrupted.name == "error", interrupted
            for i in range(200):
                await a.publish(ch, Event("probe", {"i": i}))
                if await sub.get(0.05) is not None:
                    break
            else:
                pytest.fail("the bus did not reconnect")
            for i in range(20):
                await a.publish(ch, Event("after", {"i": i}))
            after: list[Event] = []
            while len(after) < 20:
                event = await sub.get(2)
                assert event is not None, f"only {len(after)} events after reconnecting"
                if event.name == "after":
                    after.append(event)
            assert [e.data["i"] for e in after] == list(range(20))

    run(body())


def test_health_probes_keep_a_quiet_connection(remote: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import assistd.events.postgres
    import assistd.events.redis

    module = assistd.events.postgres if remote == "postgres" else assistd.events.redis
    monkeypatch.setattr(module, "_HEALTH_SECONDS", 0.05)

    async def body() -> None:
        async with started(remote, remote) as (a, b):
            def listening() -> object:
                return b._listen_conn if isinstance(b, PostgresBus) else b._sub  # type: ignore[attr-defined]

            before = listening()
            await asyncio.sleep(0.25)  # several probes, all answered: no reconnect
            assert listening() is before
            ch = channel()
            sub = await b.subscribe(ch)
            await a.publish(ch, Event("e", {}))
            assert (await take(sub, 1))[0].name == "e"

    run(body())


def test_publisher_reconnects_and_resends(remote: str) -> None:
    async def body() -> None:
        async with started(remote, remote) as (a, b):
            ch = channel()
            sub = await b.subscribe(ch)
            await a.publish(ch, Event("e", {"i": 0}))
            await take(sub, 1)
            await kill_connection(a, "pub")  # the next send fails, reconnects and is sent again
            for i in range(1, 21):
                await a.publish(ch, Event("e", {"i": i}))
            assert [e.data["i"] for e in await take(sub, 20)] == list(range(1, 21))
            assert await silent(sub)

    run(body())


async def kill_connection(bus: EventBus, role: str) -> None:
    """Cut one of ``bus``'s server connections from the server side, as a failover or restart would."""
    if isinstance(bus, PostgresBus):
        import asyncpg

        target = bus._listen_conn if role == "sub" else bus._pub_conn
        assert target is not None
        conn = await asyncpg.connect(PG_URL)
        try:
            assert await conn.fetchval("SELECT pg_terminate_backend($1)", target.get_server_pid())
        finally:
            await conn.close()
    else:
        assert isinstance(bus, RedisBus)
        from redis.asyncio import Redis

        client = Redis.from_url(REDIS_URL)
        try:
            clients = await client.client_list()
            [mine] = [c for c in clients if c["name"] == f"assistd-events-{role}-{bus.id}"]
            await client.client_kill_filter(_id=mine["id"])
        finally:
            await client.aclose()


def test_publish_to_receive_latency(remote: str) -> None:
    async def body() -> None:
        async with started(remote, remote) as (a, b):
            ch = channel()
            sub = await b.subscribe(ch)
            latencies = []
            for i in range(200):
                sent = time.perf_counter()
                await a.publish(ch, Event("e", {"i": i}))
                assert await sub.get(2) is not None
                latencies.append(time.perf_counter() - sent)
            p50 = statistics.median(latencies) * 1000
            print(f"{remote}: publish→receive across two buses, p50 {p50:.2f} ms")
            assert p50 < 50  # generous: catches polling or batching delays, not a slow shared machine

    run(body())


# --- PostgreSQL specifics --------------------------------------------------------------------------


def test_notify_payloads_stay_under_the_limit() -> None:
    payloads = PostgresBus(PG_URL).encode("run:x", big_event())
    assert len(payloads) > 30
    assert max(len(p.encode()) for p in payloads) < min(MAX_PAYLOAD, 8000)
    assert [p.split(" ", 3)[2] for p in payloads] == [f"{i}/{len(payloads)}" for i in range(len(payloads))]


def test_resent_notifications_are_delivered_once() -> None:
    require("postgres")

    async def body() -> None:
        import asyncpg

        async with started("postgres") as (bus,):
            ch = channel()
            sub = await bus.subscribe(ch)
            conn = await asyncpg.connect(PG_URL)
            try:
                for seq in (1, 1, 2, 1, 3):  # a batch resent after a lost acknowledgement, say
                    payload = f'otherbus {seq} 0/1 {ch}\n{{"n":"e","d":{{"seq":{seq}}}}}'
                    await conn.execute("SELECT pg_notify($1, $2)", PG_CHANNEL, payload)
            finally:
                await conn.close()
            assert [e.data["seq"] for e in await take(sub, 3)] == [1, 2, 3]
            assert await silent(sub)

    run(body())


# --- choosing a backend ----------------------------------------------------------------------------


def test_create_bus_follows_the_settings() -> None:
    pg, sqlite = "postgresql://u@h:5432/db", "sqlite:///./x.db"
    assert isinstance(create_bus(SimpleNamespace(database_url=sqlite)), MemoryBus)
    assert type(create_bus(SimpleNamespace(database_url=sqlite, redis_url=None))) is MemoryBus
    assert isinstance(create_bus(SimpleNamespace(database_url=pg)), PostgresBus)
    assert isinstance(create_bus(SimpleNamespace(database_url="postgresql+asyncpg://u@h/db")), PostgresBus)
    assert isinstance(create_bus(SimpleNamespace(database_url=pg, redis_url=REDIS_URL)), RedisBus)
    assert isinstance(create_bus(SimpleNamespace(database_url=sqlite, redis_url=REDIS_URL)), RedisBus)
