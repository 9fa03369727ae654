"""``assistd export`` and ``assistd import``: argument parsing and exit codes around export.py / import_.py."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from assistd.config import Settings

_EPILOG = """
The archive format, the SQLite → PostgreSQL move and backups: docs/operations.md, docs/archive-format.md.
ASSISTD_DATABASE_URL and ASSISTD_DATA_DIR (where file bytes live) name the database and data dir.
"""


def add_commands(sub: Any, db_flag: Callable[[argparse.ArgumentParser], None]) -> None:
    export = sub.add_parser("export", help="write one project (or all) to an archive, while the server serves",
                            epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    export.add_argument("archive", help="the archive to write (.tar, or .tar.gz to compress)")
    export.add_argument("--project", help="only this project (by name); default: every project")
    db_flag(export)
    export.set_defaults(func=_export)

    imp = sub.add_parser("import", help="load an archive (from `assistd export` or scripts/export-from-api)",
                         epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    imp.add_argument("archive", help="the archive to read")
    imp.add_argument("--project", help="import everything into this project (created when new); "
                                       "default: each into the project of its name in the archive")
    imp.add_argument("--batch-size", type=int, default=200, help="objects per transaction (default 200)")
    imp.add_argument("--check", action="store_true", help="only check the archive; write nothing")
    imp.add_argument("--fail-after", type=int, help=argparse.SUPPRESS)  # tests: crash after N transactions
    db_flag(imp)
    imp.set_defaults(func=_import)


def _settings(args: argparse.Namespace) -> Settings:
    return Settings(**({"database_url": args.database_url} if args.database_url else {}))


def _export(args: argparse.Namespace) -> int:
    from assistd.blobstore import LocalBlobStore
    from assistd.store.db import Database
    from assistd.transfer.archive import ArchiveError
    from assistd.transfer.export import ExportError, export_archive

    settings = _settings(args)
    sqlite_file = make_url(settings.database_url).database if settings.database_url.startswith("sqlite") else None
    if sqlite_file and sqlite_file != ":memory:" and not Path(sqlite_file).is_file():
        print(f"assistd export: no database at {sqlite_file}", file=sys.stderr)
        return 1

    async def run() -> dict[str, Any]:
        db = Database(settings.database_url, pool_size=2)
        try:
            return await export_archive(db, LocalBlobStore(settings.data_dir / "blobs"), args.archive,
                                        project=args.project, embeddings=settings.embeddings)
        finally:
            await db.close()

    try:
        manifest = asyncio.run(run())
    except (ExportError, ArchiveError, OSError) as exc:
        print(f"assistd export: {exc}", file=sys.stderr)
        return 1
    except SQLAlchemyError as exc:
        print(f"assistd export: database error: {getattr(exc, 'orig', None) or exc}", file=sys.stderr)
        return 1
    for project in manifest["projects"]:
        counts = ", ".join(f"{n} {kind}" for kind, n in project["counts"].items())
        print(f"project {project['name']}: {counts}")
    print(f"wrote {args.archive}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from assistd.blobstore import LocalBlobStore
    from assistd.store.db import Database
    from assistd.transfer.archive import ArchiveError
    from assistd.transfer.import_ import import_archive
    from assistd.transfer.verify import verify

    settings = _settings(args)
    try:
        if args.check:
            checked = verify(args.archive)
            for line in checked.notes.lines():
                print(line)
            print(f"{args.archive}: a whole archive of format version {checked.header['format_version']}")
            return 0

        async def run() -> Any:
            db = Database(settings.database_url, pool_size=2)
            try:
                return await import_archive(db, LocalBlobStore(settings.data_dir / "blobs"), args.archive,
                                            project=args.project, batch_size=args.batch_size,
                                            fail_after=args.fail_after)
            finally:
                await db.close()

        report = asyncio.run(run())
    except (ArchiveError, OSError) as exc:
        print(f"assistd import: {exc}", file=sys.stderr)
        return 2
    except SQLAlchemyError as exc:  # the database refused or went away: whole batches stay, run it again
        print(f"assistd import: database error: {getattr(exc, 'orig', None) or exc}", file=sys.stderr)
        return 3
    for line in report.lines():
        print(line)
    return 1 if report.has_conflicts else 0
