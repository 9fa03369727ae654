"""``HybridIndex``: writes and hybrid (vector + keyword) search inside the caller's transaction.

Every method takes the caller's ``AsyncConnection`` (``Database.write()`` / ``read()``), so indexing a file
commits or rolls back with the rest of the caller's work (the vector store file's status, the job). The
backend is the connection's dialect:

- SQLite: FTS5 keyword ranking + the in-memory numpy vector path (``vectors.py``);
- PostgreSQL: tsvector keyword ranking + pgvector when migration 0004 found the extension and added the
  column (a chunk ranked by its best window, ``windows_v <=> q``, migration 0013; else ``embedding_v <=> q``),
  else the same numpy path as SQLite (what runs on this project's CI).

Writers: embed *before* opening the write transaction — ``add`` bumps the store's version row first, which
serialises writers of one store on PostgreSQL until they commit (and so their updates of the store's word
counts, ``term_counts``, never deadlock).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import (
    LargeBinary,
    String,
    and_,
    bindparam,
    cast,
    delete,
    func,
    insert,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import UserDefinedType

from assistd.retrieval.filters import compile_filter, validate_filter
from assistd.retrieval.index import keyword, term_counts
from assistd.retrieval.index.types import IndexedChunk, SearchHit, check_search_args, fuse
from assistd.retrieval.index.vectors import VectorCache, to_blob, top_k, windows_blob
from assistd.retrieval.tables import retrieval_chunks, retrieval_files, retrieval_stores

CANDIDATES = 60  # depth of each ranking fed into fusion (at least 3 × max_num_results)


class HybridIndex:
    """One per process (it owns the vector cache); safe to share between connections and databases."""

    def __init__(self, *, cache_bytes: int = 512 * 1024 * 1024) -> None:
        self.cache = VectorCache(cache_bytes)
        self._pgvector: dict[str, bool] = {}

    # ------------------------------------------------------------------------------------------ writes

    async def add(self, conn: AsyncConnection, vector_store_id: str, file_id: str, file_name: str,
                  chunks: Sequence[IndexedChunk], attributes: dict[str, Any] | None = None) -> int:
        """Index a file's chunks (replacing any earlier indexing of it in this store); returns the count."""
        blobs = [to_blob(ch.embedding) for ch in chunks]
        if len({len(b) for b in blobs}) > 1:
            raise ValueError("all embeddings of a file must have the same dimensions")
        windows = [windows_blob(ch.windows, len(blob)) for ch, blob in zip(chunks, blobs, strict=True)]
        usage = sum(len(ch.text) + len(blob) + len(w or b"")
                    for ch, blob, w in zip(chunks, blobs, windows, strict=True))
        previous = await self._file_usage(conn, vector_store_id, file_id)
        await self._bump(conn, vector_store_id, usage - (previous or 0))  # first: the store's writers queue here
        if previous is not None:  # indexed before
            await self._delete_chunks(conn, vector_store_id, file_id)
        await self._upsert(conn, retrieval_files, {"vector_store_id": vector_store_id, "file_id": file_id,
                                                   "file_name": file_name, "attributes": attributes or {},
                                                   "generation": secrets.randbits(62) + 1, "usage_bytes": usage},
                           ["vector_store_id", "file_id"], ["file_name", "attributes", "generation", "usage_bytes"])
        rows: list[dict[str, Any]] = [
            {"vector_store_id": vector_store_id, "file_id": file_id, "chunk_index": i, "text": ch.text,
             "tokens": int(ch.tokens), "embedding": blob, "window_embeddings": w}
            for i, (ch, blob, w) in enumerate(zip(chunks, blobs, windows, strict=True))]
        if rows and await self._has_pgvector(conn):
            for row in rows:
                row["ev"] = _vector_literal(np.frombuffer(row["embedding"], "<f4"))
                row["wv"] = _windows_literal(row["window_embeddings"], len(row["embedding"]))
            await conn.execute(text(
                "INSERT INTO retrieval_chunks (vector_store_id, file_id, chunk_index, text, tokens, embedding, "
                "window_embeddings, embedding_v, windows_v) VALUES (:vector_store_id, :file_id, :chunk_index, "
                ":text, :tokens, :embedding, :window_embeddings, CAST(:ev AS vector), "
                "CAST(CAST(:wv AS text) AS vector[]))").bindparams(
                bindparam("embedding", type_=LargeBinary), bindparam("window_embeddings", type_=LargeBinary)), rows)
        elif rows:
            await conn.execute(insert(retrieval_chunks), rows)
        if rows and conn.dialect.name == "postgresql":
            await term_counts.added(conn, vector_store_id, file_id)
        return len(rows)

    async def delete_file(self, conn: AsyncConnection, vector_store_id: str, file_id: str) -> int:
        """Remove a file from a store's index; returns the number of chunks removed."""
        previous = await self._file_usage(conn, vector_store_id, file_id)
        await self._bump(conn, vector_store_id, -(previous or 0))
        removed = await self._delete_chunks(conn, vector_store_id, file_id) if previous is not None else 0
        await conn.execute(delete(retrieval_files).where(retrieval_files.c.vector_store_id == vector_store_id,
                                                         retrieval_files.c.file_id == file_id))
        return removed

    async def delete_store(self, conn: AsyncConnection, vector_store_id: str) -> None:
        for t in (retrieval_chunks, retrieval_files, retrieval_stores):
            await conn.execute(delete(t).where(t.c.vector_store_id == vector_store_id))
        if conn.dialect.name == "postgresql":
            await conn.execute(text("DELETE FROM retrieval_terms WHERE vector_store_id = :s"), {"s": vector_store_id})
        self.cache.forget(_db_key(conn), vector_store_id)

    async def update_attributes(self, conn: AsyncConnection, vector_store_id: str, file_id: str,
                                attributes: dict[str, Any]) -> bool:
        """Replace a file's attributes (no re-embedding: filters read them at query time)."""
        f = retrieval_files.c
        result = await conn.execute(update(retrieval_files).where(f.vector_store_id == vector_store_id,
                                                                  f.file_id == file_id).values(attributes=attributes))
        return bool(result.rowcount)

    async def usage_bytes(self, conn: AsyncConnection, vector_store_id: str) -> int:
        """Bytes the store's index holds (chunk text characters + vector bytes), for ``vector_store.usage_bytes``:
        kept by every write, so this is one row read however large the store."""
        total = await conn.scalar(select(retrieval_stores.c.usage_bytes)
                                  .where(retrieval_stores.c.vector_store_id == vector_store_id))
        return int(total or 0)

    async def _file_usage(self, conn: AsyncConnection, vector_store_id: str, file_id: str) -> int | None:
        f = retrieval_files.c
        return await conn.scalar(select(f.usage_bytes).where(f.vector_store_id == vector_store_id,
                                                             f.file_id == file_id))

    async def _delete_chunks(self, conn: AsyncConnection, vector_store_id: str, file_id: str) -> int:
        if conn.dialect.name == "postgresql":
            await term_counts.removed(conn, vector_store_id, file_id)
        c = retrieval_chunks.c
        result = await conn.execute(delete(retrieval_chunks).where(c.vector_store_id == vector_store_id,
                                                                   c.file_id == file_id))
        return int(result.rowcount or 0)

    async def _bump(self, conn: AsyncConnection, vector_store_id: str, usage_delta: int) -> None:
        # A new row starts at a random version, so a store deleted and indexed again under the same id
        # can never match a matrix another process cached for its earlier life.
        first = secrets.randbits(62)
        await self._upsert(conn, retrieval_stores, {"vector_store_id": vector_store_id, "version": first,
                                                    "usage_bytes": max(usage_delta, 0)},
                           ["vector_store_id"], [], bump=usage_delta)

    async def _upsert(self, conn: AsyncConnection, table: Any, values: dict[str, Any], keys: list[str],
                      replace: list[str], *, bump: int | None = None) -> None:
        """Insert or update; ``bump``: on update, the version + 1 and ``usage_bytes`` + ``bump``."""
        stmt = (pg_insert if conn.dialect.name == "postgresql" else sqlite_insert)(table).values(**values)
        changes = {col: stmt.excluded[col] for col in replace}
        if bump is not None:
            changes["version"] = table.c.version + 1
            changes["usage_bytes"] = table.c.usage_bytes + bump
        await conn.execute(stmt.on_conflict_do_update(index_elements=keys, set_=changes))

    async def _has_pgvector(self, conn: AsyncConnection) -> bool:
        if conn.dialect.name != "postgresql":
            return False
        key = _db_key(conn)
        if key not in self._pgvector:
            found = await conn.scalar(text(
                "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() "
                "AND table_name = 'retrieval_chunks' AND column_name = 'embedding_v'"))
            self._pgvector[key] = bool(found)
        return self._pgvector[key]

    # ------------------------------------------------------------------------------------------ search

    async def search(self, conn: AsyncConnection, vector_store_ids: Sequence[str], query_text: str | None,
                     query_embedding: Sequence[float] | None, *, max_num_results: int = 20,
                     filters: dict[str, Any] | None = None, score_threshold: float = 0.0,
                     ranker: str = "auto") -> list[SearchHit]:
        """Hybrid search: vector and keyword rankings fused (weighted RRF, ``types``), best first, at most
        ``max_num_results`` hits scoring ``>= score_threshold``. Either query may be None to skip its ranking."""
        store_ids = list(dict.fromkeys(vector_store_ids))
        check_search_args(store_ids, max_num_results, score_threshold, ranker)
        dialect = conn.dialect.name
        file_filter = compile_filter(validate_filter(filters), retrieval_files.c.attributes, dialect) \
            if filters is not None else None
        depth = max(CANDIDATES, 3 * max_num_results)
        rankings: dict[str, list[int] | None] = {"vector": None, "keyword": None}
        query = np.frombuffer(to_blob(query_embedding), "<f4") if query_embedding is not None else None
        if query is not None and query.any():  # an all-zero vector (empty text upstream) ranks nothing
            rankings["vector"] = await self._vector_rank(conn, store_ids, query, file_filter, depth)
        words = keyword.terms(query_text)
        if words:
            rankings["keyword"] = await keyword.rank(conn, dialect, store_ids, words, file_filter, depth)
        fused = [hit for hit in fuse(rankings, max_num_results) if hit[1] >= score_threshold]
        return await self._hits(conn, fused)

    async def _vector_rank(self, conn: AsyncConnection, store_ids: list[str], query: np.ndarray,
                           file_filter: Any, depth: int) -> list[int]:
        if await self._has_pgvector(conn):
            # Exact scan in C (cosine distance); rows of another dimension are skipped, as in vectors.py. A
            # chunk with window vectors is as near as its best window (vectors.py); one without, its embedding.
            c, f = retrieval_chunks.c, retrieval_files.c
            column: ColumnElement[Any] = literal_column("retrieval_chunks.embedding_v")
            q = cast(bindparam("q", _vector_literal(query), String), _PgVector())
            window = func.unnest(literal_column("retrieval_chunks.windows_v")).column_valued("w")
            best_window = select(func.min(window.op("<=>")(q))).scalar_subquery()
            distance = func.coalesce(best_window, column.op("<=>")(q))
            stmt = select(c.id).where(c.vector_store_id.in_(store_ids), func.vector_dims(column) == len(query))
            if file_filter is not None:
                stmt = stmt.join(retrieval_files, and_(f.vector_store_id == c.vector_store_id,
                                                       f.file_id == c.file_id)).where(file_filter)
            rows = await conn.execute(stmt.order_by(distance, c.id).limit(depth))
            return [r[0] for r in rows]
        allowed: dict[str, set[str]] | None = None
        if file_filter is not None:
            f = retrieval_files.c
            rows = await conn.execute(select(f.vector_store_id, f.file_id)
                                      .where(f.vector_store_id.in_(store_ids), file_filter))
            allowed = {}
            for store_id, file_id in rows:
                allowed.setdefault(store_id, set()).add(file_id)
        key = _db_key(conn)
        versions = await self.cache.versions(conn, store_ids)
        found: list[tuple[int, float]] = []
        for store_id, version in versions.items():
            if allowed is not None and store_id not in allowed:
                continue
            matrix = await self.cache.get(conn, key, store_id, version)
            found += top_k(matrix, query, depth, None if allowed is None else allowed[store_id])
        found.sort(key=lambda hit: (-hit[1], hit[0]))
        return [chunk_id for chunk_id, _ in found[:depth]]

    async def _hits(self, conn: AsyncConnection, fused: list[tuple[int, float, dict[str, int]]]) -> list[SearchHit]:
        if not fused:
            return []
        c, f = retrieval_chunks.c, retrieval_files.c
        rows = await conn.execute(
            select(c.id, c.vector_store_id, c.file_id, c.chunk_index, c.text, f.file_name, f.attributes, c.tokens)
            .join(retrieval_files, and_(f.vector_store_id == c.vector_store_id, f.file_id == c.file_id))
            .where(c.id.in_(bindparam("ids", [cid for cid, _, _ in fused], expanding=True))))
        by_id = {r[0]: r for r in rows}
        return [SearchHit(file_id=r[2], file_name=r[5], score=round(score, 6), text=r[4], attributes=r[6] or {},
                          chunk_index=r[3], vector_store_id=r[1], ranks=ranks, tokens=r[7])
                for cid, score, ranks in fused if (r := by_id.get(cid)) is not None]


def _db_key(conn: AsyncConnection) -> str:
    return conn.engine.url.render_as_string(hide_password=True)


class _PgVector(UserDefinedType[str]):
    """pgvector's ``vector`` type, for a CAST (its text form is ``[x,y,…]``)."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "vector"


def _vector_literal(v: np.ndarray) -> str:
    return "[" + ",".join(repr(float(x)) for x in v) + "]"


def _windows_literal(blob: bytes | None, row_bytes: int) -> str | None:
    """The text form of a ``vector[]`` (``{"[x,…]","[…]"}``) of a chunk's window vectors, or None for none."""
    if blob is None:
        return None
    rows = np.frombuffer(blob, "<f4").reshape(-1, row_bytes // 4)
    return "{" + ",".join(f'"{_vector_literal(row)}"' for row in rows) + "}"
