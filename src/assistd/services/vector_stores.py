"""Vector stores: the store rows, their derived fields, and adding files (which queues their ingestion).

Derived fields stay true at all times: ``file_counts``, ``status`` and ``usage_bytes`` are brought up to
date by ``refresh`` in the same transaction as every change of a file's status (attach, ingestion result,
cancel, delete). Each costs O(1) per change, so a store's ingestion stays as fast at 100k chunks as at 1k:
the writer says how many files entered or left each status (``moved``) and the stored counts move by that
(a recount of the store's files, O(files), when it does not say); ``usage_bytes`` is kept by the index's
own writes (``HybridIndex.usage_bytes`` reads one row).
``expires_at`` = ``last_active_at`` + ``expires_after.days``; a store past it reads as
``status: "expired"`` (computed when read, since time alone makes it so) and refuses search.

Locking order, for PostgreSQL: the ``vector_stores`` row (``lock_store``) first, then its files' rows, the
batch row, then the retrieval index (whose ``add``/``delete_file`` lock the store's version row). Every
writer here follows it, so writers of one store queue instead of deadlocking.

Public API for other services (no web imports; ``conn`` is the caller's write transaction)::

    create_store(conn, project_id, *, name=None, file_ids=(), chunking_strategy=None, metadata=None,
                 expires_after=None, description=None, param_prefix="") -> dict
        A VectorStoreObject; ``file_ids`` are attached and queued for ingestion in the same transaction
        (404 naming ``{param_prefix}file_ids`` for an unknown one). Used by the
        ``tool_resources.file_search.vector_stores`` helpers (pass
        ``param_prefix="tool_resources.file_search.vector_stores[0]."``; threads' helper stores get
        ``expires_after={"anchor": "last_active_at", "days": 7}`` on the hosted API).
    attach_files(conn, project_id, vector_store_id, file_ids, *, chunking_strategy=None, attributes=None,
                 param="file_ids", replace=True) -> list[dict]
        VectorStoreFileObjects, in the order given, e.g. for message ``attachments`` with file_search.
        ``replace=True`` (the HTTP endpoints) re-ingests a file already attached; ``replace=False`` keeps
        one that is ``in_progress`` or ``completed`` as it is (and returns it).
    require_stores(conn, project_id, ids, param=None) -> list[dict]   404 naming ``param`` for a missing one
    touch(conn, ids) -> None          ``last_active_at`` = now (pushes ``expires_at``); expired stores stay
    is_expired(store) -> bool
    refresh(conn, store, moved=None) -> dict
        After changing files' statuses in ``store`` (locked): ``moved`` = {status: +n entered / -n left};
        ``None`` recounts. refresh_batch(conn, batch_id, moved=None) likewise for a batch.
    A transaction that attached files calls ``Outbox.wake_jobs()`` so that ingestion starts at once after
    its commit (otherwise it is found within a poll interval).
    Searching: ``assistd.services.vector_search.search`` (raises ``VectorStoreExpired``).

``chunking_strategy`` / ``expires_after`` may be dicts or the request models; ``auto`` resolves to the
static 800/400 that responses show.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from assistd import ids
from assistd.errors import InvalidRequest, NotFound
from assistd.pagination import Page, PageParams
from assistd.retrieval import ChunkingError, HybridIndex, strategy_params
from assistd.services import files as file_service
from assistd.store import jobs, objects
from assistd.store.tables import file_batches, vector_store_files, vector_stores

DAY_SECONDS = 86_400
INGEST_KIND = "ingest_file"
STATUSES = ("in_progress", "completed", "failed", "cancelled")

_index: HybridIndex | None = None


def process_index() -> HybridIndex:
    """This process's one ``HybridIndex`` (it owns the vector cache), created on first use."""
    global _index
    if _index is None:
        _index = HybridIndex()
    return _index


class VectorStoreExpired(InvalidRequest):
    def __init__(self, vector_store_id: str) -> None:
        super().__init__(f"Vector store '{vector_store_id}' has expired and can no longer be used.")


@dataclass(frozen=True, slots=True)
class FileSpec:
    """One file to attach: the file row, its chunking and attributes."""

    file: dict[str, Any]
    max_tokens: int
    overlap: int
    attributes: dict[str, Any]


def _plain(value: Any) -> Any:
    return value.model_dump() if hasattr(value, "model_dump") else value


