"""``assistd worker``: a process that only executes runs (no HTTP), beside API nodes on PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import signal

from assistd import runtime
from assistd.config import Settings
from assistd.observability import metrics_server, scrape, tracing

log = logging.getLogger("assistd.worker")


async def run_worker(settings: Settings, concurrency: int) -> None:
    tracing.setup("assistd-worker")  # a no-op unless OTEL_EXPORTER_OTLP_ENDPOINT is set
    rt = await runtime.start(settings, workers=concurrency)
    assert rt.pool is not None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("worker %s executing up to %d runs at once", rt.pool.owner, concurrency)
    exporter = None
    if settings.metrics and settings.metrics_port:
        exporter = await metrics_server.start("0.0.0.0", settings.metrics_port, scrape.queue_gauges(rt.db))
        log.info("metrics on :%d/metrics", settings.metrics_port)
    try:
        await stop.wait()
        log.info("stopping: finishing or releasing %d runs", rt.pool.active)
    finally:
        if exporter is not None:
            exporter.close()
        await rt.aclose()
        tracing.shutdown()
