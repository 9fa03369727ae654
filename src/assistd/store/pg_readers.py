"""PostgreSQL's fast single-row reads (``Database.fetch_row``): a few asyncpg connections of their own, in
autocommit, statements prepared once per connection — one round trip where a ``read()`` takes three."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Sequence
from typing import Any

from assistd.store.errors import FastReadUnavailable
from assistd.store.pg_tls import pg_connect


class PgReaders:
    """A small pool of asyncpg connections for ``fetch_row``: autocommit SELECTs only, so a connection goes
    back as it came (no reset round trip); one that fails is dropped."""

    MAX_CONNECTIONS = 12

    def __init__(self, url: str) -> None:
        self.dsn, self._tls = pg_connect(url)
        self._idle: list[Any] = []
        self._size = 0
        self._waiters: list[asyncio.Future[Any]] = []
        self._sql: dict[str, str] = {}  # ``?`` → ``$n``
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None  # connections belong to the loop that made them

    def _numbered(self, sql: str) -> str:
        converted = self._sql.get(sql)
        if converted is None:
            count = iter(range(1, sql.count("?") + 1))
            converted = self._sql[sql] = re.sub(r"\?", lambda _m: f"${next(count)}", sql)
        return converted

    async def fetch_row(self, sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
        import asyncpg

        conn = await self._acquire()
        try:
            row = await conn.fetchrow(self._numbered(sql), *params)
        except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError) as exc:
            self._discard(conn)
            raise FastReadUnavailable(f"{type(exc).__name__}: {exc}") from exc
        except BaseException:
            self._discard(conn)  # cancelled mid-query, or a query error: its state is unknown
            raise
        self._release(conn)
        return None if row is None else tuple(row)

    async def _acquire(self) -> Any:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a Database used from another event loop (tests): start afresh
            for conn in self._idle:
                conn.terminate()
            self._idle, self._waiters, self._size, self._loop = [], [], 0, loop
        if self._idle:
            return self._idle.pop()
        if self._closed:
            raise FastReadUnavailable("closed")
        if self._size < self.MAX_CONNECTIONS:
            import asyncpg

            self._size += 1
            try:
                return await asyncpg.connect(self.dsn, timeout=5, statement_cache_size=256, **self._tls)
            except BaseException as exc:
                self._size -= 1
                self._wake_one(None)
                if isinstance(exc, Exception):
                    raise FastReadUnavailable(f"connect: {type(exc).__name__}: {exc}") from exc
                raise
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            conn = await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.result() is not None:
                self._release(waiter.result())
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise
        return conn if conn is not None else await self._acquire()

    def _wake_one(self, conn: Any) -> bool:
        while self._waiters:
            waiter = self._waiters.pop(0)
            if not waiter.done():
                waiter.set_result(conn)
                return True
        return False

    def _release(self, conn: Any) -> None:
        if self._closed:
            conn.terminate()
            self._size -= 1
        elif not self._wake_one(conn):
            self._idle.append(conn)

    def _discard(self, conn: Any) -> None:
        conn.terminate()
        self._size -= 1
        self._wake_one(None)  # a waiter may open a new one in its place

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            self._size -= 1
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2)
