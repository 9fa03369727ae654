"""Keyword ranking in the database: SQLite FTS5 (bm25) or PostgreSQL full-text search (ts_rank_cd).

The query is reduced to its words (stop words dropped) and OR-ed: a natural-language question rarely has
every word in the passage that answers it, so requiring all of them (FTS5's and websearch_to_tsquery's
default AND) would miss most answers; ranking then favours chunks matching more (and, with bm25, rarer)
words.

Large stores: ranking reads every matching row (bm25 ~1 µs, ts_rank_cd several µs per row), and a question
as people type it ("how do I set the default value for the proxy timeout?") holds words that a third of a
big store shares. So each word's chunks are counted first, up to ``COMMON``: a word held by more chunks
than that is *common* (an IDF cut-off: bm25 gives it a small weight anyway).

- Some words are not common: the candidates are the chunks holding at least one of them (at most
  ``COMMON`` each, so ranking stays bounded), ranked by *all* the words: a common word still lifts the
  chunks holding it among those candidates. What is skipped is only chunks matching common words alone.
- Every word is common: the chunks holding two or more of them are ranked (then, to fill half a
  candidate list, those holding any), at most ``SAMPLE`` (the first ones found): weak keyword evidence,
  which the vector ranking outweighs. Two mid-frequency words rarely share many chunks, but two very
  common ones can share a third of the store, and none of those chunks need hold the question's telling
  word ("how do I set the default value…"). So PostgreSQL, whose counts are exact, first ranks the chunks
  holding the rarest word and any other (at most ``TS_RANK_SAMPLE``: found by GIN from the rare word's
  short list), the pairs following only short of half a list; SQLite pairs no two words held by more than
  ``VERY_COMMON`` chunks each, writing each such word once in the expression: bm25 reads every phrase's
  whole list of chunks to weigh it (its IDF), a cost that grows with the store, not with the matches.

How many chunks hold a word: on SQLite counted from the FTS index alone, up to ``COMMON + 1`` and, when no
word is rare, up to ``VERY_COMMON + 1`` (all stores of the database: a document frequency, not the stores'
own); on PostgreSQL read from the stores' word counts (``term_counts``: GIN cannot count without visiting
each matching row). SQLite checks each match's store from an index of stores by chunk id (migration 0014),
not from the chunk's ~2 KB row.

A store of at most ``COMMON`` chunks (on SQLite: a database) is ranked exactly as the plain OR.
"""

from __future__ import annotations

import re
from functools import reduce
from itertools import combinations
from typing import Any

from sqlalchemy import String, and_, func, literal_column, select, text
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from assistd.retrieval.index import term_counts
from assistd.retrieval.tables import retrieval_chunks, retrieval_files

MAX_TERMS = 32
COMMON = 300  # a word held by more chunks than this is common (see above)
SAMPLE = 2000  # matches ranked when every word is common
VERY_COMMON = 2500  # SQLite, every word common: no pair of two words held by more chunks than this
TS_RANK_SAMPLE = 500  # PostgreSQL: at most this many of them (ts_rank_cd reads each row's tsvector from the heap)
MAX_PAIR_TERMS = 8  # 28 pairs; longer all-common queries go to the OR
_WORD = re.compile(r"\w+", re.UNICODE)
_STOP = frozenset("""a about above after again against all am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further had has have
having he her here hers herself him himself his how i if in into is it its itself just me more most my myself
no nor not now of off on once only or other our ours ourselves out over own same she should so some such than
that the their theirs them themselves then there these they this those through to too under until up very was
we were what when where which while who whom why will with would you your yours yourself yourselves""".split())

_tsv: ColumnElement[Any] = literal_column("retrieval_chunks.tsv")
# SQLite: SQLAlchemy renders no INDEXED BY, and without planner statistics SQLite prefers the rowid lookup.
_SQLITE_JOIN = text("retrieval_chunks_fts JOIN retrieval_chunks INDEXED BY ix_retrieval_chunks_store_by_id "
                    "ON retrieval_chunks.id = retrieval_chunks_fts.rowid")


