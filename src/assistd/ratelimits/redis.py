"""Counters in Redis: INCRBY on a key per (project, kind, window) that expires after two windows."""

from __future__ import annotations

from redis.asyncio import Redis

from assistd.ratelimits.base import WINDOW_SECONDS, Counters


class RedisCounters(Counters):
    def __init__(self, url: str) -> None:
        self._redis = Redis.from_url(url, socket_connect_timeout=5, client_name="assistd-ratelimits")

    @staticmethod
    def _key(project_id: str, kind: str, window: int) -> str:
        return f"assistd:ratelimit:{project_id}:{kind}:{window}"

    async def add(self, project_id: str, kind: str, window: int, amount: int) -> int:
        key = self._key(project_id, kind, window)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incrby(key, amount)
            pipe.expire(key, 2 * WINDOW_SECONDS)
            used, _ = await pipe.execute()
        return int(used)

    async def used(self, project_id: str, kind: str, window: int) -> int:
        value = await self._redis.get(self._key(project_id, kind, window))
        return int(value or 0)

    async def aclose(self) -> None:
        await self._redis.aclose()
