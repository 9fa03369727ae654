"""The components one process runs — database, event bus, model router, blob store, ingestion, the
code_interpreter engine, the worker pool (and its heap trimmer), the sweeper and the run launcher — built and
torn down in one place, for ``assistd serve`` (app.py's lifespan) and ``assistd worker``
(runner/worker_main.py) alike.

Built in dependency order and closed in the reverse: the pool stops (finishing or releasing its runs)
before the tools, the bus and the database it uses.
"""

from __future__ import annotations

from dataclasses import dataclass

from assistd.blobstore import LocalBlobStore
from assistd.config import Settings
from assistd.events.base import EventBus
from assistd.events.factory import create_bus
from assistd.heap_trim import HeapTrimmer
from assistd.providers.router import ModelRouter
from assistd.ratelimits import create_counters
from assistd.runner import ingestion
from assistd.runner.launcher import RunLauncher
from assistd.runner.pool import WorkerPool
from assistd.runner.sweeper import RunSweeper
from assistd.services import rate_limits
from assistd.services.vector_search import Retrieval
from assistd.store.db import Database
from assistd.store.migrate import migrate
from assistd.tools.code_tool import CodeTool


@dataclass
class Runtime:
    settings: Settings
    db: Database
    bus: EventBus
    router: ModelRouter
    blobs: LocalBlobStore
    ingestion: ingestion.Ingestion
    code: CodeTool
    pool: WorkerPool | None  # None: this process executes no runs (an API-only serve)
    sweeper: RunSweeper
    launcher: RunLauncher  # what the API queues and cancels runs through
    rate_limits: rate_limits.RateLimits  # also services.rate_limits.current (runs count their tokens there)
    heap_trimmer: HeapTrimmer | None = None  # where runs execute (heap_trim.py)

    @property
    def retrieval(self) -> Retrieval:
        return self.ingestion.retrieval

    async def aclose(self) -> None:
        if self.heap_trimmer is not None:
            await self.heap_trimmer.stop()
        if self.pool is not None:
            await self.pool.stop()
        await self.sweeper.stop()
        await self.code.aclose()
        await self.ingestion.aclose()
        await self.router.aclose()
        await self.rate_limits.counters.aclose()
        await self.bus.aclose()
        await self.db.close()


async def start(settings: Settings, *, workers: int) -> Runtime:
    """Everything started; ``workers`` slots execute runs (and ingestion jobs) here, 0 for none."""
    db = Database(settings.database_url, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow)
    await migrate(db)
    bus = create_bus(settings)
    await bus.start()
    router = ModelRouter.from_settings(settings)
    # Ingestion jobs read the same blob store as the API that stored the files: ASSISTD_DATA_DIR is shared.
    blobs = LocalBlobStore(settings.data_dir / "blobs")
    # Its index and embedder are also what the file_search tool and the search endpoint use.
    jobs = await ingestion.start(db, blobs, settings, bus, run_jobs=workers > 0)
    code = CodeTool(settings.data_dir, blobs)  # the engine itself is made on the first execution
    await code.start(bus)
    pool = trimmer = None
    if workers > 0:
        pool = WorkerPool(db, bus, router, concurrency=workers, lease_seconds=settings.lease_seconds,
                          retrieval=jobs.retrieval, code=code)
        await pool.start()
        trimmer = HeapTrimmer()
        await trimmer.start()
    sweeper = RunSweeper(db, bus)  # every process, API-only ones too (runner/sweeper.py)
    await sweeper.start()
    limits = rate_limits.current = rate_limits.RateLimits(db, create_counters(settings, db), rate_limits.Limits(
        settings.rate_limit_rpm, settings.rate_limit_tpm, settings.rate_limit_concurrent_runs))
    return Runtime(settings, db, bus, router, blobs, jobs, code, pool, sweeper, RunLauncher(db, bus, pool), limits,
                   trimmer)