def resolve_chunking(strategy: Any, param: str = "chunking_strategy") -> tuple[int, int]:
    try:
        return strategy_params(_plain(strategy))
    except ChunkingError as exc:
        raise InvalidRequest(f"Invalid '{param}': {exc}", param=param) from None


def chunking_object(max_tokens: int, overlap: int) -> dict[str, Any]:
    return {"type": "static", "static": {"max_chunk_size_tokens": max_tokens, "chunk_overlap_tokens": overlap}}


def is_expired(store: dict[str, Any], now: int | None = None) -> bool:
    expires_at = store.get("expires_at")
    return expires_at is not None and expires_at <= (ids.now() if now is None else now)


def view(store: dict[str, Any], now: int | None = None) -> dict[str, Any]:
    """The object as clients see it: stored status, or ``expired`` once past ``expires_at``."""
    return {**store, "status": "expired"} if is_expired(store, now) else store


def _apply_expiry(store: dict[str, Any]) -> None:
    policy = store.get("expires_after")
    store["expires_at"] = store["last_active_at"] + policy["days"] * DAY_SECONDS if policy else None


def _check_expires_after(value: Any, param: str = "expires_after") -> dict[str, Any] | None:
    policy = _plain(value)
    if policy is None:
        return None
    days = policy.get("days") if isinstance(policy, dict) else None
    if policy.get("anchor") != "last_active_at" or not isinstance(days, int) or not 1 <= days <= 365:
        raise InvalidRequest(f"Invalid '{param}': expected {{anchor: 'last_active_at', days: 1..365}}.",
                             param=param)
    return {"anchor": "last_active_at", "days": days}


async def _save(conn: AsyncConnection, store: dict[str, Any]) -> None:
    await objects.save_object(conn, vector_stores, store, expires_at=store.get("expires_at"))


# --- reads -------------------------------------------------------------------------------------------------

async def get_store(conn: AsyncConnection, project_id: str, store_id: str, *, param: str | None = None
                    ) -> dict[str, Any]:
    store = await objects.get_object(conn, vector_stores, store_id, project_id=project_id)
    if store is None:
        raise NotFound("vector store", store_id, param=param)
    return view(store)


async def require_stores(conn: AsyncConnection, project_id: str, store_ids: Sequence[str],
                         param: str | None = None) -> list[dict[str, Any]]:
    return [await get_store(conn, project_id, sid, param=param) for sid in store_ids]


async def list_stores(conn: AsyncConnection, project_id: str, page: PageParams) -> Page:
    result = await objects.list_page(conn, vector_stores, page, project_id=project_id)
    now = ids.now()
    items = [orjson.dumps(view(orjson.loads(raw), now)) for raw in result.items]
    return Page(items=items, first_id=result.first_id, last_id=result.last_id, has_more=result.has_more)


async def lock_store(conn: AsyncConnection, project_id: str | None, store_id: str) -> dict[str, Any] | None:
    """The stored object (status as stored), its row locked until the transaction ends."""
    scope = {} if project_id is None else {"project_id": project_id}
    return await objects.get_for_update(conn, vector_stores, store_id, **scope)


async def _require_locked(conn: AsyncConnection, project_id: str, store_id: str, *, usable: bool = False
                          ) -> dict[str, Any]:
    store = await lock_store(conn, project_id, store_id)
    if store is None:
        raise NotFound("vector store", store_id)
    if usable and is_expired(store):
        raise VectorStoreExpired(store_id)
    return store


# --- derived fields ----------------------------------------------------------------------------------------

async def count_files(conn: AsyncConnection, *where: Any) -> dict[str, int]:
    c = vector_store_files.c
    rows = await conn.execute(select(c.status, func.count()).where(*where).group_by(c.status))
    counts = dict.fromkeys(STATUSES, 0)
    for status, n in rows:
        counts[status] = counts.get(status, 0) + int(n)
    return {**counts, "total": sum(counts.values())}


def _move(counts: dict[str, int], moved: Mapping[str, int]) -> dict[str, int]:
    out = {**dict.fromkeys(STATUSES, 0), **counts}
    for status, n in moved.items():
        out[status] += n
    return {**{status: out[status] for status in STATUSES}, "total": sum(out[status] for status in STATUSES)}


