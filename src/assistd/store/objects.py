"""Repository functions shared by every object table (see ``tables._object_table``).

Objects live as serialised JSON in ``data``; ``scope`` narrows a query to the caller's project and, for
child objects, their parent (``thread_id=…``), so an id from elsewhere is simply not found.
"""

from __future__ import annotations

from functools import cache, lru_cache
from typing import Any

import orjson
from sqlalchemy import Row, Table, and_, bindparam, delete, func, insert, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from assistd.errors import InvalidRequest
from assistd.pagination import Page, PageParams
from assistd.store.db import Database, FastReadUnavailable


def dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def _where(table: Table, scope: dict[str, Any]) -> list:
    return [table.c[name] == value for name, value in scope.items()]


def storable(*values: Any) -> bool:
    """False when a client-given id can match no row: PostgreSQL refuses NUL in text (a 500 otherwise)."""
    return not any(isinstance(v, str) and "\x00" in v for v in values)


# The statements every object write and point read uses are built once and given their values at execution:
# building one per call (``insert(t).values(...)``, ``t.c.id == value``) and deriving its cache key cost
# about as much Python as executing it, on paths where each request makes several.

@cache
def _insert(table: Table) -> Any:
    return insert(table)


@cache
def _update_by_id(table: Table) -> Any:
    # ``_id``: a bind name no column has (the SET clause takes the columns' own names).
    return update(table).where(table.c.id == bindparam("_id"))


@cache
def _point_select(table: Table, scope: tuple[str, ...], for_update: bool) -> Any:
    stmt = select(table.c.data).where(table.c.id == bindparam("_id"),
                                      *(table.c[name] == bindparam(f"_{name}") for name in scope))
    return stmt.with_for_update() if for_update else stmt


def _point_params(object_id: str, scope: dict[str, Any]) -> dict[str, Any]:
    return {"_id": object_id, **{f"_{name}": value for name, value in scope.items()}}


async def insert_object(
    conn: AsyncConnection, table: Table, obj: dict[str, Any], *, project_id: str, **columns: Any
) -> None:
    await conn.execute(_insert(table), {
        "id": obj["id"], "project_id": project_id, "created_at": obj["created_at"], "data": dumps(obj), **columns})


async def get_raw(conn: AsyncConnection, table: Table, object_id: str, **scope: Any) -> str | None:
    """The stored JSON text of one object, or None."""
    if not storable(object_id, *scope.values()):
        return None
    row = await conn.execute(_point_select(table, tuple(scope), False), _point_params(object_id, scope))
    return row.scalar_one_or_none()


@lru_cache(maxsize=64)
def _point_sql(table: str, columns: tuple[str, ...], scope: tuple[str, ...]) -> str:
    # Names come from our table definitions, never from a request.
    where = " AND ".join(f"{name} = ?" for name in ("id", *scope))
    return f"SELECT {', '.join(columns)} FROM {table} WHERE {where}"


async def read_row(
    db: Database, table: Table, object_id: str, columns: tuple[str, ...] = ("data",), **scope: Any
) -> tuple[Any, ...] | None:
    """``columns`` of one object, or None: the hot GETs' read, one statement outside SQLAlchemy when the
    database allows (``Database.fetch_row``), else through ``read()``."""
    if not storable(object_id, *scope.values()):
        return None
    try:
        return await db.fetch_row(_point_sql(table.name, columns, tuple(scope)), (object_id, *scope.values()))
    except FastReadUnavailable:
        pass
    async with db.read() as conn:
        row = (await conn.execute(
            select(*(table.c[name] for name in columns)).where(table.c.id == object_id, *_where(table, scope))
        )).first()
    return None if row is None else tuple(row)


async def get_object(conn: AsyncConnection, table: Table, object_id: str, **scope: Any) -> dict | None:
    raw = await get_raw(conn, table, object_id, **scope)
    return None if raw is None else orjson.loads(raw)


