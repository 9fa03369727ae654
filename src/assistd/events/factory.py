"""Pick the event bus for this process from the settings.

``ASSISTD_REDIS_URL`` set → Redis pub/sub; a PostgreSQL database → LISTEN/NOTIFY on it (nothing more to
run); otherwise (SQLite: one node) the in-process bus. Every process of one deployment must agree, which
they do when they share the same settings.
"""

from __future__ import annotations

from typing import Any

from assistd.events.base import EventBus
from assistd.events.memory import MemoryBus


def is_postgres_url(url: str) -> bool:
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
    return scheme in ("postgresql", "postgres")


def create_bus(settings: Any) -> EventBus:
    """A bus for ``settings`` (a ``Settings``); the caller awaits ``start()`` and, at the end, ``aclose()``."""
    redis_url = getattr(settings, "redis_url", None)  # read loosely: older Settings may lack the field
    if redis_url:
        from assistd.events.redis import RedisBus  # imported only when configured

        return RedisBus(redis_url)
    if is_postgres_url(settings.database_url):
        from assistd.events.postgres import PostgresBus

        return PostgresBus(settings.database_url)
    return MemoryBus()
