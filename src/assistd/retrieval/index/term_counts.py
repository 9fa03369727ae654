"""PostgreSQL: how many chunks of each store hold each word (``retrieval_terms``, migration 0012).

Why: the keyword ranking asks how common each query word is in the stores searched (``keyword.py``). GIN
answers "which chunks hold it" but not "how many" without visiting every matching row of the heap (up to
``COMMON + 1`` rows a word, the dearest part of a keyword-like query); this table answers with one index
row per word and store. SQLite counts from its FTS5 index alone and has no such table.

Kept exact by ``HybridIndex`` in the same transaction as the chunks: a file's lexemes (``tsv``, the same
``english`` configuration the queries use) are added after its chunks are inserted and taken away before
they are deleted. Writers of one store queue on its version row, which ``HybridIndex`` locks first.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Text, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection

_FILE_TERMS = ("SELECT term, count(*) AS n FROM retrieval_chunks, unnest(tsvector_to_array(tsv)) AS term "
               "WHERE vector_store_id = :store AND file_id = :file GROUP BY term")

_ADD = text(
    "INSERT INTO retrieval_terms (vector_store_id, term, chunks) "
    f"SELECT :store, term, n FROM ({_FILE_TERMS}) AS file_terms ORDER BY term "
    "ON CONFLICT (vector_store_id, term) DO UPDATE SET chunks = retrieval_terms.chunks + EXCLUDED.chunks")

_REMOVE = text(
    f"UPDATE retrieval_terms AS t SET chunks = t.chunks - file_terms.n FROM ({_FILE_TERMS}) AS file_terms "
    "WHERE t.vector_store_id = :store AND t.term = file_terms.term RETURNING t.term, t.chunks")

_DROP = text("DELETE FROM retrieval_terms WHERE vector_store_id = :store AND term = ANY(:terms) AND chunks <= 0"
             ).bindparams(bindparam("terms", type_=ARRAY(Text)))

# Each word's lexemes as the chunks' ``tsv`` holds them, and the chunks of the stores holding each; a word
# of several lexemes ("foo_bar": 'foo' <-> 'bar') is held by at most its rarest one's chunks, a word of
# none (a stop word of the english configuration) by none.
_HELD = text(
    "SELECT w.word, min(coalesce((SELECT sum(t.chunks) FROM retrieval_terms AS t "
    "WHERE t.vector_store_id = ANY(:stores) AND t.term = l.lexeme), 0)) "
    "FROM unnest(:words) AS w(word), unnest(tsvector_to_array(to_tsvector('english', w.word))) AS l(lexeme) "
    "GROUP BY w.word").bindparams(bindparam("stores", type_=ARRAY(Text)), bindparam("words", type_=ARRAY(Text)))


async def added(conn: AsyncConnection, vector_store_id: str, file_id: str) -> None:
    """Count the words of a file whose chunks were just inserted."""
    await conn.execute(_ADD, {"store": vector_store_id, "file": file_id})


async def removed(conn: AsyncConnection, vector_store_id: str, file_id: str) -> None:
    """Uncount the words of a file whose chunks are about to be deleted (a word left in no chunk is dropped)."""
    rows = (await conn.execute(_REMOVE, {"store": vector_store_id, "file": file_id})).all()
    gone = [term for term, chunks in rows if chunks <= 0]
    if gone:
        await conn.execute(_DROP, {"store": vector_store_id, "terms": gone})


async def held(conn: AsyncConnection, vector_store_ids: Sequence[str], words: Sequence[str]) -> dict[str, int]:
    """How many chunks of the stores hold each word (0 for a word no chunk holds)."""
    rows = await conn.execute(_HELD, {"stores": list(vector_store_ids), "words": list(words)})
    counts = {word: int(n or 0) for word, n in rows}
    return {w: counts.get(w, 0) for w in words}
