"""Projects and hashed API keys."""

from __future__ import annotations

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from assistd import ids
from assistd.store.tables import api_keys, projects


async def ensure_project(conn: AsyncConnection, name: str) -> str:
    """The id of the project with this name, creating it when new."""
    row = (await conn.execute(select(projects.c.id).where(projects.c.name == name))).scalar_one_or_none()
    if row is not None:
        return row
    project_id = ids.new_id("project")
    await conn.execute(insert(projects).values(id=project_id, name=name, created_at=ids.now()))
    return project_id


async def add_key(
    conn: AsyncConnection, project_id: str, secret_hash: str, redacted: str, name: str | None
) -> str:
    key_id = ids.new_id("api_key")
    await conn.execute(
        insert(api_keys).values(
            id=key_id, project_id=project_id, name=name, secret_hash=secret_hash,
            redacted=redacted, created_at=ids.now(),
        )
    )
    return key_id


async def project_for_hash(conn: AsyncConnection, secret_hash: str) -> str | None:
    stmt = select(api_keys.c.project_id).where(
        api_keys.c.secret_hash == secret_hash, api_keys.c.revoked_at.is_(None)
    )
    return (await conn.execute(stmt)).scalar_one_or_none()


async def count_keys(conn: AsyncConnection) -> tuple[int, int]:
    """How many keys were ever stored (revoked ones too), and how many of them are active."""
    stmt = select(func.count(), func.count(api_keys.c.id).filter(api_keys.c.revoked_at.is_(None)))
    stored, active = (await conn.execute(stmt.select_from(api_keys))).one()
    return int(stored), int(active)


async def list_keys(conn: AsyncConnection) -> list[dict]:
    stmt = (
        select(api_keys.c.id, api_keys.c.name, api_keys.c.redacted, api_keys.c.created_at,
               api_keys.c.revoked_at, projects.c.name.label("project"))
        .join(projects, projects.c.id == api_keys.c.project_id)
        .order_by(api_keys.c.created_at, api_keys.c.id)
    )
    return [dict(row._mapping) for row in await conn.execute(stmt)]


async def revoke(conn: AsyncConnection, key_id: str) -> bool:
    result = await conn.execute(
        update(api_keys).where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=ids.now())
    )
    return result.rowcount > 0
