"""The database handle: engines for SQLite (aiosqlite) and PostgreSQL (asyncpg), one transaction a unit.

``read()`` opens a plain transaction; ``write()`` a writing one. On SQLite writers are serialised in this
process by a lock and start with ``BEGIN IMMEDIATE``, so two requests never deadlock upgrading a read lock
to a write lock ("database is locked"); other processes (the CLI) wait on ``busy_timeout``.

``fetch_row()`` is the hot GETs' single-statement read, below SQLAlchemy: on SQLite a plain ``sqlite3``
connection queried on the event loop itself (an indexed lookup in WAL mode takes microseconds and never
waits for writers, while each hop to aiosqlite's thread costs more than the query); on PostgreSQL a few
asyncpg connections of its own, in autocommit, with the statements prepared once per connection (one round
trip, where ``read()`` takes three: BEGIN, SELECT, COMMIT). Either way one statement sees one committed
snapshot, as a ``read()`` transaction of one statement would (store/pg_readers.py; the SQLite connections
themselves: store/sqlite_connection.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from assistd.private_files import private_dir, private_file
from assistd.store.errors import FastReadUnavailable
from assistd.store.pg_readers import PgReaders
from assistd.store.pg_tls import pg_connect
from assistd.store.sqlite_connection import configure_sqlite, lean_aiosqlite_creator

log = logging.getLogger("assistd.store")


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
    def __init__(self, url: str, *, pool_size: int = 20, max_overflow: int = 0) -> None:
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
                async_creator=lean_aiosqlite_creator(async_url(url)))
            configure_sqlite(self.engine)
        else:
            # The pool opens connections as they are needed and keeps them: an overflow connection is closed
            # when it is returned, and with it its prepared statements (every statement is prepared again on
            # the next one), so under load a small pool with overflow spends its time opening connections
            # and preparing statements. The peak per process is pool_size + max_overflow either way; keep it
            # within max_connections / processes.
            connect = pg_connect(url)
            self.engine = create_async_engine(async_url(connect.dsn), pool_size=pool_size,
                                              max_overflow=max_overflow, connect_args=connect.kwargs)
        # The options each unit needs, set once (views sharing the engine's pool), not per transaction.
        self._read_engine = self.engine.execution_options(
            **({"sqlite_autocommit": True} if self.is_sqlite else {"isolation_level": "AUTOCOMMIT"}))
        self._write_engine = self.engine.execution_options(sqlite_immediate=True) if self.is_sqlite else self.engine
        self._sqlite_reader: sqlite3.Connection | None = None
        self._sqlite_path = _sqlite_file(url) if self.is_sqlite else None
        self._pg_readers = None if self.is_sqlite else PgReaders(url)

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
