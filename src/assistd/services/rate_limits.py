"""Per-project limits: requests per minute, tokens per minute, concurrent runs (OpenAI's headers and 429s).

A project's limits are its ``projects`` columns (``assistd projects limits``), NULL meaning the
``ASSISTD_RATE_LIMIT_*`` default and 0 unlimited; they are re-read at most every 5 s per process. A project
with no limit costs a cached lookup per request and carries no ``x-ratelimit-*`` headers.

Requests are counted as they arrive (a refused request counts too, so a client hammering past its limit
stays refused until the window ends). Tokens are counted when a run ends (its usage), so a run started
under the limit may take the window past it: the next run-creating request is then refused until the
window ends. Concurrent runs are not counted here but in the transaction that creates the run, exactly
(services/run_slots.py); its 429 still carries this layer's headers.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass

from sqlalchemy import select

from assistd.ratelimits import WINDOW_SECONDS, Counters, window_of
from assistd.store.db import Database
from assistd.store.tables import projects

CACHE_SECONDS = 5.0

log = logging.getLogger("assistd.ratelimits")


@dataclass(frozen=True)
class Limits:
    requests_per_minute: int = 0
    tokens_per_minute: int = 0
    concurrent_runs: int = 0

    @property
    def unlimited(self) -> bool:
        return not (self.requests_per_minute or self.tokens_per_minute or self.concurrent_runs)


@dataclass
class Refusal:
    kind: str  # OpenAI's error type: "requests" or "tokens"
    message: str
    retry_after: int


@dataclass
class Decision:
    headers: list[tuple[bytes, bytes]]
    refusal: Refusal | None = None


def _reset(seconds: float) -> bytes:
    """How OpenAI writes a reset: ``1s``, ``6m0s``, ``250ms``."""
    if seconds < 1:
        return f"{max(1, int(seconds * 1000))}ms".encode()
    whole = math.ceil(seconds)
    return (f"{whole // 60}m{whole % 60}s" if whole >= 60 else f"{whole}s").encode()


class RateLimits:
    def __init__(self, db: Database, counters: Counters, defaults: Limits) -> None:
        self.db = db
        self.counters = counters
        self.defaults = defaults
        self._cache: dict[str, tuple[float, Limits]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def limits_for(self, project_id: str) -> Limits:
        hit = self._cache.get(project_id)
        now = time.monotonic()
        if hit is not None and now - hit[0] < CACHE_SECONDS:
            return hit[1]
        async with self.db.read() as conn:
            row = (await conn.execute(select(projects.c.rpm_limit, projects.c.tpm_limit,
                                             projects.c.max_concurrent_runs)
                                      .where(projects.c.id == project_id))).first()
        d = self.defaults
        limits = d if row is None else Limits(
            d.requests_per_minute if row.rpm_limit is None else row.rpm_limit,
            d.tokens_per_minute if row.tpm_limit is None else row.tpm_limit,
            d.concurrent_runs if row.max_concurrent_runs is None else row.max_concurrent_runs,
        )
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[project_id] = (now, limits)
        return limits

    def known_unlimited(self, project_id: str) -> bool:
        """True when the project's limits, read less than ``CACHE_SECONDS`` ago, are all unlimited: nothing
        to count or check (and no coroutine to pay for, on every request of such a project)."""
        hit = self._cache.get(project_id)
        return hit is not None and hit[1].unlimited and time.monotonic() - hit[0] < CACHE_SECONDS

    async def check(self, project_id: str, *, creates_run: bool) -> Decision | None:
        """Counts this request; None when the project has no limit at all."""
        limits = await self.limits_for(project_id)
        if limits.unlimited:
            return None
        now = time.time()
        window = window_of(now)
        reset = window + WINDOW_SECONDS - now
        headers: list[tuple[bytes, bytes]] = []
        refusal = None
        if limits.requests_per_minute:
            used = await self.counters.add(project_id, "requests", window, 1)
            limit = limits.requests_per_minute
            headers += [(b"x-ratelimit-limit-requests", str(limit).encode()),
                        (b"x-ratelimit-remaining-requests", str(max(0, limit - used)).encode()),
                        (b"x-ratelimit-reset-requests", _reset(reset))]
            if used > limit:
                refusal = Refusal("requests", f"Rate limit reached for requests per minute (RPM): "
                                  f"Limit {limit}, Used {limit}, Requested 1. Please try again in {math.ceil(reset)}s.",
                                  math.ceil(reset))
        if limits.tokens_per_minute:
            used = await self.counters.used(project_id, "tokens", window)
            limit = limits.tokens_per_minute
            headers += [(b"x-ratelimit-limit-tokens", str(limit).encode()),
                        (b"x-ratelimit-remaining-tokens", str(max(0, limit - used)).encode()),
                        (b"x-ratelimit-reset-tokens", _reset(reset))]
            if refusal is None and creates_run and used >= limit:
                refusal = Refusal("tokens", f"Rate limit reached for tokens per minute (TPM): Limit {limit}, "
                                  f"Used {used}. Please try again in {math.ceil(reset)}s.", math.ceil(reset))
        return Decision(headers, refusal)

    def tokens_used(self, project_id: str, tokens: int) -> None:
        """A run ended having used ``tokens``: counted against the window in the background."""
        if tokens <= 0:
            return
        try:
            task = asyncio.get_running_loop().create_task(self._add_tokens(project_id, tokens))
        except RuntimeError:
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _add_tokens(self, project_id: str, tokens: int) -> None:
        try:
            if (await self.limits_for(project_id)).tokens_per_minute:
                await self.counters.add(project_id, "tokens", window_of(), tokens)
        except Exception:
            log.warning("could not count %d tokens of project %s", tokens, project_id, exc_info=True)


# The process's limiter, for the run engine's endings (services/usage.py); None = nothing to count.
current: RateLimits | None = None
