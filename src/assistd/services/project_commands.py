"""``assistd projects limits NAME`` and ``assistd usage --project NAME`` (and ``keys create --rpm …``)."""

from __future__ import annotations

import argparse

from sqlalchemy import update

from assistd.config import Settings
from assistd.services import usage
from assistd.store import keys as key_store
from assistd.store.db import Database
from assistd.store.migrate import migrate
from assistd.store.tables import USAGE_STATUSES, projects

LIMIT_FLAGS = (("rpm", "rpm_limit"), ("tpm", "tpm_limit"), ("max_concurrent_runs", "max_concurrent_runs"))


def add_limit_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rpm", type=int, help="requests per minute (0: unlimited; default ASSISTD_RATE_LIMIT_RPM)")
    parser.add_argument("--tpm", type=int, help="tokens per minute (0: unlimited; default ASSISTD_RATE_LIMIT_TPM)")
    parser.add_argument("--max-concurrent-runs", type=int,
                        help="active runs at once (0: unlimited; default ASSISTD_RATE_LIMIT_CONCURRENT_RUNS)")


def limit_values(args: argparse.Namespace) -> dict[str, int | None]:
    """The limits named on the command line; ``-1`` resets one to the ASSISTD_RATE_LIMIT_* default."""
    values: dict[str, int | None] = {}
    for flag, column in LIMIT_FLAGS:
        value = getattr(args, flag, None)
        if value is not None:
            values[column] = None if value < 0 else value
    return values


async def set_limits(db: Database, project_id: str, values: dict[str, int | None]) -> None:
    if values:
        async with db.write() as conn:
            await conn.execute(update(projects).where(projects.c.id == project_id).values(**values))


async def limits_command(settings: Settings, args: argparse.Namespace) -> int:
    db = Database(settings.database_url)
    try:
        await migrate(db)
        async with db.write() as conn:
            project_id = await key_store.ensure_project(conn, args.name)
        await set_limits(db, project_id, limit_values(args))
        async with db.read() as conn:
            row = (await conn.execute(projects.select().where(projects.c.id == project_id))).mappings().one()
        shown = {flag: row[column] for flag, column in LIMIT_FLAGS}
        print(f"project {args.name!r} ({project_id}): " + ", ".join(
            f"{flag}={'default' if value is None else value or 'unlimited'}" for flag, value in shown.items()))
        return 0
    finally:
        await db.close()


async def usage_command(settings: Settings, args: argparse.Namespace) -> int:
    db = Database(settings.database_url)
    try:
        await migrate(db)
        project_id = await usage.project_id_named(db, args.project)
        if project_id is None:
            print(f"no project named {args.project!r}")
            return 1
        rows = await usage.for_project(db, project_id, usage.first_day(args.days))
        print("day\tmodel\tprompt_tokens\tcompletion_tokens\t" + "\t".join(f"runs_{s}" for s in USAGE_STATUSES))
        for row in rows:
            print(f"{row['day']}\t{row['model']}\t{row['prompt_tokens']}\t{row['completion_tokens']}\t"
                  + "\t".join(str(row["runs"][s]) for s in USAGE_STATUSES))
        return 0
    finally:
        await db.close()
