"""Keyword ranking in the database: SQLite FTS5 (bm25) or PostgreSQL full-text search (ts_rank_cd).

The query is reduced to its words (stop words dropped) and OR-ed: a natural-language question rarely has
every word in the passage that answers it, so requiring all of them (FTS5's and websearch_to_tsquery's
default AND) would miss most answers; ranking then favours chunks matching more (and, with bm25, rarer)
words.

Large stores: ranking reads every matching row, and an OR of common words can match a tenth of a big store
(~12 ms on SQLite, ~50 ms on PostgreSQL at 100k chunks). So candidates come first from a narrower match,
ranked by the same function: chunks holding two or more of the words — and, on SQLite, whose bm25 weighs
rare words up, chunks holding any word that at most ``limit`` chunks of the stores hold (ts_rank_cd has no
such weighting, so on PostgreSQL a one-word match ranks by its occurrences like any other). The plain OR
runs only when the narrow match finds fewer than ``limit // 2`` chunks (half a candidate list is plenty
for the fusion: a keyword rank past 30 adds under 1/90 to a score). What is skipped is only chunks holding
a single common word, the weakest keyword evidence there is, when enough stronger ones exist: candidate
generation for the fusion, not a change of ranking function.
"""

from __future__ import annotations

import re
from functools import reduce
from itertools import combinations
from typing import Any

from sqlalchemy import String, and_, column, func, literal_column, select, table
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from assistd.retrieval.tables import retrieval_chunks, retrieval_files

MAX_TERMS = 32
MAX_PAIR_TERMS = 8  # 28 pairs; longer queries go straight to the plain OR
_WORD = re.compile(r"\w+", re.UNICODE)
_STOP = frozenset("""a about above after again against all am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further had has have
having he her here hers herself him himself his how i if in into is it its itself just me more most my myself
no nor not now of off on once only or other our ours ourselves out over own same she should so some such than
that the their theirs them themselves then there these they this those through to too under until up very was
we were what when where which while who whom why will with would you your yours yourself yourselves""".split())

_fts = table("retrieval_chunks_fts", column("rowid"))
_tsv = literal_column("retrieval_chunks.tsv")


def terms(query_text: str | None) -> list[str]:
    """The distinct searchable words of a query, in order."""
    seen: dict[str, None] = {}
    for word in _WORD.findall((query_text or "").lower()):
        if word not in _STOP and word not in seen and len(seen) < MAX_TERMS:
            seen[word] = None
    return list(seen)


class _Dialect:
    """Match expressions and the ranked statement for one backend."""

    def __init__(self, dialect: str, words: list[str]) -> None:
        self.sqlite = dialect == "sqlite"
        # SQLite: quoted terms are never FTS5 syntax; porter stemming applies to them as to the text.
        # PostgreSQL: one websearch_to_tsquery per word (it never raises on user text).
        self.word = {w: (f'"{w}"' if self.sqlite else func.websearch_to_tsquery("english", w)) for w in words}

    def any_of(self, parts: list[Any]) -> Any:
        return " OR ".join(parts) if self.sqlite else reduce(lambda a, b: a.op("||")(b), parts)

    def both(self, a: str, b: str) -> Any:
        return f"({self.word[a]} AND {self.word[b]})" if self.sqlite else self.word[a].op("&&")(self.word[b])

    def statement(self, match: Any, ranked: bool) -> tuple[Any, list[Any]]:
        c = retrieval_chunks.c
        if self.sqlite:
            # The FTS table must drive the join (one primary-key lookup per match); see ``scope``.
            stmt = select(c.id).select_from(_fts.join(retrieval_chunks, c.id == _fts.c.rowid))
            where = [literal_column("retrieval_chunks_fts").op("MATCH")(match)]
            if ranked:
                stmt = stmt.order_by(literal_column("bm25(retrieval_chunks_fts)"), c.id)
            return stmt, where
        stmt = select(c.id).select_from(retrieval_chunks)
        if ranked:
            stmt = stmt.order_by(func.ts_rank_cd(_tsv, match).desc(), c.id)
        return stmt, [_tsv.op("@@")(match)]

    def scope(self, vector_store_ids: list[str]) -> Any:
        if self.sqlite:
            # Unary + keeps SQLite from driving the join from the store index (every chunk of the store,
            # each probing the FTS table: ~0.5 s at 100k chunks) instead of from the FTS match.
            return literal_column("+retrieval_chunks.vector_store_id", String).in_(vector_store_ids)
        return retrieval_chunks.c.vector_store_id.in_(vector_store_ids)


async def rank(conn: AsyncConnection, dialect: str, vector_store_ids: list[str], words: list[str],
               file_filter: ColumnElement[bool] | None, limit: int) -> list[int]:
    """Chunk ids matching any of ``words`` in the stores (and files passing ``file_filter``), best first."""
    d = _Dialect(dialect, words)
    scope = [d.scope(vector_store_ids)]
    if 2 <= len(words) <= MAX_PAIR_TERMS:
        rare = []
        for w in words if d.sqlite else []:  # a probe stops after limit + 1 matches
            stmt, where = d.statement(d.word[w], ranked=False)
            if len(await _run(conn, stmt, scope + where, None, limit + 1)) <= limit:
                rare.append(d.word[w])
        narrow = d.any_of([d.both(a, b) for a, b in combinations(words, 2)] + rare)
        stmt, where = d.statement(narrow, ranked=True)
        ids = await _run(conn, stmt, scope + where, file_filter, limit)
        if len(ids) >= limit // 2:
            return ids
    stmt, where = d.statement(d.any_of(list(d.word.values())), ranked=True)
    return await _run(conn, stmt, scope + where, file_filter, limit)


async def _run(conn: AsyncConnection, stmt: Any, where: list[Any], file_filter: ColumnElement[bool] | None,
               limit: int) -> list[int]:
    c, f = retrieval_chunks.c, retrieval_files.c
    if file_filter is not None:
        stmt = stmt.join(retrieval_files, and_(f.vector_store_id == c.vector_store_id, f.file_id == c.file_id))
        where = [*where, file_filter]
    rows = await conn.execute(stmt.where(*where).limit(limit))
    return [r[0] for r in rows]
