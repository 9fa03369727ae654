"""The database handle: engines for SQLite (aiosqlite) and PostgreSQL (asyncpg), one transaction a unit.

``read()`` opens a plain transaction; ``write()`` a writing one. On SQLite writers are serialised in this
process by a lock and start with ``BEGIN IMMEDIATE``, so two requests never deadlock upgrading a read lock
to a write lock ("database is locked"); other processes (the CLI) wait on ``busy_timeout``.

``fetch_row()`` is the hot GETs' single-statement read, below SQLAlchemy: on SQLite a plain ``sqlite3``
connection queried on the event loop itself (an indexed lookup in WAL mode takes microseconds and never
waits for writers, while each hop to aiosqlite's thread costs more than the query); on PostgreSQL a few
asyncpg connections of its own, in autocommit, with the statements prepared once per connection (one round
trip, where ``read()`` takes three: BEGIN, SELECT, COMMIT). Either way one statement sees one committed
snapshot, as a ``read()`` transaction of one statement would.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from assistd.private_files import private_dir, private_file

log = logging.getLogger("assistd.store")


class FastReadUnavailable(Exception):
    """``fetch_row()`` could not answer (database busy, connection lost): use ``read()`` instead."""


def async_url(url: str) -> str:
    """Map the user-facing URL (sqlite:///…, postgresql://…) to the async driver's."""
    u = make_url(url)
    backend = u.get_backend_name()
    if backend == "sqlite":
        u = u.set(drivername="sqlite+aiosqlite")
    elif backend in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+asyncpg")
    else:
        raise ValueError(f"unsupported database URL {url!r}: use sqlite:///… or postgresql://…")
    return u.render_as_string(hide_password=False)


class Database:
    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        backend = make_url(url).get_backend_name()
        self.dialect = "postgresql" if backend in ("postgresql", "postgres") else backend
        self.is_sqlite = self.dialect == "sqlite"
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        if self.is_sqlite:
            database = make_url(url).database
            if database and database != ":memory:" and not database.startswith("file:"):
                private_dir(Path(database).parent)
                private_file(Path(database))  # 0600; SQLite gives its -wal and -shm files the same mode
            # Every transaction is ended explicitly (read()/write()), so the pool's reset-on-return
            # ROLLBACK would only cost another hop to the driver thread.
            self.engine: AsyncEngine = create_async_engine(
                async_url(url), pool_size=pool_size, pool_reset_on_return=None,
                async_creator=_lean_aiosqlite_creator(async_url(url)))
            _configure_sqlite(self.engine)
        else:
            # Overflow connections are closed on return: size the pool (ASSISTD_DB_POOL_SIZE) to the usual
            # concurrency, or PostgreSQL backends are opened and closed all the time; but every process keeps
            # its pool open, so a large default would exhaust max_connections with a few processes.
            self.engine = create_async_engine(async_url(url), pool_size=pool_size, max_overflow=pool_size)
        # The options each unit needs, set once (views sharing the engine's pool), not per transaction.
        self._read_engine = self.engine.execution_options(
            **({"sqlite_autocommit": True} if self.is_sqlite else {"isolation_level": "AUTOCOMMIT"}))
        self._write_engine = self.engine.execution_options(sqlite_immediate=True) if self.is_sqlite else self.engine
        self._sqlite_reader: sqlite3.Connection | None = None
        self._sqlite_path = _sqlite_file(url) if self.is_sqlite else None
        self._pg_readers = None if self.is_sqlite else _PgReaders(url)

    async def fetch_row(self, sql: str, params: Sequence[Any]) -> tuple[Any, ...] | None:
        """One row of a single SELECT (``?`` placeholders) outside any transaction, or None; raises
        ``FastReadUnavailable`` when this path cannot answer right now (the caller falls back to ``read()``)."""
        if self._pg_readers is not None:
            return await self._pg_readers.fetch_row(sql, params)
        reader = self._sqlite_reader or self._open_sqlite_reader()
        try:
            # fetchall(): the statement runs to its end, so its read snapshot ends here too.
            rows = reader.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:  # busy (a checkpoint, another process's lock): don't wait here
            raise FastReadUnavailable(str(exc)) from exc
        return rows[0] if rows else None

    def _open_sqlite_reader(self) -> sqlite3.Connection:
        if self._sqlite_path is None:
            raise FastReadUnavailable("an in-memory SQLite database is private to its connection")
        # No busy wait: a reader that would block the event loop gives up and takes the async path.
        reader = sqlite3.connect(self._sqlite_path, isolation_level=None, check_same_thread=False, timeout=0)
        reader.execute("PRAGMA query_only=ON")
        self._sqlite_reader = reader
        return reader

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        # No BEGIN/COMMIT round trips for reads: each SELECT sees one committed snapshot on its own (WAL
        # mode; PostgreSQL's READ COMMITTED gives a transaction no more than that), and a read never
        # needs more than per-statement consistency here.
        async with self._read_engine.connect() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        if self._write_lock is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._write_lock:
            async with self._write_engine.connect() as conn:
                async with conn.begin():
                    yield conn

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    async def close(self) -> None:
        if self._sqlite_reader is not None:
            self._sqlite_reader.close()
            self._sqlite_reader = None
        if self._pg_readers is not None:
            await self._pg_readers.close()
        await self.engine.dispose()


def _sqlite_file(url: str) -> str | None:
    database = make_url(url).database
    return None if not database or database == ":memory:" or database.startswith("file:") else database


class _PgReaders:
    """A small pool of asyncpg connections for ``fetch_row``: autocommit SELECTs only, so a connection goes
    back as it came (no reset round trip); one that fails is dropped."""

    MAX_CONNECTIONS = 12

    def __init__(self, url: str) -> None:
        self.dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
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
                return await asyncpg.connect(self.dsn, timeout=5, statement_cache_size=256)
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


def _lean_aiosqlite_creator(url: str) -> Any:
    """Connections for SQLAlchemy's aiosqlite dialect that hop to the driver thread once per statement.

    aiosqlite runs every call in its connection's thread, and SQLAlchemy makes four per SELECT (open a
    cursor, execute, fetch all, close) and three per write; each hop costs a thread switch and a turn of the
    event loop, which under load came to more than the statements themselves. Here the statement is
    executed and its rows fetched in one hop; opening and closing a cursor, which do no I/O, happen inline.
    The database work itself never runs on the event loop."""
    import aiosqlite
    from aiosqlite.context import contextmanager
    from sqlalchemy.dialects.sqlite.aiosqlite import SQLiteDialect_aiosqlite

    args, kwargs = SQLiteDialect_aiosqlite().create_connect_args(make_url(url))
    kwargs = {**kwargs, "check_same_thread": False}  # cursors are opened on the loop's thread

    def execute_and_fetch(cursor: sqlite3.Cursor, sql: str, parameters: Any) -> list[Any] | None:
        cursor.execute(sql, parameters)
        return cursor.fetchall() if cursor.description is not None else None

    class LeanCursor(aiosqlite.Cursor):
        _rows: list[Any] | None = None

        async def execute(self, sql: str, parameters: Any = None) -> LeanCursor:
            self._rows = await self._conn._execute(execute_and_fetch, self._cursor, sql,
                                                   [] if parameters is None else parameters)
            return self

        def _take(self, size: int | None) -> list[Any]:
            rows = self._rows or []
            if size is None or size >= len(rows):
                self._rows = None
                return rows
            self._rows = rows[size:]
            return rows[:size]

        async def fetchall(self) -> list[Any]:
            return self._take(None) if self._rows is not None else list(await super().fetchall())

        async def fetchmany(self, size: int | None = None) -> list[Any]:
            if self._rows is None:
                return list(await super().fetchmany(size))
            return self._take(self._cursor.arraysize if size is None else size)

        async def fetchone(self) -> Any:
            if self._rows is None:
                return await super().fetchone()
            rows = self._take(1)
            return rows[0] if rows else None

        async def close(self) -> None:
            self._rows = None
            self._cursor.close()

    class LeanConnection(aiosqlite.Connection):
        @contextmanager
        async def cursor(self) -> LeanCursor:
            return LeanCursor(self, self._conn.cursor())

        async def rollback(self) -> None:
            # SQLAlchemy ends every read() with a rollback: with no transaction open it is a no-op.
            if self._conn.in_transaction:
                await super().rollback()

    async def creator() -> LeanConnection:
        def connector() -> sqlite3.Connection:
            return sqlite3.connect(*args, **kwargs)

        conn = LeanConnection(connector, 64)
        conn._thread.daemon = True  # as SQLAlchemy does for aiosqlite's own connections
        return await conn

    return creator


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        # Take transaction control from the driver so BEGIN is ours (see module docstring).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn):  # type: ignore[no-untyped-def]
        options = conn.get_execution_options()
        if options.get("sqlite_autocommit"):
            return
        conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get("sqlite_immediate") else "BEGIN")
