"""The counters interface: fixed one-minute windows, keyed by project and kind (``requests``/``tokens``)."""

from __future__ import annotations

import abc
import time

WINDOW_SECONDS = 60


def window_of(now: float | None = None) -> int:
    """The start (unix seconds) of the window ``now`` falls in."""
    now = time.time() if now is None else now
    return int(now // WINDOW_SECONDS) * WINDOW_SECONDS


class Counters(abc.ABC):
    @abc.abstractmethod
    async def add(self, project_id: str, kind: str, window: int, amount: int) -> int:
        """Adds ``amount`` to the window's count; returns the count after."""

    @abc.abstractmethod
    async def used(self, project_id: str, kind: str, window: int) -> int:
        """The window's count so far."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        pass
