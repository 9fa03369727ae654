"""The event bus interface. Backends: in-process (``memory``); cross-process ones come with streaming.

A channel carries one run's events (``run_channel``). Subscribers must subscribe before the run can
start (before its row is committed) so they see every event; events are delivered in publish order.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Event:
    name: str  # the SSE event name, e.g. "thread.run.created", "thread.message.delta"
    data: dict[str, Any]


def run_channel(run_id: str) -> str:
    return f"run:{run_id}"


def error_event(message: str, type: str = "server_error") -> Event:
    """``event: error``: the spec's ``ErrorEvent.data`` is a bare ``Error`` (message, type, param, code),
    while the SDKs look for ``data.error`` (openai-python raises only then; openai-node reads
    ``data.error ?? data``), so the same object is given both ways."""
    error = {"message": message, "type": type, "param": None, "code": None}
    return Event("error", {**error, "error": error})


class Subscription(abc.ABC):
    """An open subscription: iterate for events; ``close()`` (or ``async with``) to stop."""

    @abc.abstractmethod
    def __aiter__(self) -> AsyncIterator[Event]: ...

    @abc.abstractmethod
    async def get(self, timeout: float | None = None) -> Event | None:
        """The next event, or None after ``timeout`` seconds without one."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    def ready(self) -> Event | None:
        """The next event if one is already waiting, without waiting (None: none, or not known)."""
        return None

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class EventBus(abc.ABC):
    @abc.abstractmethod
    async def publish(self, channel: str, event: Event) -> None: ...

    @abc.abstractmethod
    async def subscribe(self, channel: str) -> Subscription: ...

    async def start(self) -> None:  # noqa: B027 - optional hook
        pass

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        pass

    def connected(self) -> bool:
        """Whether events published elsewhere reach this process now (readiness, /readyz)."""
        return True
