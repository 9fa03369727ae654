"""Exact vector search without a database extension: per-store float32 matrices in memory, numpy matmul.

Why: brute force over 100k × 384 float32 is ~4 ms with BLAS here, while sqlite-vec's vec0 (also brute
force) took ~47 ms on the same data and would need a second SQLite driver and connection outside the
caller's transaction (docs/benchmarks.md). PostgreSQL without pgvector uses the same path.

Consistency: a store's matrix is tagged with the store's ``version`` (``retrieval_stores``), which every
write bumps inside its own transaction. A search reads the versions first (one indexed query) and
refreshes a store whose version changed — so a write committed by any process, or a rollback, is seen by
the next search, and a matrix is never newer-labelled-older (it is loaded *after* reading its version).
Memory is bounded: least recently used stores are dropped past ``max_bytes``.

Refresh: every indexing of a file gives it a new random ``generation`` (``retrieval_files``), so a changed
store is refreshed by its files' generations: rows of files gone or re-indexed are dropped, the chunks of
new or re-indexed files read, the rest kept — a file added to a 100k-chunk store costs reading that file,
not the store. (Chunk ids alone could not tell: SQLite may give a deleted chunk's id to a new one.) A
file's generation is read before its chunks, so a write landing in between is refreshed again next time.
A store with a file of unknown generation (indexed before migration 0005), or mostly changed, is
reloaded whole.

Windows: a chunk embedded by the local model has a vector per model window (an 800-token chunk is longer
than MiniLM's 256 word pieces; ``retrieval_chunks.window_embeddings``). The matrix holds one row per window
(``ids`` maps a row to its chunk) and a chunk scores its best window's similarity, so a sentence at the end
of a long chunk is found even when the chunk's average vector is about something else. A large store
(``EXACT_ROWS``) first picks candidates by the chunks' mean vectors and scores only their windows. A chunk without
windows (short, an upstream embedder's, indexed before migration 0008) is one row, its ``embedding``.

Memory: a large store's window rows are held as float16 (half the bytes; each block is widened to float32
for the matmul, so BLAS still does the work) and its chunk means as float32 (the first stage reads them
all, so they stay in BLAS's own type): 100k chunks × 4 windows × 384 dims is ~460 MB, not ~770 MB.
Rounding a unit vector's components to float16 moves a cosine by ~1e-4, far below the gaps between
neighbours that ranking depends on (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from assistd.heap_trim import malloc_trim
from assistd.retrieval.tables import retrieval_chunks, retrieval_files, retrieval_stores


@dataclass
class StoreMatrix:
    """A store's vectors. ``ids``, ``file_codes`` and ``matrix`` are views of the first rows of buffers with
    room to spare: a refresh appends new rows in place (a view already handed out never sees them) and marks
    the rows of files gone or re-indexed ``dead`` rather than copying the rest; once a quarter of the rows
    are dead, or the buffers are full, they are copied anew."""

    version: int
    ids: np.ndarray  # int64 chunk id of each row (a chunk has a row per window)
    file_codes: np.ndarray  # int32 index into ``files``
    files: list[str]
    matrix: np.ndarray  # float32 [rows, dims], rows L2-normalised
    generations: dict[str, int] = field(default_factory=dict)  # file id → generation of its rows here
    dead: np.ndarray | None = None  # bool per row: a file since dropped (top_k skips them); None: none
    chunk_count: int = 0  # chunks the rows belong to (dead ones included)
    chunks: tuple[np.ndarray, np.ndarray] | None = None  # (first row of each chunk, mean of its windows):
    # built by the first large search (``_chunk_means``), then extended in place like the rows

    @property
    def nbytes(self) -> int:
        arrays = [self.matrix, self.ids, self.file_codes, *(self.chunks or ())]
        return sum((a if a.base is None else a.base).nbytes for a in arrays)

    @property
    def capacity(self) -> int:
        """Rows the buffers hold (the views show the first ``len(ids)``)."""
        return self.ids.base.shape[0] if self.ids.base is not None else self.ids.shape[0]


def to_blob(embedding: Any) -> bytes:
    """L2-normalised float32 little-endian bytes of one embedding (what ``retrieval_chunks.embedding`` holds)."""
    v = np.asarray(embedding, dtype="<f4").ravel()
    if v.size == 0 or not np.isfinite(v).all():
        raise ValueError("an embedding must be a non-empty vector of finite numbers")
    norm = float(np.linalg.norm(v))
    return (v / norm if norm > 0 else v).astype("<f4").tobytes()


def windows_blob(windows: Any, row_bytes: int) -> bytes | None:
    """``retrieval_chunks.window_embeddings`` for a chunk's window vectors: None for no windows or just one
    (the chunk's ``embedding`` is then that window), else each window's ``to_blob`` back to back."""
    if windows is None:
        return None
    matrix = np.asarray(windows, dtype="<f4")
    if matrix.ndim != 2 or matrix.shape[0] < 2:
        return None
    if matrix.shape[1] * 4 != row_bytes:
        raise ValueError("window vectors must have the chunk's embedding dimensions")
    return b"".join(to_blob(row) for row in matrix)


class VectorCache:
    def __init__(self, max_bytes: int = 512 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._stores: OrderedDict[tuple[str, str], StoreMatrix] = OrderedDict()
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self.rows_read = 0  # chunks read from the database so far (tests, benchmarks)

    def forget(self, db_key: str, vector_store_id: str) -> None:
        self._stores.pop((db_key, vector_store_id), None)

    async def versions(self, conn: AsyncConnection, vector_store_ids: list[str]) -> dict[str, int]:
        rows = await conn.execute(select(retrieval_stores.c.vector_store_id, retrieval_stores.c.version)
                                  .where(retrieval_stores.c.vector_store_id.in_(vector_store_ids)))
        return {r[0]: r[1] for r in rows}

    async def get(self, conn: AsyncConnection, db_key: str, vector_store_id: str, version: int) -> StoreMatrix:
        key = (db_key, vector_store_id)
        cached = self._stores.get(key)
        if cached is None or cached.version != version:
            async with self._locks.setdefault(key, asyncio.Lock()):
                cached = self._stores.get(key)
                if cached is None or cached.version != version:
                    read = self.rows_read
                    cached = await self._refresh(conn, vector_store_id, version, cached)
                    self._stores[key] = cached
                    self._evict()
                    if self.rows_read - read >= _TRIM_AFTER_ROWS:  # once the read transaction has let go of them
                        asyncio.get_running_loop().call_later(1.0, _release_freed_memory)
        self._stores.move_to_end(key)
        return cached

    async def _refresh(self, conn: AsyncConnection, vector_store_id: str, version: int,
                       cached: StoreMatrix | None) -> StoreMatrix:
        f = retrieval_files.c
        generations: dict[str, int] = dict((await conn.execute(  # read before the chunks (module docstring)
            select(f.file_id, f.generation).where(f.vector_store_id == vector_store_id))).all())
        if cached is None or 0 in generations.values() or 0 in cached.generations.values():
            return _build(version, await self._rows(conn, vector_store_id, None), generations)
        changed = [file_id for file_id, g in generations.items() if cached.generations.get(file_id) != g]
        if 2 * len(changed) > len(generations):
            return _build(version, await self._rows(conn, vector_store_id, None), generations)
        new_rows = await self._rows(conn, vector_store_id, changed) if changed else []
        row_bytes = cached.matrix.shape[1] * 4 if cached.matrix.size else None
        if new_rows and any(r[2] != row_bytes for r in new_rows):  # another embedder's, or a first
            return _build(version, await self._rows(conn, vector_store_id, None), generations)
        # Rows of files gone or re-indexed are marked dead; the re-read files' rows are appended.
        dropped = [i for i, file_id in enumerate(cached.files)
                   if generations.get(file_id) != cached.generations.get(file_id)]
        dead = cached.dead
        if dropped:
            gone = np.isin(cached.file_codes, np.array(dropped, np.int32))
            dead = gone if dead is None else dead | gone
        added = _build(version, new_rows, {})
        n, k = len(cached.ids), len(added.ids)
        if n + k > cached.capacity or cached.ids.base is None:
            ids, codes, matrix = _buffers(n + k, cached.matrix.shape[1], cached.chunk_count + added.chunk_count)
            ids[:n], codes[:n], matrix[:n] = cached.ids, cached.file_codes, cached.matrix
        else:  # in place, past the rows the cached views show
            # The three are views of buffers made together by _buffers (ids' base checked above).
            ids, codes, matrix = cached.ids.base, cached.file_codes.base, cached.matrix.base  # type: ignore[assignment]
        if k:
            ids[n:n + k] = added.ids
            codes[n:n + k] = added.file_codes + len(cached.files)
            matrix[n:n + k] = added.matrix
            if dead is not None:
                dead = np.concatenate([dead, np.zeros(k, bool)])
        store = StoreMatrix(version, ids[:n + k], codes[:n + k], cached.files + added.files, matrix[:n + k],
                            generations, dead, cached.chunk_count + added.chunk_count)
        store.chunks = _extended_means(cached, store, n)
        return _compacted(store) if dead is not None and 4 * int(dead.sum()) > n + k else store

    async def _rows(self, conn: AsyncConnection, vector_store_id: str, file_ids: list[str] | None) -> Sequence[Any]:
        """The chunks (id, file id, bytes of its embedding, its window embeddings or else its embedding) of
        the store — or of these of its files — in id order."""
        c = retrieval_chunks.c
        stmt = select(c.id, c.file_id, func.length(c.embedding), func.coalesce(c.window_embeddings, c.embedding)
                      ).where(c.vector_store_id == vector_store_id)
        if file_ids is not None:
            stmt = stmt.where(c.file_id.in_(file_ids))
        rows = (await conn.execute(stmt.order_by(c.id))).all()
        self.rows_read += len(rows)
        return rows

    def _evict(self) -> None:
        total = sum(m.nbytes for m in self._stores.values())
        while total > self.max_bytes and len(self._stores) > 1:
            _, dropped = self._stores.popitem(last=False)
            total -= dropped.nbytes


# A load of this many chunks leaves hundreds of MB of freed row objects that glibc keeps (a 100k-chunk
# store: RSS ~880 MB for a ~500 MB matrix); malloc_trim gives those pages back (~550 MB). The rows are
# garbage only once the search's read transaction is over, so the trim runs a second after the load.
_TRIM_AFTER_ROWS = 10_000


def _release_freed_memory() -> None:
    """Return free heap pages to the OS where the C library can (glibc's ``malloc_trim``; elsewhere nothing)."""
    trim = malloc_trim()
    if trim is not None:
        trim()


def _room(rows: int) -> int:
    """The capacity of buffers for ``rows`` rows: about an eighth more."""
    return rows + rows // 8 + 64


def _buffers(rows: int, dims: int, chunks: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Buffers for ``rows`` rows (of ``chunks`` chunks) and room to grow; the vectors as float16 for a store
    searched in two stages (module docstring)."""
    capacity = _room(rows)
    dtype = np.float16 if _two_stages(rows, chunks) else np.float32
    return np.empty(capacity, np.int64), np.empty(capacity, np.int32), np.empty((capacity, dims), dtype)


_LOAD_CHUNKS = 4096  # chunks copied into a store's matrix at a time while loading it


def _build(version: int, rows: Sequence[Any], generations: dict[str, int]) -> StoreMatrix:
    """A matrix of ``rows`` (``VectorCache._rows``), a row per window. All rows of a store come from one
    embedder; rows of another length (a store indexed before the embedder changed) are left out of vector
    search rather than mixed in."""
    if not rows:
        return StoreMatrix(version, np.zeros(0, np.int64), np.zeros(0, np.int32), [], np.zeros((0, 0), np.float32),
                           dict(generations))
    dims = max(set(r[2] for r in rows), key=lambda n: sum(1 for r in rows if r[2] == n))
    rows = [r for r in rows if r[2] == dims and len(r[3]) % dims == 0]
    blobs = [bytes(r[3]) for r in rows]  # a chunk's windows, or its one embedding
    counts = np.fromiter((len(b) // dims for b in blobs), np.int64, len(rows))
    n = int(counts.sum())
    files: dict[str, int] = {}
    ids, codes, matrix = _buffers(n, dims // 4, len(rows))
    chunk_codes = np.fromiter((files.setdefault(r[1], len(files)) for r in rows), np.int32, len(rows))
    codes[:n] = np.repeat(chunk_codes, counts)
    done = 0
    for i in range(0, len(blobs), _LOAD_CHUNKS):  # a part at a time: no second copy of the whole store
        part = np.frombuffer(b"".join(blobs[i:i + _LOAD_CHUNKS]), "<f4").reshape(-1, dims // 4)
        matrix[done:done + len(part)] = part
        done += len(part)
    ids[:n] = np.repeat(np.fromiter((r[0] for r in rows), np.int64, len(rows)), counts)
    return StoreMatrix(version, ids[:n], codes[:n], list(files), matrix[:n], dict(generations), None, len(rows))


def _compacted(store: StoreMatrix) -> StoreMatrix:
    """The store without its dead rows, in new buffers (and without the files left with no row)."""
    live = np.flatnonzero(~store.dead) if store.dead is not None else np.arange(len(store.ids))
    used = np.unique(store.file_codes[live])
    recode = np.full(len(store.files), -1, np.int32)
    recode[used] = np.arange(len(used), dtype=np.int32)
    n = len(live)
    chunks = len(_chunk_starts(store.ids[live], store.file_codes[live]))
    ids, codes, matrix = _buffers(n, store.matrix.shape[1], chunks)
    ids[:n] = store.ids[live]
    codes[:n] = recode[store.file_codes[live]]
    matrix[:n] = store.matrix[live]
    return StoreMatrix(store.version, ids[:n], codes[:n], [store.files[i] for i in used], matrix[:n],
                       store.generations, None, chunks)


# Rows widened from float16 to float32 at a time (1.5 MB at 384 dims: stays in cache for the matmul).
_BLOCK_ROWS = 1024

# Up to this many rows (windows) a search scores every window; above, chunks are first ranked by the mean
# of their windows and only the best candidates' windows are scored: the matmul over every window is bound
# by memory bandwidth (100k chunks × 4 windows of 384 floats is 615 MB: ~100 ms a query here, docs/benchmarks.md).
EXACT_ROWS = 100_000
MIN_WINDOWS_PER_CHUNK = 2
CANDIDATES_PER_RESULT = 20


def top_k(store: StoreMatrix, query: np.ndarray, k: int, allowed_files: set[str] | None) -> list[tuple[int, float]]:
    """(chunk id, cosine similarity of its best window) of the ``k`` nearest chunks, best first."""
    if store.matrix.shape[0] == 0 or store.matrix.shape[1] != query.shape[0]:
        return []
    rows = store.matrix.shape[0]
    two_stages = _two_stages(rows, store.chunk_count)
    scores = np.zeros(rows, np.float32) if two_stages else _scores(store.matrix, query)
    if store.dead is not None:
        scores[store.dead] = -np.inf
    if allowed_files is not None:
        allowed = np.array([i for i, f in enumerate(store.files) if f in allowed_files], np.int32)
        scores = np.where(np.isin(store.file_codes, allowed), scores, -np.inf)
    rows = scores.shape[0]
    if two_stages:
        return _top_k_two_stage(store, query, k, scores)
    # A chunk has a few windows: the best 4k rows almost always hold k chunks; when not, sort them all.
    m = min(4 * k, rows)
    while True:
        top = np.argpartition(-scores, m - 1)[:m] if m < rows else np.arange(rows)
        top = top[np.argsort(-scores[top], kind="stable")]
        best: dict[int, float] = {}
        for i in top:
            if scores[i] == -np.inf:
                break
            best.setdefault(int(store.ids[i]), float(scores[i]))
            if len(best) == k:
                break
        if len(best) == k or m == rows or scores[top[-1]] == -np.inf:
            return list(best.items())
        m = rows


def _two_stages(rows: int, chunks: int) -> bool:
    """Whether a store is searched in two stages: more than ``EXACT_ROWS`` rows, and at least
    ``MIN_WINDOWS_PER_CHUNK`` a chunk on average (with fewer, the chunk means would be nearly as many rows as
    the windows: no faster, and an O(store) build of them when a store grows past ``EXACT_ROWS``)."""
    return rows > EXACT_ROWS and rows >= MIN_WINDOWS_PER_CHUNK * chunks


def _scores(matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
    """``matrix @ query`` in float32: float16 rows are widened a block at a time (numpy has no float16 BLAS)."""
    if matrix.dtype == np.float32:
        return matrix @ query
    out = np.empty(matrix.shape[0], np.float32)
    block = np.empty((_BLOCK_ROWS, matrix.shape[1]), np.float32)
    for i in range(0, matrix.shape[0], _BLOCK_ROWS):
        part = block[:min(_BLOCK_ROWS, matrix.shape[0] - i)]
        part[...] = matrix[i:i + len(part)]
        np.matmul(part, query, out=out[i:i + len(part)])
    return out


def _chunk_means(store: StoreMatrix) -> tuple[np.ndarray, np.ndarray]:
    """(first row of each chunk, its windows' mean vector, normalised), kept on the store."""
    if store.chunks is None:
        store.chunks = _appended(None, *_means(store.ids, store.file_codes, store.matrix, 0))
    return store.chunks


def _appended(chunks: tuple[np.ndarray, np.ndarray] | None, starts: np.ndarray,
              means: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``chunks`` (views of buffers with room, or None) with these chunks after them: written in place past
    the views when the buffers have room (a view handed out never sees them), else into new buffers."""
    m = 0 if chunks is None else len(chunks[0])
    k = len(starts)
    start_buffer = None if chunks is None else chunks[0].base
    mean_buffer = None if chunks is None else chunks[1].base
    if start_buffer is None or mean_buffer is None or m + k > len(start_buffer):
        start_buffer, mean_buffer = np.empty(_room(m + k), np.int64), np.empty((_room(m + k), means.shape[1]),
                                                                                np.float32)
        if chunks is not None:
            start_buffer[:m], mean_buffer[:m] = chunks
    start_buffer[m:m + k], mean_buffer[m:m + k] = starts, means
    return start_buffer[:m + k], mean_buffer[:m + k]


def _means(ids: np.ndarray, codes: np.ndarray, matrix: np.ndarray, first: int) -> tuple[np.ndarray, np.ndarray]:
    """``_chunk_means`` of rows ``first:``. A chunk's rows are consecutive; a new file code starts a new chunk
    too (SQLite may give a deleted chunk's id to the next one). Summed by window count, a gather per window:
    ``np.add.reduceat`` over rows is ~25× slower."""
    ids, codes, matrix = ids[first:], codes[first:], matrix[first:]
    if len(ids) == 0:
        return np.zeros(0, np.int64), np.zeros((0, matrix.shape[1]), np.float32)
    starts = _chunk_starts(ids, codes)
    lengths = np.diff(np.append(starts, len(ids)))
    means = np.zeros((len(starts), matrix.shape[1]), np.float32)
    for n in np.unique(lengths):
        sel = np.flatnonzero(lengths == n)
        for j in range(int(n)):
            means[sel] += matrix[starts[sel] + j]  # float16 rows widen as they are added
    means /= np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
    return starts + first, means


def _chunk_starts(ids: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """The first row of each chunk (``_means``)."""
    if len(ids) == 0:
        return np.zeros(0, np.int64)
    return np.flatnonzero(np.concatenate([[True], (ids[1:] != ids[:-1]) | (codes[1:] != codes[:-1])]))


def _extended_means(cached: StoreMatrix, store: StoreMatrix, n: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The means of ``cached``'s rows (if built), and of the rows ``store`` appended after its first ``n``."""
    if cached.chunks is None:
        return None
    return _appended(cached.chunks, *_means(store.ids, store.file_codes, store.matrix, n))


def _top_k_two_stage(store: StoreMatrix, query: np.ndarray, k: int, mask: np.ndarray) -> list[tuple[int, float]]:
    """``top_k`` of a large store: the ``CANDIDATES_PER_RESULT × k`` chunks nearest by their mean vector,
    ranked by their best window. ``mask``: 0 for rows searchable, -inf for rows excluded."""
    starts, means = _chunk_means(store)
    chunk_scores = _scores(means, query) + mask[starts]
    c = min(len(starts), CANDIDATES_PER_RESULT * k)
    cand = np.argpartition(-chunk_scores, c - 1)[:c] if c < len(starts) else np.arange(len(starts))
    cand = cand[chunk_scores[cand] != -np.inf]
    if cand.size == 0:
        return []
    ends = np.append(starts[1:], len(store.ids))
    lengths = ends[cand] - starts[cand]
    offsets = np.cumsum(lengths) - lengths
    rows = np.repeat(starts[cand] - offsets, lengths) + np.arange(int(lengths.sum()))
    best = np.maximum.reduceat(_scores(store.matrix[rows], query), offsets)
    order = np.argsort(-best, kind="stable")[:k]
    return [(int(store.ids[starts[cand[i]]]), float(best[i])) for i in order]
