"""Readiness: may a load balancer send this process requests now?

Ready = started and not draining (SIGTERM with ``ASSISTD_DRAIN_SECONDS``: cli.py), the database answers,
its schema is at this build's migration head, and the event bus is connected. Liveness (``/healthz``)
stays the simpler "the process is up and reaches its database".
"""

from __future__ import annotations

import asyncio
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import text

_MIGRATIONS = Path(__file__).resolve().parents[1] / "store" / "migrations"
_CHECK_SECONDS = 2.0  # a hanging database must not hang the probe


@lru_cache(maxsize=1)
def migration_head() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    return head or ""


async def _schema_version(db: Any) -> str | None:
    async with db.engine.connect() as conn:
        return (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()


async def readiness(state: Any) -> tuple[bool, dict[str, str]]:
    """(ready, a check → "ok"/why-not map for the response body)."""
    checks: dict[str, str] = {}
    if getattr(state, "draining", False):
        checks["draining"] = "shutting down"
    if not getattr(state, "ready", False):
        checks["started"] = "not started"
        return False, checks
    try:
        version = await asyncio.wait_for(_schema_version(state.db), _CHECK_SECONDS)
        checks["database"] = "ok"
        checks["migrations"] = "ok" if version == migration_head() else f"at {version}, expected {migration_head()}"
    except Exception as exc:  # unreachable, refused, timed out: all mean "not ready"
        checks["database"] = f"unreachable ({type(exc).__name__})"
    checks["event_bus"] = "ok" if state.bus.connected() else "disconnected"
    ok = all(value == "ok" for key, value in checks.items() if key != "draining") and "draining" not in checks
    return ok, checks