async def refresh(conn: AsyncConnection, store: dict[str, Any], moved: Mapping[str, int] | None = None
                  ) -> dict[str, Any]:
    """Bring a locked store's counts, status and usage up to date, and save it. ``moved``: how many of its
    files entered (+n) or left (-n) each status since it was last saved (an empty dict when the counts are
    already current: ``add_files`` moves them itself); ``None`` recounts the store's files."""
    counts = None if moved is None else _move(store["file_counts"], moved)
    if counts is None or min(counts.values()) < 0:  # (a negative count would be a bug: recount, heal)
        counts = await count_files(conn, vector_store_files.c.vector_store_id == store["id"])
    store["file_counts"] = counts
    store["status"] = "in_progress" if counts["in_progress"] else "completed"
    store["usage_bytes"] = await process_index().usage_bytes(conn, store["id"])
    await _save(conn, store)
    return store


async def refresh_batch(conn: AsyncConnection, batch_id: str | None, moved: Mapping[str, int] | None = None
                        ) -> dict[str, Any] | None:
    """Recompute a batch's counts (moved as ``refresh``'s, or recounted) and status (``cancelled`` sticks)."""
    if batch_id is None:
        return None
    batch = await objects.get_for_update(conn, file_batches, batch_id)
    if batch is None:
        return None
    counts = None if moved is None else _move(batch["file_counts"], moved)
    if counts is None or min(counts.values()) < 0:
        counts = await count_files(conn, vector_store_files.c.batch_id == batch_id)
    batch["file_counts"] = counts
    if batch["status"] != "cancelled":
        if counts["in_progress"]:
            batch["status"] = "in_progress"
        else:  # every file failed: the batch failed; otherwise it completed (check file_counts.failed)
            batch["status"] = "failed" if counts["failed"] and not counts["completed"] else "completed"
    await objects.save_object(conn, file_batches, batch)
    return batch


async def touch(conn: AsyncConnection, store_ids: Iterable[str]) -> None:
    now = ids.now()
    for store_id in sorted(set(store_ids)):  # one order for every writer: no lock cycles
        store = await lock_store(conn, None, store_id)
        if store is None or is_expired(store, now) or store["last_active_at"] >= now:
            continue
        store["last_active_at"] = now
        _apply_expiry(store)
        await _save(conn, store)


# --- stores ------------------------------------------------------------------------------------------------

async def create_store(
    conn: AsyncConnection, project_id: str, *, name: str | None = None, file_ids: Sequence[str] = (),
    chunking_strategy: Any = None, metadata: dict[str, str] | None = None, expires_after: Any = None,
    description: str | None = None, param_prefix: str = "",
) -> dict[str, Any]:
    max_tokens, overlap = resolve_chunking(chunking_strategy, f"{param_prefix}chunking_strategy")
    policy = _check_expires_after(expires_after, f"{param_prefix}expires_after")
    found = await file_service.require_files(conn, project_id, list(file_ids), f"{param_prefix}file_ids")
    now = ids.now()
    store: dict[str, Any] = {"id": ids.new_id("vector_store"), "object": "vector_store", "created_at": now,
                             "name": name or ""}
    if description is not None:
        store["description"] = description
    store.update({"usage_bytes": 0, "file_counts": dict.fromkeys((*STATUSES, "total"), 0), "status": "completed"})
    if policy is not None:
        store["expires_after"] = policy
    store.update({"expires_at": None, "last_active_at": now, "metadata": metadata or {}})
    _apply_expiry(store)
    await objects.insert_object(conn, vector_stores, store, project_id=project_id, expires_at=store["expires_at"])
    if found:
        await add_files(conn, project_id, store, [FileSpec(f, max_tokens, overlap, {}) for f in found])
        await refresh(conn, store, moved={})
    return view(store)


async def modify_store(conn: AsyncConnection, project_id: str, store_id: str, *, fields: set[str],
                       name: str | None = None, metadata: dict[str, str] | None = None,
                       expires_after: Any = None) -> dict[str, Any]:
    """``fields``: the names the client sent. ``expires_after`` sent as null removes the policy."""
    store = await _require_locked(conn, project_id, store_id)
    if name is not None:
        store["name"] = name
    if metadata is not None:
        store["metadata"] = metadata
    if "expires_after" in fields:
        policy = _check_expires_after(expires_after)
        if policy is None:
            store.pop("expires_after", None)
        else:
            store["expires_after"] = policy
        _apply_expiry(store)
    await _save(conn, store)
    return view(store)


