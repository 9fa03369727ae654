"""``assistd worker``: a process that only executes runs (no HTTP), beside API nodes on PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import signal

from assistd.blobstore import LocalBlobStore
from assistd.config import Settings
from assistd.events.factory import create_bus
from assistd.observability import metrics_server, scrape, tracing
from assistd.providers.router import ModelRouter
from assistd.ratelimits import create_counters
from assistd.runner.pool import WorkerPool
from assistd.runner.sweeper import RunSweeper
from assistd.services import ingestion, rate_limits
from assistd.store.db import Database
from assistd.store.migrate import migrate
from assistd.tools.code_tool import CodeTool

log = logging.getLogger("assistd.worker")


async def run_worker(settings: Settings, concurrency: int) -> None:
    tracing.setup("assistd-worker")  # a no-op unless OTEL_EXPORTER_OTLP_ENDPOINT is set
    db = Database(settings.database_url, pool_size=settings.db_pool_size)
    await migrate(db)
    router = ModelRouter.from_settings(settings)
    bus = create_bus(settings)
    await bus.start()
    # File ingestion jobs too (they read the same blob store: ASSISTD_DATA_DIR must be shared); their index
    # and embedder are also what the file_search tool searches with.
    blobs = LocalBlobStore(settings.data_dir / "blobs")
    jobs = await ingestion.start(db, blobs, settings, run_jobs=True)
    code = CodeTool(settings.data_dir, blobs)  # the code_interpreter engine, made on first use
    await code.start(bus)
    pool = WorkerPool(db, bus, router, concurrency=concurrency, lease_seconds=settings.lease_seconds,
                      retrieval=jobs.retrieval, code=code)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sweeper = RunSweeper(db, bus, router)
    await pool.start()
    await sweeper.start()
    log.info("worker %s executing up to %d runs at once", pool.owner, concurrency)
    rate_limits.current = rate_limits.RateLimits(db, create_counters(settings, db), rate_limits.Limits(
        settings.rate_limit_rpm, settings.rate_limit_tpm, settings.rate_limit_concurrent_runs))  # run tokens
    exporter = None
    if settings.metrics and settings.metrics_port:
        exporter = await metrics_server.start("0.0.0.0", settings.metrics_port, scrape.queue_gauges(db))
        log.info("metrics on :%d/metrics", settings.metrics_port)
    try:
        await stop.wait()
        log.info("stopping: finishing or releasing %d runs", pool.active)
    finally:
        if exporter is not None:
            exporter.close()
        await pool.stop()
        await sweeper.stop()
        await code.aclose()
        await jobs.aclose()
        await router.aclose()
        await bus.aclose()
        await db.close()
        tracing.shutdown()
