"""Usage of the runs that ended before ``usage_daily`` existed (0007 records each run as it ends): added once,
so the console's Usage page and ``assistd usage`` read one table for the whole history.

Which runs are missing: a project's first ``usage_daily`` day is the first day it had a run end after the
upgrade, so every ended run of an earlier day is missing, and is added. On that first day itself both kinds
may be there; each of its counts becomes the larger of the two (exact unless runs of that day were deleted
since). A project with no ``usage_daily`` row gets all of its ended runs. A run's day is the UTC day it
ended (its ``*_at`` stamp), as ``services/usage.record_run_end`` counts it.

Revision ID: 0011
Revises: 0010
"""

import datetime
import json
from collections import defaultdict

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

STATUSES = ("completed", "failed", "cancelled", "expired", "incomplete")
COUNTS = ("prompt_tokens", "completion_tokens", *(f"runs_{s}" for s in STATUSES))
BATCH = 2000

runs = sa.table("runs", sa.column("seq", sa.BigInteger), sa.column("project_id", sa.String),
                sa.column("status", sa.String), sa.column("created_at", sa.BigInteger),
                sa.column("ended_ms", sa.BigInteger), sa.column("data", sa.Text))
usage_daily = sa.table("usage_daily", sa.column("project_id", sa.String), sa.column("day", sa.String),
                       sa.column("model", sa.String), *(sa.column(name, sa.BigInteger) for name in COUNTS))


def _day(run: dict, status: str, created_at: int, ended_ms: int | None) -> str:
    seconds = run.get(f"{status}_at") or (ended_ms / 1000 if ended_ms else None) or created_at
    return datetime.datetime.fromtimestamp(float(seconds), datetime.UTC).date().isoformat()


def _ended_runs(conn: sa.Connection) -> dict[tuple[str, str, str], dict[str, int]]:
    """Every ended run's usage, summed by (project, day, model); read in batches by seq."""
    sums: dict[tuple[str, str, str], dict[str, int]] = defaultdict(lambda: dict.fromkeys(COUNTS, 0))
    last = None
    while True:
        stmt = (sa.select(runs.c.seq, runs.c.project_id, runs.c.status, runs.c.created_at, runs.c.ended_ms,
                          runs.c.data).where(runs.c.status.in_(STATUSES)).order_by(runs.c.seq).limit(BATCH))
        if last is not None:
            stmt = stmt.where(runs.c.seq > last)
        rows = conn.execute(stmt).all()
        if not rows:
            return sums
        last = rows[-1].seq
        for row in rows:
            run = json.loads(row.data)
            used = run.get("usage") or {}
            counts = sums[(row.project_id, _day(run, row.status, row.created_at, row.ended_ms),
                           str(run.get("model") or "")[:256])]
            counts["prompt_tokens"] += int(used.get("prompt_tokens") or 0)
            counts["completion_tokens"] += int(used.get("completion_tokens") or 0)
            counts[f"runs_{row.status}"] += 1


def upgrade() -> None:
    conn = op.get_bind()
    first_days = dict(conn.execute(sa.select(usage_daily.c.project_id, sa.func.min(usage_daily.c.day))
                                   .group_by(usage_daily.c.project_id)).all())
    for (project_id, day, model), counts in _ended_runs(conn).items():
        first = first_days.get(project_id)
        if first is not None and day > first:
            continue  # recorded as it ended
        key = (usage_daily.c.project_id == project_id, usage_daily.c.day == day, usage_daily.c.model == model)
        held = conn.execute(sa.select(*(usage_daily.c[name] for name in COUNTS)).where(*key)).first()
        if held is None:
            conn.execute(usage_daily.insert().values(project_id=project_id, day=day, model=model, **counts))
        else:
            conn.execute(usage_daily.update().where(*key).values(
                **{name: max(int(held._mapping[name]), counts[name]) for name in COUNTS}))


def downgrade() -> None:
    pass  # the rows added are indistinguishable from recorded ones, and true either way
