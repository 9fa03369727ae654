"""``assistd worker``: a process that only executes runs (no HTTP), beside API nodes on PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import signal

from assistd.config import Settings
from assistd.events.factory import create_bus
from assistd.providers.router import ModelRouter
from assistd.runner.pool import WorkerPool
from assistd.store.db import Database
from assistd.store.migrate import migrate

log = logging.getLogger("assistd.worker")


async def run_worker(settings: Settings, concurrency: int) -> None:
    db = Database(settings.database_url)
    await migrate(db)
    router = ModelRouter.from_settings(settings)
    bus = create_bus(settings)
    await bus.start()
    pool = WorkerPool(db, bus, router, concurrency=concurrency, lease_seconds=settings.lease_seconds)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await pool.start()
    log.info("worker %s executing up to %d runs at once", pool.owner, concurrency)
    try:
        await stop.wait()
        log.info("stopping: finishing or releasing %d runs", pool.active)
    finally:
        await pool.stop()
        await router.aclose()
        await bus.aclose()
        await db.close()