def terms(query_text: str | None) -> list[str]:
    """The distinct searchable words of a query, in order."""
    seen: dict[str, None] = {}
    for word in _WORD.findall((query_text or "").lower()):
        if word not in _STOP and word not in seen and len(seen) < MAX_TERMS:
            seen[word] = None
    return list(seen)


class _Dialect:
    """Match expressions for one backend."""

    def __init__(self, dialect: str, words: list[str]) -> None:
        self.sqlite = dialect == "sqlite"
        # SQLite: quoted terms are never FTS5 syntax; porter stemming applies to them as to the text.
        # PostgreSQL: one websearch_to_tsquery per word (it never raises on user text).
        # str (an FTS5 MATCH term) on SQLite, a tsquery expression on PostgreSQL.
        self.word: dict[str, Any] = {
            w: (f'"{w}"' if self.sqlite else func.websearch_to_tsquery("english", w)) for w in words}

    def any_of(self, words: list[str]) -> Any:
        parts = [self.word[w] for w in words]
        return " OR ".join(parts) if self.sqlite else reduce(lambda a, b: a.op("||")(b), parts)

    def all_of(self, words: list[str]) -> Any:
        parts = [self.word[w] for w in words]
        return " AND ".join(parts) if self.sqlite else reduce(lambda a, b: a.op("&&")(b), parts)

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
    scope = d.scope(vector_store_ids)
    held = await _held(conn, d, words) if d.sqlite else await term_counts.held(conn, vector_store_ids, words)
    words = [w for w in words if held[w]]  # a word no chunk holds matches nothing and ranks nothing
    if not words:
        return []
    rare = [w for w in words if held[w] <= COMMON]
    everything = d.any_of(words)
    if rare:
        match = everything if len(rare) == len(words) else d.any_of(rare)
        return await _matches(conn, d, match, everything, scope, file_filter, limit)
    ids: list[int] = []
    sample = SAMPLE if d.sqlite else min(SAMPLE, TS_RANK_SAMPLE)
    if d.sqlite:
        if len(words) >= 2 and (pairs := _pairs_not_both_very_common(d, words, held)):
            # Every word is in the pairs already: ranking by them needs no second expression to evaluate.
            ids = await _matches(conn, d, pairs, pairs, scope, file_filter, limit, sample=sample)
    elif len(words) >= 2:  # the counts are exact: the rarest word and any other first, then the pairs
        rarest = min(words, key=lambda w: held[w])
        match = d.word[rarest].op("&&")(d.any_of([w for w in words if w != rarest]))
        ids = await _matches(conn, d, match, everything, scope, file_filter, limit, sample=sample)
        if len(ids) < limit // 2 and len(words) <= MAX_PAIR_TERMS:
            pairs = reduce(lambda x, y: x.op("||")(y), [d.all_of([a, b]) for a, b in combinations(words, 2)])
            ids = _merged(ids, await _matches(conn, d, pairs, pairs, scope, file_filter, limit, sample=sample),
                          limit)
    if len(ids) < limit // 2:  # then chunks holding any of the words
        ids = _merged(ids, await _matches(conn, d, everything, everything, scope, file_filter, limit,
                                          sample=sample), limit)
    return ids


def _merged(ids: list[int], more: list[int], limit: int) -> list[int]:
    seen = set(ids)
    return ids + [i for i in more if i not in seen][:limit - len(ids)]


def _pairs_not_both_very_common(d: _Dialect, words: list[str], held: dict[str, int]) -> str | None:
    """SQLite, every word common: an FTS5 expression of the chunks holding two of the words, one of them
    held by at most ``VERY_COMMON`` chunks (else the rarest word and any other); None past
    ``MAX_PAIR_TERMS`` such words. Each very common word appears once in it, so bm25 reads its long list of
    chunks once (it counts every phrase of the expression over the whole index)."""
    fewer = [w for w in words if held[w] <= VERY_COMMON] or [min(words, key=lambda w: held[w])]
    very = [w for w in words if w not in fewer]
    if len(fewer) > MAX_PAIR_TERMS:
        return None
    parts = [f"({d.all_of([a, b])})" for a, b in combinations(fewer, 2)]
    if very:
        parts.append(f"(({d.any_of(fewer)}) AND ({d.any_of(very)}))")
    return " OR ".join(parts)


