"""Ingestion: the ``ingest_file`` job turning an attached file into indexed chunks.

A job (queued by ``vector_stores.add_files`` in the attaching transaction) runs in two phases:

1. outside any transaction: read the bytes, ``retrieval.prepare`` (parse → chunk in a thread, embed in the
   embedder's process or upstream) — seconds of work that must hold no lock;
2. one write transaction: mark the job done (only while we hold its lease, else everything rolls back),
   lock the store, check the file is still the one we were queued for (same row ``seq``, still
   ``in_progress``: not detached, re-attached or cancelled meanwhile), ``index.add`` + the file
   ``completed`` + the store's counts and usage — or the file ``failed`` with ``last_error``.

So a file is indexed once however often its job restarts: a job killed before its commit left nothing,
and ``index.add`` replaces a file's chunks anyway.

``start(db, blobs, settings, run_jobs=...)`` builds this process's ``Retrieval`` (index + lazy embedder)
and, when the process executes work, the ``JobRunner`` with this module's handlers.
"""

from __future__ import annotations

import logging
import mimetypes
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from assistd.blobstore import BlobStore
from assistd.events.base import EventBus
from assistd.retrieval import ChunkingError, IndexedChunk, ParseError, prepare
from assistd.runner.jobs import MAX_ATTEMPTS, Finish, Job, JobRunner
from assistd.services import files as file_service
from assistd.services import vector_stores as stores
from assistd.services.vector_search import Retrieval
from assistd.store import objects
from assistd.store.db import Database
from assistd.store.tables import files, vector_store_files

log = logging.getLogger("assistd.ingestion")

JOB_CONCURRENCY = 2  # ingestion jobs per process: enough to overlap I/O, never enough to starve runs


def usage_bytes(chunks: list[IndexedChunk]) -> int:
    """What the index holds for these chunks (text + float32 vector), as ``HybridIndex.usage_bytes`` counts."""
    return sum(len(ch.text) + 4 * len(ch.embedding) for ch in chunks)


@dataclass
class Ingestion:
    retrieval: Retrieval
    runner: JobRunner | None

    async def aclose(self) -> None:
        if self.runner is not None:
            await self.runner.stop()
        await self.retrieval.aclose()


async def start(db: Database, blobs: BlobStore, settings: Any, bus: EventBus, *, run_jobs: bool) -> Ingestion:
    retrieval = Retrieval(settings)
    runner = None
    if run_jobs:
        runner = JobRunner(db, {stores.INGEST_KIND: IngestFile(db, blobs, retrieval)}, bus=bus,
                           concurrency=JOB_CONCURRENCY,
                           lease_seconds=settings.lease_seconds)
        await runner.start()
    return Ingestion(retrieval, runner)


class IngestFile:
    """The ``ingest_file`` handler: payload {vector_store_id, file_id, seq, chunking: {max_tokens, overlap}}."""

    def __init__(self, db: Database, blobs: BlobStore, retrieval: Retrieval) -> None:
        self.db = db
        self.blobs = blobs
        self.retrieval = retrieval

    async def __call__(self, job: Job, finish: Finish) -> None:
        p = job.payload
        store_id, file_id, seq = p["vector_store_id"], p["file_id"], p["seq"]
        async with self.db.read() as conn:
            current, _ = await self._current(conn, job, store_id, file_id, seq)
            file = await objects.get_object(conn, files, file_id, project_id=job.project_id)
        if current is None or file is None:
            return  # detached, re-attached, cancelled or deleted meanwhile: nothing to do
        chunks: list[IndexedChunk] = []
        error: dict[str, str] | None = None
        if job.attempts > MAX_ATTEMPTS:
            error = {"code": "server_error", "message": f"Processing was interrupted {MAX_ATTEMPTS} times."}
        else:
            try:
                data = await file_service.read_content(self.blobs, file, file_service.max_file_bytes())
                chunks = await prepare(data, file["filename"], mimetypes.guess_type(file["filename"])[0],
                                       self.retrieval.embedder(), max_tokens=p["chunking"]["max_tokens"],
                                       overlap=p["chunking"]["overlap"])
            except ParseError as exc:
                error = {"code": exc.code, "message": exc.message}
            except ChunkingError as exc:
                error = {"code": "invalid_file", "message": str(exc)}
            except Exception as exc:  # the embedder's upstream down, a missing blob…: the file fails, not the job
                log.exception("ingesting %s into %s failed", file_id, store_id)
                error = {"code": "server_error", "message": f"The file could not be processed ({type(exc).__name__})."}
        async with self.db.write() as conn:
            await finish(conn)
            store = await stores.lock_store(conn, job.project_id, store_id)
            if store is None:
                return
            obj, batch_id = await self._current(conn, job, store_id, file_id, seq)
            if obj is None:
                return
            if error is None:
                await self.retrieval.index.add(conn, store_id, file_id, file["filename"], chunks,
                                               obj.get("attributes") or {})
                obj.update(status="completed", last_error=None, usage_bytes=usage_bytes(chunks))
            else:
                obj.update(status="failed", last_error=error, usage_bytes=0)
            await conn.execute(vector_store_files.update()
                               .where(vector_store_files.c.vector_store_id == store_id,
                                      vector_store_files.c.id == file_id)
                               .values(status=obj["status"], data=objects.dumps(obj)))
            moved = {"in_progress": -1, obj["status"]: 1}
            await stores.refresh(conn, store, moved=moved)
            await stores.refresh_batch(conn, batch_id, moved=moved)

    async def _current(self, conn: AsyncConnection, job: Job, store_id: str, file_id: str, seq: int
                       ) -> tuple[dict[str, Any] | None, str | None]:
        """The vector store file this job was queued for (and its batch), while it still waits for it."""
        c = vector_store_files.c
        row = (await conn.execute(select(c.seq, c.status, c.batch_id, c.data).where(
            c.vector_store_id == store_id, c.id == file_id, c.project_id == job.project_id))).first()
        if row is None or row.seq != seq or row.status != "in_progress":
            return None, None
        return orjson.loads(row.data), row.batch_id
