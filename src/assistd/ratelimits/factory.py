"""Redis when ASSISTD_REDIS_URL is set, else PostgreSQL's counters table, else (SQLite) this process."""

from __future__ import annotations

from assistd.config import Settings
from assistd.ratelimits.base import Counters
from assistd.store.db import Database


def create_counters(settings: Settings, db: Database) -> Counters:
    if settings.redis_url:
        from assistd.ratelimits.redis import RedisCounters

        return RedisCounters(settings.redis_url)
    if not db.is_sqlite:
        from assistd.ratelimits.postgres import PostgresCounters

        return PostgresCounters(db)
    from assistd.ratelimits.memory import MemoryCounters

    return MemoryCounters()
