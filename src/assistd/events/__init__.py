"""Event bus: every run state change and delta is published here; streams subscribe per run.

Backends: ``MemoryBus`` (one process), ``PostgresBus`` (LISTEN/NOTIFY), ``RedisBus`` (pub/sub); pick
one with ``create_bus(settings)``. See docs/events.md.
"""

from assistd.events.base import Event, EventBus, Subscription, run_channel
from assistd.events.factory import create_bus
from assistd.events.memory import MemoryBus

__all__ = ["Event", "EventBus", "MemoryBus", "Subscription", "create_bus", "run_channel"]
