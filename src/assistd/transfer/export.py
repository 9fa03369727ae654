"""``assistd export``: one project (or all) from one read snapshot to an archive (archive.py).

Consistency: every row comes from one transaction that sees one snapshot, while the server keeps
serving. SQLite (WAL mode): a deferred ``BEGIN`` holds the snapshot its first SELECT took until it ends;
writers go on, readers never block them. PostgreSQL: ``REPEATABLE READ READ ONLY``. So a step is never
exported without its run, nor a message without its thread. File bytes are read from the blob store as
the snapshot is written: a file's blob never changes after its row exists; one deleted meanwhile is
recorded as missing in the manifest (and reported) rather than failing the export.

Memory stays small: rows are read in pages by ``seq`` inside the snapshot, JSONL members spool to disk
past a few MB, file bytes stream through in 1 MB chunks.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import Table, select
from sqlalchemy.ext.asyncio import AsyncConnection

from assistd import ids
from assistd.blobstore import BlobNotFound, BlobStore
from assistd.store.db import Database
from assistd.store.tables import (
    assistants,
    files,
    messages,
    projects,
    run_steps,
    runs,
    threads,
    vector_store_files,
    vector_stores,
)
from assistd.transfer import project_rows
from assistd.transfer.archive import KINDS, ArchiveWriter, assistd_version, blob_member, iter_chunks, kind_member
from assistd.transfer.progress import Progress

TABLES: dict[str, Table] = {
    "files": files, "vector_stores": vector_stores, "vector_store_files": vector_store_files,
    "assistants": assistants, "threads": threads, "runs": runs, "messages": messages, "run_steps": run_steps,
}
assert tuple(TABLES) == KINDS
PAGE = 500


class ExportError(Exception):
    pass


@contextlib.asynccontextmanager
async def snapshot(db: Database) -> AsyncIterator[AsyncConnection]:
    """One transaction whose reads all see the same committed state."""
    async with db.engine.connect() as conn:
        if not db.is_sqlite:
            conn = await conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        async with conn.begin():  # SQLite: a deferred BEGIN (store/db.py); the first SELECT fixes the snapshot
            yield conn


async def rows(conn: AsyncConnection, table: Table, project_id: str) -> AsyncIterator[Any]:
    """The project's rows in insertion order, a page at a time."""
    last = 0
    while True:
        page = (await conn.execute(select(table).where(table.c.project_id == project_id, table.c.seq > last)
                                   .order_by(table.c.seq).limit(PAGE))).all()
        for row in page:
            yield row
        if len(page) < PAGE:
            return
        last = page[-1].seq


async def export_archive(db: Database, blobs: BlobStore, path: str | Path, *, project: str | None = None,
                         embeddings: str | None = None, out: TextIO = sys.stderr) -> dict[str, Any]:
    """Write the archive; returns the manifest's summary (projects with their counts, missing files)."""
    progress = Progress("exporting", out)
    tmp = Path(path).with_name(f".{Path(path).name}.{os.getpid()}.partial")
    writer: ArchiveWriter | None = None
    try:
        async with snapshot(db) as conn:
            query = select(projects.c.id, projects.c.name).order_by(projects.c.created_at, projects.c.name)
            if project is not None:
                query = query.where(projects.c.name == project)
            found = (await conn.execute(query)).all()
            if project is not None and not found:
                raise ExportError(f"no project named {project!r}")
            exported_at = ids.now()
            writer = ArchiveWriter(tmp, compress=str(path).endswith(".gz"), header={
                "source": "assistd", "assistd_version": assistd_version(), "exported_at": exported_at,
                "database": db.dialect, "embeddings": embeddings})
            summary: list[dict[str, Any]] = []
            missing: list[dict[str, str]] = []
            for n, (project_id, name) in enumerate(found):
                counts = await _export_project(conn, blobs, writer, str(n), project_id, progress, missing)
                summary.append({"dir": str(n), "name": name, "counts": counts,
                                **await project_rows.read(conn, project_id)})
            manifest = {"exported_at": exported_at, "projects": summary, "missing_files": missing}
            writer.close(manifest)
        os.replace(writer.path, path)  # only a whole archive ever carries the name asked for
        progress.done()
        return manifest
    except BaseException:
        if writer is not None:
            writer.abort()
        raise


async def _export_project(conn: AsyncConnection, blobs: BlobStore, writer: ArchiveWriter, pdir: str,
                          project_id: str, progress: Progress, missing: list[dict[str, str]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for kind, table in TABLES.items():
        member = writer.jsonl(kind_member(pdir, kind))
        file_keys: list[tuple[str, str]] = []
        async for row in rows(conn, table, project_id):
            member.add(row.data)
            progress.count(kind)
            if kind == "files":
                file_keys.append((row.id, row.blob_key))
        member.close()
        counts[kind] = member.count
        for file_id, key in file_keys:
            if not await _export_blob(blobs, writer, blob_member(pdir, file_id), key, progress):
                missing.append({"project_dir": pdir, "file_id": file_id})
                print(f"warning: file {file_id} was deleted while exporting: its bytes are not in the archive",
                      file=sys.stderr)
    return counts


async def _export_blob(blobs: BlobStore, writer: ArchiveWriter, name: str, key: str, progress: Progress) -> bool:
    local = blobs.local_path(key)
    if local is not None:
        try:
            f = open(local, "rb")  # noqa: SIM115 (an open file survives a concurrent delete)
        except FileNotFoundError:
            return False
        with f:
            writer.add_stream(name, os.fstat(f.fileno()).st_size, _counted(iter_chunks(f), progress))
        return True
    try:  # a backend without local files: spool the bytes to learn their size first
        chunks = await blobs.open(key)
    except BlobNotFound:
        return False
    with tempfile.TemporaryFile() as spool:
        async for chunk in chunks:
            spool.write(chunk)
        size = spool.tell()
        spool.seek(0)
        writer.add_stream(name, size, _counted(iter_chunks(spool), progress))
    return True


def _counted(chunks: Iterator[bytes], progress: Progress) -> Iterator[bytes]:
    for chunk in chunks:
        progress.add_bytes(len(chunk))
        yield chunk
