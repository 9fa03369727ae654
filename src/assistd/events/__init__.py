"""Event bus: every run state change and delta is published here; streams subscribe per run."""

from assistd.events.base import Event, EventBus, Subscription
from assistd.events.memory import MemoryBus

__all__ = ["Event", "EventBus", "MemoryBus", "Subscription"]
