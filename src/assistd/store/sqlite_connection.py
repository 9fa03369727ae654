"""SQLite connections as assistd uses them: WAL, our own BEGIN (``BEGIN IMMEDIATE`` for writers), and a
lean aiosqlite connection that hops to the driver thread once per statement.

The lean connection subclasses aiosqlite's ``Connection``/``Cursor`` and uses their private members
(``_conn``, ``_cursor``, ``_execute``, ``_thread``): pyproject.toml pins aiosqlite to the versions this is
tested against (tests/test_store.py and every SQLite run of the suite exercise it).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine


def lean_aiosqlite_creator(url: str) -> Any:
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
        async def cursor(self) -> LeanCursor:  # type: ignore[override]
            return LeanCursor(self, self._conn.cursor())

        async def rollback(self) -> None:
            # SQLAlchemy ends every read() with a rollback: with no transaction open it is a no-op.
            if self._conn.in_transaction:
                await super().rollback()

    async def creator() -> LeanConnection:
        def connector() -> sqlite3.Connection:
            return sqlite3.connect(*args, **kwargs)  # type: ignore[call-overload]

        conn = LeanConnection(connector, 64)
        conn._thread.daemon = True  # as SQLAlchemy does for aiosqlite's own connections
        return await conn  # type: ignore[return-value]  # awaiting starts the thread, returns self

    return creator


def configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so BEGIN is ours (see module docstring).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        options = conn.get_execution_options()
        if options.get("sqlite_autocommit"):
            return
        conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get("sqlite_immediate") else "BEGIN")
