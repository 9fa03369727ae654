"""The database handle: engines for SQLite (aiosqlite) and PostgreSQL (asyncpg), one transaction a unit.

``read()`` opens a plain transaction; ``write()`` a writing one. On SQLite writers are serialised in this
process by a lock and start with ``BEGIN IMMEDIATE``, so two requests never deadlock upgrading a read lock
to a write lock ("database is locked"); other processes (the CLI) wait on ``busy_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine


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
    def __init__(self, url: str, *, pool_size: int = 40) -> None:
        self.url = url
        backend = make_url(url).get_backend_name()
        self.dialect = "postgresql" if backend in ("postgresql", "postgres") else backend
        self.is_sqlite = self.dialect == "sqlite"
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        if self.is_sqlite:
            database = make_url(url).database
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            # Every transaction is ended explicitly (read()/write()), so the pool's reset-on-return
            # ROLLBACK would only cost another hop to the driver thread.
            self.engine: AsyncEngine = create_async_engine(
                async_url(url), pool_size=pool_size, pool_reset_on_return=None)
            _configure_sqlite(self.engine)
        else:
            # Overflow connections are closed on return: a pool smaller than the usual concurrency would
            # open and close PostgreSQL backends all the time.
            self.engine = create_async_engine(async_url(url), pool_size=pool_size, max_overflow=pool_size)

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        if self.is_sqlite:
            # No BEGIN/COMMIT round trips for reads: each SELECT is atomic on its own in WAL mode, and
            # a read never needs more than per-statement consistency here.
            async with self.engine.connect() as conn:
                yield await conn.execution_options(sqlite_autocommit=True)
            return
        async with self.engine.connect() as conn:
            async with conn.begin():
                yield conn

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        if self._write_lock is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._write_lock:
            async with self.engine.connect() as conn:
                conn = await conn.execution_options(sqlite_immediate=True)
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
        await self.engine.dispose()


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