async def delete_store(conn: AsyncConnection, project_id: str, store_id: str) -> dict[str, Any]:
    """The store, its files' rows, its batches and its index data; queued jobs find it gone and stop."""
    await _require_locked(conn, project_id, store_id)
    await conn.execute(delete(vector_store_files).where(vector_store_files.c.vector_store_id == store_id))
    await conn.execute(delete(file_batches).where(file_batches.c.vector_store_id == store_id))
    await objects.delete_object(conn, vector_stores, store_id, project_id=project_id)
    await process_index().delete_store(conn, store_id)
    return {"id": store_id, "object": "vector_store.deleted", "deleted": True}


# --- adding files ------------------------------------------------------------------------------------------

async def attach_files(
    conn: AsyncConnection, project_id: str, vector_store_id: str, file_ids: Sequence[str], *,
    chunking_strategy: Any = None, attributes: dict[str, Any] | None = None, param: str = "file_ids",
    replace: bool = True,
) -> list[dict[str, Any]]:
    max_tokens, overlap = resolve_chunking(chunking_strategy)
    store = await _require_locked(conn, project_id, vector_store_id, usable=True)
    found = await file_service.require_files(conn, project_id, list(file_ids), param)
    specs = [FileSpec(f, max_tokens, overlap, dict(attributes or {})) for f in found]
    kept: dict[str, dict[str, Any]] = {}
    if not replace:
        c = vector_store_files.c
        rows = await conn.execute(select(c.id, c.data).where(
            c.vector_store_id == vector_store_id, c.id.in_([f["id"] for f in found]),
            c.status.in_(("in_progress", "completed"))))
        kept = {row.id: orjson.loads(row.data) for row in rows}
    added = {o["id"]: o for o in await add_files(conn, project_id, store,
                                                 [s for s in specs if s.file["id"] not in kept])}
    await refresh(conn, store, moved={})
    return [kept.get(f["id"]) or added[f["id"]] for f in found]


async def add_files(conn: AsyncConnection, project_id: str, store: dict[str, Any], specs: Sequence[FileSpec],
                    batch_id: str | None = None) -> list[dict[str, Any]]:
    """Insert the vector store files (``in_progress``) and one ingestion job each, in the caller's
    transaction; ``store`` must be locked. A file already in the store is replaced: its earlier chunks go
    now, and its earlier job (if still queued) finds its row gone (the ``seq`` it was given) and stops.
    ``store["file_counts"]`` is moved here; the caller then saves the store with ``refresh(conn, store,
    moved={})`` (and refreshes the new batch)."""
    c = vector_store_files.c
    unique = list({spec.file["id"]: spec for spec in specs}.values())  # a file listed twice is added once
    wanted = [spec.file["id"] for spec in unique]
    old = (await conn.execute(select(c.id, c.batch_id, c.status).where(c.vector_store_id == store["id"],
                                                                       c.id.in_(wanted)))).all()
    if old:
        await conn.execute(delete(vector_store_files).where(c.vector_store_id == store["id"],
                                                            c.id.in_([r.id for r in old])))
        for row in old:
            await process_index().delete_file(conn, store["id"], row.id)
    now = ids.now()
    objs = [{"id": spec.file["id"], "object": "vector_store.file", "usage_bytes": 0, "created_at": now,
             "vector_store_id": store["id"], "status": "in_progress", "last_error": None,
             "chunking_strategy": chunking_object(spec.max_tokens, spec.overlap), "attributes": spec.attributes}
            for spec in unique]
    moved: dict[str, int] = {"in_progress": len(objs)}
    for row in old:
        moved[row.status] = moved.get(row.status, 0) - 1
    store["file_counts"] = _move(store["file_counts"], moved)
    if not objs:
        return []
    rows = await conn.execute(
        insert(vector_store_files).returning(c.id, c.seq, sort_by_parameter_order=True),
        [{"id": o["id"], "vector_store_id": store["id"], "project_id": project_id, "created_at": now,
          "status": "in_progress", "batch_id": batch_id, "data": objects.dumps(o)} for o in objs])
    seqs = {row.id: row.seq for row in rows}
    await jobs.enqueue(conn, project_id, INGEST_KIND, [
        {"vector_store_id": store["id"], "file_id": spec.file["id"], "seq": seqs[spec.file["id"]],
         "chunking": {"max_tokens": spec.max_tokens, "overlap": spec.overlap}} for spec in unique])
    for batch in sorted({r.batch_id for r in old} - {None, batch_id}):
        await refresh_batch(conn, batch)  # the file moved out of its earlier batch
    return objs
