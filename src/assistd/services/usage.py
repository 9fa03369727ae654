"""Usage per project: tokens by model and UTC day, runs by final status — recorded as each run ends.

``record_run_end`` runs inside the transaction that stores the run's final status (services/runs.py
``save_run``), so the table never disagrees with the runs it counts; reads (``for_project``, the
``assistd usage`` command; ``report``, the console's Usage page) sum a few rows instead of every run.
Runs that ended before the table existed were added to it by migration 0011.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from assistd.services import rate_limits
from assistd.store.db import Database
from assistd.store.tables import USAGE_STATUSES, projects, usage_daily


def _today() -> str:
    return datetime.datetime.now(datetime.UTC).date().isoformat()


def first_day(days: int) -> str:
    """The first UTC day of the last ``days`` days, today included."""
    return (datetime.datetime.now(datetime.UTC).date() - datetime.timedelta(days=days - 1)).isoformat()


async def record_run_end(conn: AsyncConnection, project_id: str, run: dict[str, Any]) -> None:
    status = run.get("status")
    if status not in USAGE_STATUSES:
        return
    used = run.get("usage") or {}
    prompt, completion = int(used.get("prompt_tokens") or 0), int(used.get("completion_tokens") or 0)
    values = {"project_id": project_id, "day": _today(), "model": str(run.get("model") or "")[:256],
              "prompt_tokens": prompt, "completion_tokens": completion,
              **{f"runs_{s}": int(s == status) for s in USAGE_STATUSES}}
    insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(usage_daily)
    stmt = insert.values(**values)
    added = {name: usage_daily.c[name] + stmt.excluded[name]
             for name in ("prompt_tokens", "completion_tokens", f"runs_{status}")}
    await conn.execute(stmt.on_conflict_do_update(
        index_elements=[usage_daily.c.project_id, usage_daily.c.day, usage_daily.c.model], set_=added))
    if rate_limits.current is not None:
        rate_limits.current.tokens_used(project_id, prompt + completion)


async def for_project(db: Database, project_id: str, since_day: str | None = None) -> list[dict[str, Any]]:
    """One row per (day, model), oldest first: tokens and runs by final status."""
    stmt = select(usage_daily).where(usage_daily.c.project_id == project_id)
    if since_day is not None:
        stmt = stmt.where(usage_daily.c.day >= since_day)
    async with db.read() as conn:
        rows = (await conn.execute(stmt.order_by(usage_daily.c.day, usage_daily.c.model))).mappings().all()
    return [{"day": r["day"], "model": r["model"], "prompt_tokens": r["prompt_tokens"],
             "completion_tokens": r["completion_tokens"],
             "runs": {s: r[f"runs_{s}"] for s in USAGE_STATUSES}} for r in rows]


@dataclass(slots=True)
class UsageReport:
    """What the console's Usage page shows: a row per (day, model), newest first, with ``runs``, ``prompt``,
    ``completion`` and ``total`` tokens; the runs by final status (most first); the totals of the rows."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    by_status: dict[str, int] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)


async def report(db: Database, project_id: str, days: int) -> UsageReport:
    """The project's runs that ended in the last ``days`` UTC days (today included)."""
    result = UsageReport()
    statuses: dict[str, int] = dict.fromkeys(USAGE_STATUSES, 0)
    for row in reversed(await for_project(db, project_id, first_day(days))):
        prompt, completion = row["prompt_tokens"], row["completion_tokens"]
        result.rows.append({"day": row["day"], "model": row["model"] or "?", "runs": sum(row["runs"].values()),
                            "prompt": prompt, "completion": completion, "total": prompt + completion})
        for status, count in row["runs"].items():
            statuses[status] += count
    result.by_status = dict(sorted(((s, n) for s, n in statuses.items() if n), key=lambda kv: -kv[1]))
    result.totals = {k: sum(r[k] for r in result.rows) for k in ("runs", "prompt", "completion", "total")}
    return result


async def project_id_named(db: Database, name: str) -> str | None:
    async with db.read() as conn:
        return (await conn.execute(select(projects.c.id).where(projects.c.name == name))).scalar()
