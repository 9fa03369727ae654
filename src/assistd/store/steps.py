"""Run-step rows as the run engine reads and removes them, beside what services/runs.py writes
(``insert_step``, ``save_step``, ``list_run_steps``)."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from assistd.store import objects
from assistd.store.tables import run_steps


async def delete_step(conn: AsyncConnection, step_id: str) -> None:
    """Why: a step opened by an attempt that will not finish it (an answer prepared but not given, an
    interrupted attempt's leftover) goes, as if never begun — no event ever spoke of it as done."""
    await objects.delete_object(conn, run_steps, step_id)


async def completed_steps(conn: AsyncConnection, run_id: str) -> list[dict[str, Any]]:
    """Why: the model is shown the run's own completed work, in the order it was done (runner/context.py)."""
    rows = await conn.execute(
        select(run_steps.c.data).where(run_steps.c.run_id == run_id, run_steps.c.status == "completed")
        .order_by(run_steps.c.created_at, run_steps.c.seq))
    return [orjson.loads(raw) for (raw,) in rows]
