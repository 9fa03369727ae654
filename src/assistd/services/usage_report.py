"""A project's usage, computed from its stored runs: tokens by model and day, runs by status.

Read from the runs themselves (each carries its model and, once finished, its usage), so it covers what
the runs table still holds. A dedicated usage table would make this a cheap aggregate; until then this
reads the project's runs of the period, which is fine for a console page.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from assistd.store.tables import runs

DAY = 86_400
_BATCH = 2000


@dataclass(slots=True)
class UsageReport:
    since: int
    rows: list[dict[str, Any]] = field(default_factory=list)  # {day, model, runs, prompt, completion, total}
    by_status: dict[str, int] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)


async def usage_report(conn: AsyncConnection, project_id: str, since: int) -> UsageReport:
    report = UsageReport(since=since)
    status_rows = await conn.execute(
        select(runs.c.status, func.count()).where(runs.c.project_id == project_id, runs.c.created_at >= since)
        .group_by(runs.c.status))
    report.by_status = dict(sorted(((s, int(n)) for s, n in status_rows), key=lambda kv: -kv[1]))
    sums: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    # Read in batches by seq: a long period's runs are never held at once (and PostgreSQL's read
    # connections are outside a transaction, where server-side cursors cannot be used).
    last_seq = None
    while True:
        stmt = (select(runs.c.seq, runs.c.created_at, runs.c.data)
                .where(runs.c.project_id == project_id, runs.c.created_at >= since)
                .order_by(runs.c.seq).limit(_BATCH))
        if last_seq is not None:
            stmt = stmt.where(runs.c.seq > last_seq)
        rows = (await conn.execute(stmt)).all()
        if not rows:
            break
        last_seq = rows[-1].seq
        _add(sums, rows)
    report.rows = [{"day": day, "model": model, **{k: counts[k] for k in ("runs", "prompt", "completion", "total")}}
                   for (day, model), counts in sorted(sums.items(), key=lambda kv: (kv[0][0], kv[0][1]),
                                                      reverse=True)]
    report.totals = {k: sum(r[k] for r in report.rows) for k in ("runs", "prompt", "completion", "total")}
    return report


def _add(sums: dict[tuple[str, str], Counter[str]], rows: Sequence[Any]) -> None:
    for _, created_at, data in rows:
        run = orjson.loads(data)
        day = dt.datetime.fromtimestamp(created_at, dt.UTC).strftime("%Y-%m-%d")
        bucket = sums[(day, str(run.get("model") or "?"))]
        bucket["runs"] += 1
        usage = run.get("usage") or {}
        for key, name in (("prompt_tokens", "prompt"), ("completion_tokens", "completion"),
                          ("total_tokens", "total")):
            bucket[name] += int(usage.get(key) or 0)
