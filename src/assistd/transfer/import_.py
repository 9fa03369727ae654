"""``assistd import``: an archive (archive.py) into any database assistd supports, ids and timestamps kept.

Pass one (verify.py) checks the whole archive; only then pass two writes, in the archive's order, which
puts parents first. Every object is written exactly once:

- an object is inserted together with the others of its batch (``--batch-size``, one transaction), or
  not at all: a killed import leaves whole batches behind, and running it again skips what is there;
- an id already present with the same content (for a vector store: the same apart from what re-indexing
  recomputes) counts as present; with other content (or in another project) it is a conflict: listed,
  left as it is, and the import exits 1;
- a file's bytes go to the blob store (whole or not at all, checked against the manifest's sha256) before
  its row, so a row never lacks its bytes; a file whose bytes the archive lacks is skipped and reported;
- a child whose parent is not in the database (a message of a thread that conflicted in another project,
  a vector store file whose file was skipped) is skipped and reported, never left dangling;
- vector store files are indexed again by the ingestion queue: each is inserted ``in_progress`` with an
  ``ingest_file`` job in the same transaction; a running server (or the next one started) does the work;
- unfinished runs arrive ended (openai_shape.py): nothing imported is ever executed.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import orjson
from sqlalchemy import Table, insert, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from assistd.blobstore import BlobStore
from assistd.services import vector_stores as stores
from assistd.store import jobs
from assistd.store import keys as key_store
from assistd.store.db import Database
from assistd.store.migrate import migrate
from assistd.store.tables import files, runs, threads, vector_store_files, vector_stores
from assistd.transfer import project_rows
from assistd.transfer.archive import (
    HEADER,
    KINDS,
    MANIFEST,
    ArchiveError,
    Member,
    iter_chunks,
    iter_lines,
    open_members,
    parse_member,
    reading,
)
from assistd.transfer.export import TABLES
from assistd.transfer.openai_shape import Normalizer, same_object
from assistd.transfer.progress import Progress
from assistd.transfer.verify import Checked, parse_line, verify

# kind → (column naming the parent, parent table): a child is imported only when its parents are there.
PARENTS: dict[str, tuple[tuple[str, Table], ...]] = {
    "vector_store_files": (("vector_store_id", vector_stores), ("id", files)),
    "runs": (("thread_id", threads),),
    "messages": (("thread_id", threads),),
    "run_steps": (("run_id", runs),),
}
REINDEX = ("completed", "in_progress")  # vector store files whose chunks the ingestion queue rebuilds
NO_LIMIT = 1 << 62


MAX_LISTED = 100  # conflicts and skipped objects listed one by one; past that, counted


@dataclass
class Report:
    imported: Counter[str] = field(default_factory=Counter)
    present: Counter[str] = field(default_factory=Counter)
    conflicts: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unlisted: Counter[str] = field(default_factory=Counter)  # "conflicts" / "skipped" past MAX_LISTED

    @property
    def has_conflicts(self) -> bool:
        return bool(self.conflicts)

    def add(self, which: str, text: str) -> None:
        listed = getattr(self, which)
        if len(listed) < MAX_LISTED:
            listed.append(text)
        else:
            self.unlisted[which] += 1

    def lines(self) -> list[str]:
        out = [f"{kind}: {self.imported[kind]} imported, {self.present[kind]} already present"
               for kind in (*KINDS, "limits", "usage_daily")]
        out += self.notes
        out += [f"skipped: {s}" for s in self.skipped]
        out += [f"conflict: {c}" for c in self.conflicts]
        out += [f"… and {n} more {which} not listed" for which, n in self.unlisted.items()]
        return out


class _Killer:
    """``--fail-after N`` (tests only): SIGKILL this process after N committed transactions, as a crash would."""

    def __init__(self, after: int | None) -> None:
        self.left = after

    def committed(self) -> None:
        if self.left is not None:
            self.left -= 1
            if self.left <= 0:
                os.kill(os.getpid(), signal.SIGKILL)


async def import_archive(db: Database, blobs: BlobStore, path: str | Path, *, project: str | None = None,
                         batch_size: int = 200, fail_after: int | None = None, out: TextIO = sys.stderr) -> Report:
    checked = await asyncio.to_thread(verify, path)
    await migrate(db)
    importer = _Importer(db, blobs, checked, project, batch_size, _Killer(fail_after), Progress("importing", out))
    await importer.run(path)
    importer.progress.done()
    importer.report.notes = checked.notes.lines()
    return importer.report


class _Importer:
    def __init__(self, db: Database, blobs: BlobStore, checked: Checked, project: str | None, batch_size: int,
                 killer: _Killer, progress: Progress) -> None:
        self.db = db
        self.blobs = blobs
        self.checked = checked
        self.project = project
        self.batch_size = max(1, batch_size)
        self.killer = killer
        self.progress = progress
        self.report = Report()
        self.normalizer = Normalizer(checked.header["exported_at"])
        self.project_ids: dict[str, str] = {}
        self.pending_files: dict[str, dict[str, Any]] = {}  # files.jsonl lines waiting for their bytes

    async def run(self, path: str | Path) -> None:
        sums = self.checked.manifest["members"]
        for member in open_members(path):
            if member.name in (HEADER, MANIFEST):
                continue
            parsed = parse_member(member.name)
            assert parsed is not None  # verify() checked every name
            pdir, what, name = parsed
            project_id = await self._project_id(self.project or self.checked.project_names[pdir])
            with reading(member.name):
                await self._member(member, project_id, what, name, sums)
        self._skip_files_without_bytes()
        for entry in self.checked.manifest.get("projects") or []:  # limits and usage (project_rows.py)
            if isinstance(entry, dict) and entry.get("dir") in self.checked.project_names:
                project_id = await self._project_id(self.project or self.checked.project_names[entry["dir"]])
                async with self.db.write() as conn:
                    await project_rows.write(conn, project_id, entry, self.report)

    async def _member(self, member: Member, project_id: str, what: str, name: str,
                      sums: dict[str, Any]) -> None:
        if what == "file":
            await self._file(project_id, name, member, sums[member.name]["sha256"])
            return
        self._skip_files_without_bytes()
        batch: list[dict[str, Any]] = []
        for number, line in iter_lines(member):
            if not line.strip():
                continue
            obj = parse_line(self.normalizer, member.name, name, number, line)
            if name == "files":
                self.pending_files[obj["id"]] = obj
                continue
            batch.append(obj)
            if len(batch) >= self.batch_size:
                await self._batch(name, project_id, batch)
                batch = []
        if batch:
            await self._batch(name, project_id, batch)

    async def _project_id(self, name: str) -> str:
        if name not in self.project_ids:
            async with self.db.write() as conn:
                self.project_ids[name] = await key_store.ensure_project(conn, name)
        return self.project_ids[name]

    def _skip_files_without_bytes(self) -> None:
        for file_id in self.pending_files:
            self.report.add("skipped", f"file {file_id}: its bytes are not in the archive")
        self.pending_files.clear()

    # --- files -------------------------------------------------------------------------------------------

    async def _file(self, project_id: str, file_id: str, member: Any, sha256: str) -> None:
        obj = self.pending_files.pop(file_id)
        async with self.db.read() as conn:
            row = (await conn.execute(select(files.c.project_id, files.c.data).where(files.c.id == file_id))).first()
        if row is not None:
            self._existing("files", obj, row.project_id, row.data, project_id)
            return
        await self.blobs.put(file_id, _checked_bytes(member, sha256, file_id, self.progress), NO_LIMIT)
        async with self.db.write() as conn:
            await conn.execute(insert(files), [_row("files", obj, project_id)])
        self.report.imported["files"] += 1
        self.progress.count("files")
        self.killer.committed()

    def _existing(self, kind: str, obj: dict[str, Any], row_project: str, data: str, project_id: str) -> None:
        if row_project == project_id and same_object(kind, orjson.loads(data), obj):
            self.report.present[kind] += 1
        else:
            where = "" if row_project == project_id else " in another project"
            self.report.add("conflicts", f"{_label(kind, obj)} already exists{where} with other content: "
                                         "kept as it was")

    # --- objects -----------------------------------------------------------------------------------------

    async def _batch(self, kind: str, project_id: str, objs: list[dict[str, Any]]) -> None:
        table = TABLES[kind]
        async with self.db.write() as conn:
            objs = await self._with_parents(conn, kind, project_id, objs)
            existing = await self._existing_rows(conn, kind, objs)
            fresh: dict[Any, dict[str, Any]] = {}
            for obj in objs:
                key = _key(kind, obj)
                row = existing.get(key)
                if row is None and key in fresh:  # the same id twice in one batch: as if already imported
                    row = (project_id, orjson.dumps(fresh[key]).decode())
                if row is None:
                    fresh[key] = obj
                else:
                    self._existing(kind, obj, row[0], row[1], project_id)
            new = list(fresh.values())
            if kind == "vector_store_files":
                await self._vector_store_files(conn, project_id, new)
            elif new:
                await conn.execute(insert(table), [_row(kind, obj, project_id) for obj in new])
        self.report.imported[kind] += len(new)
        self.progress.count(kind, len(new))
        self.killer.committed()

    async def _with_parents(self, conn: AsyncConnection, kind: str, project_id: str, objs: list[dict[str, Any]]
                            ) -> list[dict[str, Any]]:
        kept = objs
        for column, parent in PARENTS.get(kind, ()):
            wanted = {obj[column] for obj in kept}
            found = set((await conn.execute(select(parent.c.id).where(
                parent.c.id.in_(wanted), parent.c.project_id == project_id))).scalars())
            for obj in kept:
                if obj[column] not in found:
                    self.report.add("skipped", f"{_label(kind, obj)}: its {parent.name[:-1].replace('_', ' ')} "
                                               f"{obj[column]} is not in the project")
            kept = [obj for obj in kept if obj[column] in found]
        return kept

    async def _existing_rows(self, conn: AsyncConnection, kind: str, objs: list[dict[str, Any]]
                             ) -> dict[Any, tuple[str, str]]:
        if not objs:
            return {}
        table = TABLES[kind]
        if kind == "vector_store_files":
            c = vector_store_files.c
            rows = await conn.execute(select(c.vector_store_id, c.id, c.project_id, c.data).where(
                tuple_(c.vector_store_id, c.id).in_([_key(kind, o) for o in objs])))
            return {(r.vector_store_id, r.id): (r.project_id, r.data) for r in rows}
        rows = await conn.execute(select(table.c.id, table.c.project_id, table.c.data).where(
            table.c.id.in_([o["id"] for o in objs])))
        return {r.id: (r.project_id, r.data) for r in rows}

    async def _vector_store_files(self, conn: AsyncConnection, project_id: str, objs: list[dict[str, Any]]) -> None:
        if not objs:
            return
        touched = sorted({o["vector_store_id"] for o in objs})
        for store_id in touched:  # the locking order vector_stores.py documents: the store first
            await stores.lock_store(conn, project_id, store_id)
        for obj in objs:
            if obj["status"] in REINDEX:
                obj.update(status="in_progress", usage_bytes=0, last_error=None)
        c = vector_store_files.c
        rows = await conn.execute(insert(vector_store_files).returning(c.id, c.vector_store_id, c.seq,
                                                                       sort_by_parameter_order=True),
                                  [_row("vector_store_files", obj, project_id) for obj in objs])
        seqs = {(r.vector_store_id, r.id): r.seq for r in rows}
        await jobs.enqueue(conn, project_id, stores.INGEST_KIND, [
            {"vector_store_id": o["vector_store_id"], "file_id": o["id"], "seq": seqs[_key("vector_store_files", o)],
             "chunking": _chunking(o)} for o in objs if o["status"] == "in_progress"])
        for store_id in touched:
            store = await stores.lock_store(conn, project_id, store_id)
            if store is not None:
                await stores.refresh(conn, store)


def _key(kind: str, obj: dict[str, Any]) -> Any:
    return (obj["vector_store_id"], obj["id"]) if kind == "vector_store_files" else obj["id"]


def _label(kind: str, obj: dict[str, Any]) -> str:
    label = f"{kind[:-1].replace('_', ' ')} {obj['id']}"
    return f"{label} of vector store {obj['vector_store_id']}" if kind == "vector_store_files" else label


def _chunking(obj: dict[str, Any]) -> dict[str, int]:
    static = (obj.get("chunking_strategy") or {}).get("static") or {}
    try:
        max_tokens, overlap = stores.resolve_chunking({"type": "static", "static": static} if static else None)
    except Exception:  # a strategy this server cannot use ("other" on the hosted API): its default
        max_tokens, overlap = stores.resolve_chunking(None)
    return {"max_tokens": max_tokens, "overlap": overlap}


def _row(kind: str, obj: dict[str, Any], project_id: str) -> dict[str, Any]:
    row: dict[str, Any] = {"id": obj["id"], "project_id": project_id, "created_at": obj["created_at"],
                           "data": orjson.dumps(obj).decode()}
    if kind == "files":
        row.update(purpose=obj["purpose"], blob_key=obj["id"], expires_at=obj.get("expires_at"))
    elif kind == "vector_stores":
        row.update(expires_at=obj.get("expires_at"))
    elif kind == "vector_store_files":
        row.update(vector_store_id=obj["vector_store_id"], status=obj["status"], batch_id=None)
    elif kind == "messages":
        row.update(thread_id=obj["thread_id"], run_id=obj.get("run_id"))
    elif kind == "runs":
        row.update(thread_id=obj["thread_id"], status=obj["status"], lease_owner=None, lease_expires_at=None,
                   expires_at=obj.get("expires_at"))
    elif kind == "run_steps":
        row.update(thread_id=obj["thread_id"], run_id=obj["run_id"], status=obj["status"])
    return row


async def _checked_bytes(member: Any, sha256: str, file_id: str, progress: Progress) -> AsyncIterator[bytes]:
    """The member's bytes; raises at the end (so the blob store keeps nothing) when they are not the ones
    the manifest describes (the archive changed since it was verified)."""
    digest = hashlib.sha256()
    for chunk in iter_chunks(member.stream):
        digest.update(chunk)
        progress.add_bytes(len(chunk))
        yield chunk
    if digest.hexdigest() != sha256:
        raise ArchiveError(f"file {file_id}: checksum mismatch: the archive changed while it was imported")
