"""A project's own rows in an archive: its rate limits and its ``usage_daily``, in the manifest's entry for
the project (``limits``, ``usage_daily``: a row per day and model, small whatever the number of runs).

Import rules, as for objects: what the target lacks is added; what it holds with the same value is
present; a different value is a conflict, listed and kept as it was. A limit the archive leaves null (the
deployment's default) changes nothing. Archives without these keys (older ones, ``export-from-api``) import
as before.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from assistd.store.tables import USAGE_STATUSES, projects, usage_daily
from assistd.transfer.archive import MANIFEST, ArchiveError

LIMITS = {"rpm": "rpm_limit", "tpm": "tpm_limit", "max_concurrent_runs": "max_concurrent_runs"}  # archive → column
USAGE_COUNTS = ("prompt_tokens", "completion_tokens", *(f"runs_{s}" for s in USAGE_STATUSES))


async def read(conn: AsyncConnection, project_id: str) -> dict[str, Any]:
    """The manifest keys of one project: ``limits`` and ``usage_daily`` (oldest first)."""
    row = (await conn.execute(select(*(projects.c[c] for c in LIMITS.values()))
                              .where(projects.c.id == project_id))).one()
    usage = (await conn.execute(select(usage_daily.c.day, usage_daily.c.model,
                                       *(usage_daily.c[c] for c in USAGE_COUNTS))
                                .where(usage_daily.c.project_id == project_id)
                                .order_by(usage_daily.c.day, usage_daily.c.model))).mappings().all()
    return {"limits": {name: row._mapping[column] for name, column in LIMITS.items()},
            "usage_daily": [{"day": r["day"], "model": r["model"], **{n: int(r[n]) for n in USAGE_COUNTS}}
                            for r in usage]}


def check(entry: dict[str, Any]) -> None:
    """ArchiveError unless the entry's ``limits`` and ``usage_daily`` (when there) can be imported."""
    where = f"{MANIFEST}: project {entry.get('name')!r}"
    limits = entry.get("limits")
    if limits is not None:
        if not isinstance(limits, dict) or set(limits) - set(LIMITS) or not all(
                v is None or _count(v) for v in limits.values()):
            raise ArchiveError(f"{where}: 'limits' must map {', '.join(LIMITS)} to a whole number or null")
    usage = entry.get("usage_daily")
    if usage is not None:
        if not isinstance(usage, list):
            raise ArchiveError(f"{where}: 'usage_daily' must be a list")
        for i, row in enumerate(usage):
            if not (isinstance(row, dict) and isinstance(row.get("day"), str) and len(row["day"]) == 10
                    and isinstance(row.get("model"), str) and all(_count(row.get(c)) for c in USAGE_COUNTS)):
                raise ArchiveError(f"{where}: usage_daily[{i}] must have a day (YYYY-MM-DD), a model and "
                                   f"whole numbers {', '.join(USAGE_COUNTS)}")


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


async def write(conn: AsyncConnection, project_id: str, entry: dict[str, Any], report: Any) -> None:
    """Adds the entry's limits and usage to the project (``report``: the import's Report)."""
    name = entry.get("name")
    wanted = {LIMITS[k]: v for k, v in (entry.get("limits") or {}).items() if v is not None}
    if wanted:
        held = (await conn.execute(select(*(projects.c[c] for c in wanted)).where(projects.c.id == project_id))).one()
        fresh = {c: v for c, v in wanted.items() if held._mapping[c] is None}
        for column, value in wanted.items():
            if column not in fresh and held._mapping[column] != value:
                report.add("conflicts", f"project {name}: {column} is {held._mapping[column]} here, {value} in the "
                                        "archive: kept as it was")
        if fresh:
            await conn.execute(update(projects).where(projects.c.id == project_id).values(**fresh))
        report.imported["limits"] += len(fresh)
        report.present["limits"] += len(wanted) - len(fresh)
    rows = entry.get("usage_daily") or []
    if not rows:
        return
    c = usage_daily.c
    held_usage = {(r.day, r.model): r for r in await conn.execute(
        select(c.day, c.model, *(c[n] for n in USAGE_COUNTS)).where(c.project_id == project_id))}
    new = []
    for row in rows:
        held_row = held_usage.get((row["day"], row["model"]))
        if held_row is None:
            new.append({"project_id": project_id, "day": row["day"], "model": row["model"],
                        **{n: row[n] for n in USAGE_COUNTS}})
            held_usage[(row["day"], row["model"])] = row  # the same key twice: as if already imported
        elif all(_value(held_row, n) == row[n] for n in USAGE_COUNTS):
            report.present["usage_daily"] += 1
        else:
            report.add("conflicts", f"project {name}: usage of {row['model'] or '?'} on {row['day']} differs: "
                                    "kept as it was")
    if new:
        await conn.execute(usage_daily.insert(), new)
    report.imported["usage_daily"] += len(new)


def _value(row: Any, name: str) -> int:
    return int(row[name] if isinstance(row, dict) else row._mapping[name])
