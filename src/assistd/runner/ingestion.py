"""Executing ingestion: the ``ingest_file`` job turning an attached file into indexed chunks, and the
process's ingestion component (its ``Retrieval`` and, when the process executes work, its ``JobRunner``).

A job (queued by ``vector_stores.add_files`` in the attaching transaction) runs in two phases:

1. outside any transaction: read the bytes, ``retrieval.prepare`` (parse → chunk in a thread, embed in the
   embedder's process or upstream) — seconds of work that must hold no lock;
2. one write transaction: mark the job done (only while we hold its lease, else everything rolls back),
   then record the outcome (services/ingestion.py: the store locked, the file still the one we were
   queued for, its chunks indexed and the file ``completed`` — or ``failed`` with ``last_error`` —, the
   counts moved).

So a file is indexed once however often its job restarts: a job killed before its commit left nothing,
and ``index.add`` replaces a file's chunks anyway.
"""

from __future__ import annotations

import logging
import mimetypes
from dataclasses import dataclass
from typing import Any

from assistd.blobstore import BlobStore
from assistd.events.base import EventBus
from assistd.retrieval import ChunkingError, IndexedChunk, ParseError, prepare
from assistd.runner.jobs import MAX_ATTEMPTS, Finish, Job, JobRunner
from assistd.services import files as file_service
from assistd.services import ingestion
from assistd.services import vector_stores as stores
from assistd.services.vector_search import Retrieval
from assistd.store import objects
from assistd.store.db import Database
from assistd.store.tables import files

log = logging.getLogger("assistd.ingestion")

JOB_CONCURRENCY = 2  # ingestion jobs per process: enough to overlap I/O, never enough to starve runs


@dataclass
class Ingestion:
    retrieval: Retrieval  # also what the file_search tool and the search endpoint use
    runner: JobRunner | None  # None: this process executes no jobs

    async def aclose(self) -> None:
        if self.runner is not None:
            await self.runner.stop()
        await self.retrieval.aclose()


async def start(db: Database, blobs: BlobStore, settings: Any, bus: EventBus, *, run_jobs: bool) -> Ingestion:
    retrieval = Retrieval(settings)
    runner = None
    if run_jobs:
        runner = JobRunner(db, {stores.INGEST_KIND: IngestFile(db, blobs, retrieval)}, bus=bus,
                           concurrency=JOB_CONCURRENCY, lease_seconds=settings.lease_seconds)
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
            waiting = await ingestion.waiting_file(conn, job.project_id, store_id, file_id, seq)
            file = await objects.get_object(conn, files, file_id, project_id=job.project_id)
        if waiting is None or file is None:
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
            await ingestion.record_outcome(conn, self.retrieval.index, job.project_id, store_id, file_id, seq,
                                           filename=file["filename"], chunks=chunks, error=error)
