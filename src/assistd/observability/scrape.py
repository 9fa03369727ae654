"""What /metrics reads from the database when scraped: the run queue's length and its oldest run's age.

One indexed statement (``ix_runs_status``), at most once a second per process (``metrics.ScrapeGauges``).
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import func, select

from assistd.observability import metrics
from assistd.store.tables import runs


def queue_gauges(db: Any) -> metrics.ScrapeGauges:
    async def read() -> None:
        async with db.engine.connect() as conn:
            row = (await conn.execute(
                select(func.count(), func.min(runs.c.created_at)).where(runs.c.status == "queued")
            )).one()
        metrics.runs_queued.set(row[0])
        metrics.oldest_queued.set(max(0.0, time.time() - row[1]) if row[1] is not None else 0.0)

    return metrics.ScrapeGauges(read)


async def exposition(gauges: metrics.ScrapeGauges | None) -> bytes:
    if gauges is not None:
        try:
            await gauges.refresh()
        except Exception:  # a scrape still answers with what this process knows
            pass
    return metrics.exposition()
