"""Per-project rate-limit counters (requests and tokens per one-minute window), shared by every process.

``Counters`` is the plug point: ``memory.py`` (one process: SQLite), ``postgres.py`` (a counters table,
upsert per hit) and ``redis.py`` (INCRBY with an expiry) — chosen by ``create_counters``.
"""

from assistd.ratelimits.base import WINDOW_SECONDS, Counters, window_of
from assistd.ratelimits.factory import create_counters

__all__ = ["WINDOW_SECONDS", "Counters", "create_counters", "window_of"]