async def get_for_update(conn: AsyncConnection, table: Table, object_id: str, **scope: Any) -> dict | None:
    """Like get_object, but locks the row on PostgreSQL (SQLite writers are already serialised)."""
    if not storable(object_id, *scope.values()):
        return None
    stmt = _point_select(table, tuple(scope), conn.dialect.name == "postgresql")
    raw = (await conn.execute(stmt, _point_params(object_id, scope))).scalar_one_or_none()
    return None if raw is None else orjson.loads(raw)


async def save_object(conn: AsyncConnection, table: Table, obj: dict[str, Any], **columns: Any) -> None:
    await conn.execute(_update_by_id(table), {"_id": obj["id"], "data": dumps(obj), **columns})


@cache
def _update_keeping_first(table: Table, names: tuple[str, ...]) -> Any:
    # ``names`` are set only where still NULL: the first time recorded wins, with no read first.
    return _update_by_id(table).values(
        {name: func.coalesce(table.c[name], bindparam(f"_first_{name}")) for name in names})


@cache
def _returning(stmt: Any, table: Table, names: tuple[str, ...]) -> Any:
    return stmt.returning(*(table.c[name] for name in names))


async def save_object_first(
    conn: AsyncConnection, table: Table, obj: dict[str, Any], first: dict[str, Any], *,
    returning: tuple[str, ...] = (), **columns: Any,
) -> Row[Any] | None:
    """save_object, also setting each ``first`` column unless it already has a value; with ``returning``,
    those columns of the row as saved (None: no row, or none asked for)."""
    names = tuple(sorted(first))
    stmt = _update_keeping_first(table, names) if names else _update_by_id(table)
    if returning:
        stmt = _returning(stmt, table, returning)
    result = await conn.execute(stmt, {
        "_id": obj["id"], "data": dumps(obj), **columns, **{f"_first_{name}": first[name] for name in names}})
    return result.first() if returning else None


async def delete_object(conn: AsyncConnection, table: Table, object_id: str, **scope: Any) -> bool:
    if not storable(object_id, *scope.values()):
        return False
    result = await conn.execute(delete(table).where(table.c.id == object_id, *_where(table, scope)))
    return result.rowcount > 0


async def delete_where(conn: AsyncConnection, table: Table, **scope: Any) -> None:
    await conn.execute(delete(table).where(*_where(table, scope)))


async def list_page(
    conn: AsyncConnection, table: Table, page: PageParams, *, filters: list | None = None, **scope: Any
) -> Page:
    """One page in (created_at, seq) order; ``after``/``before`` are ids within the same scope."""
    if not storable(*scope.values()):
        return Page(items=[], first_id=None, last_id=None, has_more=False)
    conditions = _where(table, scope) + list(filters or [])
    key = tuple_(table.c.created_at, table.c.seq)

    async def cursor(object_id: str, param: str) -> Any:
        row = None if not storable(object_id, *scope.values()) else (
            await conn.execute(
                select(table.c.created_at, table.c.seq).where(table.c.id == object_id, *_where(table, scope))
            )
        ).first()
        if row is None:
            raise InvalidRequest(f"Invalid '{param}': no object found with id '{object_id}'.", param=param)
        return tuple_(row.created_at, row.seq)

    ascending = page.order == "asc"
    bounds = []
    if page.after:
        c = await cursor(page.after, "after")
        bounds.append(key > c if ascending else key < c)
    if page.before:
        c = await cursor(page.before, "before")
        bounds.append(key < c if ascending else key > c)
    # With only `before`, the page is the one just before the cursor: walk backwards, then flip.
    backwards = bool(page.before) and not page.after
    walk_ascending = ascending != backwards
    order = (table.c.created_at.asc(), table.c.seq.asc()) if walk_ascending else (
        table.c.created_at.desc(), table.c.seq.desc())
    stmt = (
        select(table.c.id, table.c.data)
        .where(and_(*conditions, *bounds))
        .order_by(*order)
        .limit(page.limit + 1)
    )
    rows = (await conn.execute(stmt)).all()
    has_more = len(rows) > page.limit
    rows = list(rows[: page.limit])
    if backwards:
        rows.reverse()
    return Page(
        items=[row.data.encode() for row in rows],
        first_id=rows[0].id if rows else None,
        last_id=rows[-1].id if rows else None,
        has_more=has_more,
    )