async def _held(conn: AsyncConnection, d: _Dialect, words: list[str]) -> dict[str, int]:
    """SQLite: how many chunks hold each word, counted over the whole FTS index (every store: a document
    frequency read from the index alone), in one statement: up to ``COMMON + 1``, and when no word is
    rare (1 to ``COMMON``), further, up to ``VERY_COMMON + 1``. (PostgreSQL: ``term_counts``.)"""
    def count(i: int, up_to: int) -> str:
        return (f"(SELECT count(*) FROM (SELECT rowid FROM retrieval_chunks_fts WHERE retrieval_chunks_fts "
                f"MATCH :w{i} LIMIT {up_to}))")
    n = range(len(words))
    none_rare = " AND ".join(f"n{i} NOT BETWEEN 1 AND {COMMON}" for i in n)
    # A subquery under CASE runs only when its branch is taken: queries with a rare word count no further.
    sql = (f"WITH held AS MATERIALIZED (SELECT {', '.join(f'{count(i, COMMON + 1)} AS n{i}' for i in n)}) "
           f"SELECT {', '.join(f'CASE WHEN further THEN {count(i, VERY_COMMON + 1)} ELSE n{i} END' for i in n)} "
           f"FROM (SELECT *, {none_rare} AS further FROM held)")
    row = (await conn.execute(text(sql), {f"w{i}": d.word[w] for i, w in enumerate(words)})).one()
    return {w: int(n or 0) for w, n in zip(words, row, strict=True)}


async def _matches(conn: AsyncConnection, d: _Dialect, match: Any, rank_by: Any | None, scope: Any,
                   file_filter: ColumnElement[bool] | None, limit: int, sample: int | None = None) -> list[int]:
    """Ids of chunks matching ``match``, best first by the words of ``rank_by`` (in no order if None);
    with ``sample``, only the first ``sample`` matches are ranked."""
    f = retrieval_files.c
    if d.sqlite:
        if rank_by is not None and rank_by is not match:
            # bm25 weighs every phrase of the MATCH expression: rank_by's words join it under an AND that
            # the match already implies, so they count in the ranking without widening the match.
            match = f"({match}) AND ({rank_by})"
        score: Any = literal_column("bm25(retrieval_chunks_fts)")
        # The FTS table drives the join (see ``scope``); each match's store is read from the index
        # of stores by chunk id (migration 0014), not from the chunk's row.
        chunk: dict[str, ColumnElement[Any]] = {
            name: literal_column(f"retrieval_chunks.{name}") for name in ("id", "vector_store_id", "file_id")}
        stmt = select(chunk["id"].label("id")).select_from(_SQLITE_JOIN)
        where = [literal_column("retrieval_chunks_fts").op("MATCH")(match), scope]
        if file_filter is not None:
            where += [f.vector_store_id == chunk["vector_store_id"], f.file_id == chunk["file_id"], file_filter]
    else:
        c = retrieval_chunks.c
        chunk = {"id": c.id}
        score = -func.ts_rank_cd(_tsv, rank_by) if rank_by is not None else None
        stmt = select(c.id).select_from(retrieval_chunks)
        where = [_tsv.op("@@")(match), scope]
        if file_filter is not None:
            stmt = stmt.join(retrieval_files, and_(f.vector_store_id == c.vector_store_id, f.file_id == c.file_id))
            where.append(file_filter)
    stmt = stmt.where(*where)
    if rank_by is None:
        stmt = stmt.limit(limit)
    elif sample is None:
        stmt = stmt.order_by(score, chunk["id"]).limit(limit)
    else:
        inner = stmt.add_columns(score.label("score")).limit(sample).subquery()
        stmt = select(inner.c.id).order_by(inner.c.score, inner.c.id).limit(limit)
    return [r[0] for r in await conn.execute(stmt)]
