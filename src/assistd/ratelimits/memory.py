"""Counters in this process only: right for SQLite, where one process serves everything."""

from __future__ import annotations

from assistd.ratelimits.base import Counters


class MemoryCounters(Counters):
    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], tuple[int, int]] = {}  # (project, kind) → (window, used)

    async def add(self, project_id: str, kind: str, window: int, amount: int) -> int:
        key = (project_id, kind)
        held = self._counts.get(key)
        used = (held[1] if held is not None and held[0] == window else 0) + amount
        self._counts[key] = (window, used)
        return used

    async def used(self, project_id: str, kind: str, window: int) -> int:
        held = self._counts.get((project_id, kind))
        return held[1] if held is not None and held[0] == window else 0
