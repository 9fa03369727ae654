"""The hybrid index contract, run against both backends: SQLite (a temporary file) and PostgreSQL (a
throwaway database created and dropped by this module; required when CI=true, skipped otherwise if
unreachable). Embeddings here are the dev upstream's deterministic hashed vectors: texts sharing words
get similar vectors, which is all these tests need."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
from sqlalchemy import func, select
from sqlalchemy import text as sql_text

from assistd.devupstream.server import embed as hashed_embed
from assistd.retrieval import FilterError, HybridIndex, IndexedChunk
from assistd.retrieval.tables import retrieval_chunks
from assistd.store.db import Database
from assistd.store.migrate import migrate

T = TypeVar("T")
PG_ADMIN = os.environ.get("ASSISTD_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
DIMS = 64


def vec(text: str) -> list[float]:
    return hashed_embed(text, DIMS)


def chunks(*texts: str) -> list[IndexedChunk]:
    return [IndexedChunk(t, vec(t), len(t.split())) for t in texts]


class Backend:
    def __init__(self, url: str) -> None:
        self.runner = asyncio.Runner()
        self.db = Database(url, pool_size=2)
        self.index = HybridIndex()
        self.run(migrate(self.db))

    def run(self, coro: Awaitable[T]) -> T:
        return self.runner.run(coro)  # type: ignore[arg-type]

    def write(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        async def go() -> T:
            async with self.db.write() as conn:
                return await fn(conn)
        return self.run(go())

    def search(self, stores: list[str], text: str | None, *, vector: bool = True, **kw: Any) -> list[Any]:
        async def go() -> list[Any]:
            async with self.db.read() as conn:
                return await self.index.search(conn, stores, text, vec(text or "") if vector else None, **kw)
        return self.run(go())

    def close(self) -> None:
        self.run(self.db.close())
        self.runner.close()


def _pg_admin(sql: str) -> None:
    import asyncpg

    async def go() -> None:
        conn = await asyncio.wait_for(asyncpg.connect(PG_ADMIN), 5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()
    asyncio.run(go())


# pgvector is not installed on this project's machines, so its code path (used when migration 0004 finds the
# extension and adds ``embedding_v vector``, and 0013 ``windows_v vector[]``) runs here against a stand-in
# with the same SQL surface: a ``vector`` domain over its text form '[x,y,…]', ``vector_dims`` and the
# cosine-distance operator ``<=>``.
PGVECTOR_STANDIN = [
    "CREATE DOMAIN vector AS text",
    "CREATE FUNCTION vector_dims(vector) RETURNS int LANGUAGE sql IMMUTABLE AS "
    "$$ SELECT array_length(string_to_array(btrim($1, '[]'), ','), 1) $$",
    "CREATE FUNCTION cosine_distance(a text, b text) RETURNS float8 LANGUAGE sql IMMUTABLE AS $$ "
    "SELECT 1 - sum(x * y) / NULLIF(sqrt(sum(x * x) * sum(y * y)), 0) FROM unnest("
    "string_to_array(btrim(a, '[]'), ',')::float8[], string_to_array(btrim(b, '[]'), ',')::float8[]) AS t(x, y) $$",
    "CREATE OPERATOR <=> (LEFTARG = text, RIGHTARG = text, FUNCTION = cosine_distance)",
    "ALTER TABLE retrieval_chunks ADD COLUMN embedding_v vector",
    "ALTER TABLE retrieval_chunks ADD COLUMN windows_v vector[]",
]


@pytest.fixture(scope="module", params=["sqlite", "postgresql", "postgresql+pgvector-standin"])
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    if request.param == "sqlite":
        b = Backend(f"sqlite:///{tmp_path_factory.mktemp('retrieval') / 'index.db'}")
        yield b
        b.close()
        return
    name = "assistd_retrieval_" + secrets.token_hex(5)
    try:
        _pg_admin(f'CREATE DATABASE "{name}"')
    except Exception as exc:  # unreachable server
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"PostgreSQL unreachable at {PG_ADMIN}: {exc}")
    b = Backend(PG_ADMIN.rsplit("/", 1)[0] + "/" + name)
    try:
        if request.param.endswith("pgvector-standin"):
            async def standin() -> None:
                async with b.db.write() as conn:
                    for sql in PGVECTOR_STANDIN:
                        await conn.exec_driver_sql(sql)
                    assert await b.index._has_pgvector(conn)
            b.run(standin())
        yield b
    finally:
        b.close()
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def store_id() -> str:
    return "vs_" + secrets.token_hex(8)


DOCS = {
    "file_a": ("a.txt", ["The quarterly revenue of the bakery grew by eight percent.",
                         "Sourdough bread needs a mature starter and a long fermentation."],
               {"team": "food", "year": 2023, "public": True}),
    "file_b": ("b.md", ["Glaciers in the northern valley retreated during the warm decade.",
                        "The zebrafish genome has an unusual duplicated region."],
               {"team": "science", "year": 2024, "public": False, "rank": 2.5}),
    "file_c": ("c.pdf", ["Kubernetes operators reconcile the desired state of custom resources."],
               {"team": "infra", "year": 2025}),
}


def load(b: Backend) -> str:
    vs = store_id()
    for file_id, (name, texts, attrs) in DOCS.items():
        b.write(lambda conn, f=file_id, n=name, t=texts, a=attrs: b.index.add(conn, vs, f, n, chunks(*t), a))
    return vs


def test_search_returns_ranked_hits_with_metadata(backend: Backend) -> None:
    vs = load(backend)
    hits = backend.search([vs], "zebrafish genome duplicated")
    top = hits[0]
    assert (top.file_id, top.file_name, top.chunk_index) == ("file_b", "b.md", 1)
    assert top.text == DOCS["file_b"][1][1]
    assert top.attributes == DOCS["file_b"][2]
    assert top.score == 1.0 and top.ranks == {"vector": 1, "keyword": 1}
    assert all(0.0 <= h.score <= 1.0 for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    # Keyword-only (FTS5 / tsvector alone), stemmed: "starters" matches "starter".
    kw = backend.search([vs], "sourdough starters", vector=False)
    assert kw[0].file_id == "file_a" and kw[0].chunk_index == 1 and kw[0].score == 1.0
    # Vector-only.
    vo = backend.search([vs], None, vector=True)
    assert vo == [] or all(h.ranks.keys() == {"vector"} for h in vo)
    vo = backend.search([vs], "glaciers northern valley", vector=True, max_num_results=1)
    assert len(vo) == 1 and vo[0].file_id == "file_b"


def test_limits_threshold_and_argument_checks(backend: Backend) -> None:
    vs = load(backend)
    assert len(backend.search([vs], "the bakery glaciers kubernetes genome", max_num_results=2)) == 2
    hits = backend.search([vs], "bakery revenue", score_threshold=0.9)
    assert hits and all(h.score >= 0.9 for h in hits)
    assert backend.search([vs], "bakery revenue", score_threshold=1.0, vector=False)[0].score == 1.0
    for bad in ({"max_num_results": 0}, {"max_num_results": 51}, {"score_threshold": 1.5},
                {"ranker": "bm25"}):
        with pytest.raises(ValueError):
            backend.search([vs], "bakery", **bad)
    assert backend.search([vs], "bakery", ranker="default_2024_08_21")
    assert backend.search([store_id()], "bakery") == []  # unknown store: nothing, no error


def test_stores_are_separate_and_searchable_together(backend: Backend) -> None:
    one, two = load(backend), store_id()
    backend.write(lambda c: backend.index.add(c, two, "file_z", "z.txt", chunks("Zebrafish swim in the lab tank."),
                                              {}))
    assert {h.vector_store_id for h in backend.search([two], "zebrafish")} == {two}
    both = backend.search([one, two], "zebrafish", max_num_results=50)
    assert {h.vector_store_id for h in both} == {one, two}


def term_counts_are_exact(backend: Backend, vs: str) -> bool:
    """PostgreSQL: the store's word counts kept by the writes equal a count over its chunks' lexemes."""
    if backend.db.is_sqlite:
        return True
    kept_sql = "SELECT term, chunks FROM retrieval_terms WHERE vector_store_id = :vs"
    exact_sql = ("SELECT term, count(*) FROM retrieval_chunks, unnest(tsvector_to_array(tsv)) AS term "
                 "WHERE vector_store_id = :vs GROUP BY term")

    async def read(conn: Any, sql: str) -> dict[str, int]:
        return dict((await conn.execute(sql_text(sql), {"vs": vs})).all())
    kept = backend.write(lambda conn: read(conn, kept_sql))
    return kept == backend.write(lambda conn: read(conn, exact_sql))


def usage_is_exact(backend: Backend, vs: str) -> bool:
    """The store's usage kept by the writes equals the sum over its chunks (what it used to be computed as)."""
    c = retrieval_chunks.c
    exact = backend.write(lambda conn: conn.scalar(select(func.sum(func.length(c.text) + func.length(c.embedding)))
                                                   .where(c.vector_store_id == vs)))
    return backend.write(lambda conn: backend.index.usage_bytes(conn, vs)) == int(exact or 0)


def test_writes_are_seen_by_the_next_search_in_any_process(backend: Backend) -> None:
    vs = load(backend)
    other = HybridIndex()  # another process's index: its own vector cache
    assert backend.search([vs], "volcano eruption lava")[0].file_id != "file_new"  # caches loaded
    text = "A volcano eruption sent lava down the slope."
    backend.write(lambda c: other.add(c, vs, "file_new", "n.txt", chunks(text), {}))
    hit = backend.search([vs], "volcano eruption lava")[0]
    assert hit.file_id == "file_new" and hit.ranks == {"vector": 1, "keyword": 1}
    # Re-adding a file replaces its chunks (an ingestion retry never duplicates).
    backend.write(lambda c: backend.index.add(c, vs, "file_new", "n.txt", chunks("Lava cooled into basalt."), {}))
    hits = [h for h in backend.search([vs], "volcano eruption lava basalt", max_num_results=50)
            if h.file_id == "file_new"]
    assert [h.text for h in hits] == ["Lava cooled into basalt."]
    assert usage_is_exact(backend, vs) and term_counts_are_exact(backend, vs)
    assert backend.write(lambda c: backend.index.delete_file(c, vs, "file_new")) == 1
    assert all(h.file_id != "file_new" for h in backend.search([vs], "volcano lava basalt", max_num_results=50))
    assert usage_is_exact(backend, vs) and backend.write(lambda c: backend.index.usage_bytes(c, vs)) > 0
    assert term_counts_are_exact(backend, vs)
    backend.write(lambda c: backend.index.delete_store(c, vs))
    assert backend.search([vs], "bakery revenue zebrafish") == []
    assert backend.write(lambda c: backend.index.usage_bytes(c, vs)) == 0
    assert term_counts_are_exact(backend, vs)


@pytest.mark.parametrize("exact_rows", [100_000, 0], ids=["every-window", "two-stage"])
def test_a_changed_store_is_refreshed_by_the_files_that_changed(backend: Backend, monkeypatch: pytest.MonkeyPatch,
                                                                exact_rows: int) -> None:
    """vectors.py: after a write, a search reads only the chunks of files added or re-indexed since its
    matrix was loaded, drops the rows of files gone, and ranks exactly as a freshly loaded matrix would
    (two-stage: the chunk means are extended, not rebuilt; rows are held as float16)."""
    if backend.run(_pgvector_of(backend)):
        pytest.skip("pgvector searches in the database: no matrix")
    from assistd.retrieval.index import vectors

    monkeypatch.setattr(vectors, "EXACT_ROWS", exact_rows)
    monkeypatch.setattr(vectors, "MIN_WINDOWS_PER_CHUNK", 0 if exact_rows == 0 else 2)  # chunks of one row here
    vs = store_id()
    bulk = {f"bulk_{i}": [f"Ledger {i} line {j} about harbours, tides and cargo." for j in range(20)]
            for i in range(6)}
    for file_id, texts in bulk.items():
        backend.write(lambda c, f=file_id, t=texts: backend.index.add(c, vs, f, f + ".txt", chunks(*t), {}))
    queries = ["harbours tides", "volcano lava basalt", "Ledger 3 line 7 cargo", "cargo"]

    def ranked(index: HybridIndex) -> list[list[tuple[str, int, float]]]:
        async def go() -> list[list[tuple[str, int, float]]]:
            async with backend.db.read() as conn:
                return [[(h.file_id, h.chunk_index, h.score) for h in await index.search(
                    conn, [vs], None, vec(q), max_num_results=50)] for q in queries]
        return backend.run(go())

    ranked(backend.index)  # loaded
    before = backend.index.cache.rows_read
    lava = ["A volcano eruption sent lava down the slope.", "Lava cooled into basalt by the harbour."]
    backend.write(lambda c: backend.index.add(c, vs, "volcano", "v.txt", chunks(*lava), {}))
    assert ranked(backend.index) == ranked(HybridIndex())
    assert backend.index.cache.rows_read - before == 2  # the new file's chunks, not the store's 122
    if exact_rows == 0:
        cached = next(m for (_, store), m in backend.index.cache._stores.items() if store == vs)
        assert cached.chunks is not None and len(cached.chunks[0]) == 122  # extended by the new file's two
    backend.write(lambda c: backend.index.delete_file(c, vs, "bulk_2"))
    backend.write(lambda c: backend.index.add(c, vs, "bulk_4", "b4.txt", chunks("Ledger four, rewritten."), {}))
    got = ranked(backend.index)
    assert got == ranked(HybridIndex()) and all(f != "bulk_2" for hits in got for f, _, _ in hits)
    assert backend.index.cache.rows_read - before == 3  # and the re-indexed file's one chunk
    for file_id in [f for f in bulk if f not in ("bulk_2", "bulk_4")]:  # most of the store changes: whole
        backend.write(lambda c, f=file_id: backend.index.add(c, vs, f, f + ".txt", chunks(f"{f} anew."), {}))
    assert ranked(backend.index) == ranked(HybridIndex())
    backend.write(lambda c: backend.index.delete_store(c, vs))


async def _pgvector_of(backend: Backend) -> str:
    async with backend.db.read() as conn:
        return "pgvector" if await backend.index._has_pgvector(conn) else ""


def test_a_rolled_back_write_leaves_nothing(backend: Backend) -> None:
    vs = load(backend)
    backend.search([vs], "meteorite crater")  # cache the store

    async def failing() -> None:
        async with backend.db.write() as conn:
            await backend.index.add(conn, vs, "file_x", "x.txt", chunks("A meteorite left a crater."), {})
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        backend.run(failing())
    assert all(h.file_id != "file_x" for h in backend.search([vs], "meteorite crater", max_num_results=50))


FILTER_CASES: list[tuple[dict[str, Any], set[str]]] = [
    ({"type": "eq", "key": "team", "value": "food"}, {"file_a"}),
    ({"type": "ne", "key": "team", "value": "food"}, {"file_b", "file_c"}),
    ({"type": "eq", "key": "year", "value": 2024}, {"file_b"}),
    ({"type": "eq", "key": "year", "value": "2024"}, set()),  # strict types
    ({"type": "gt", "key": "year", "value": 2023}, {"file_b", "file_c"}),
    ({"type": "gte", "key": "year", "value": 2024.0}, {"file_b", "file_c"}),
    ({"type": "lt", "key": "year", "value": 2024}, {"file_a"}),
    ({"type": "lte", "key": "rank", "value": 2.5}, {"file_b"}),
    ({"type": "gt", "key": "team", "value": "infra"}, {"file_b"}),  # strings by code point
    ({"type": "in", "key": "team", "value": ["food", "infra"]}, {"file_a", "file_c"}),
    ({"type": "nin", "key": "year", "value": [2023, 2025]}, {"file_b"}),
    ({"type": "eq", "key": "public", "value": True}, {"file_a"}),
    ({"type": "eq", "key": "public", "value": 1}, set()),
    ({"type": "ne", "key": "public", "value": True}, {"file_b", "file_c"}),  # missing key passes ne
    ({"type": "nin", "key": "rank", "value": [2.5]}, {"file_a", "file_c"}),
    ({"type": "eq", "key": "missing", "value": "x"}, set()),
    ({"type": "and", "filters": [{"type": "gte", "key": "year", "value": 2024},
                                 {"type": "ne", "key": "team", "value": "infra"}]}, {"file_b"}),
    ({"type": "or", "filters": [{"type": "eq", "key": "team", "value": "infra"},
                                {"type": "and", "filters": [{"type": "eq", "key": "public", "value": True},
                                                            {"type": "lt", "key": "year", "value": 2024}]}]},
     {"file_a", "file_c"}),
]


@pytest.mark.parametrize("filters,expected", FILTER_CASES, ids=[str(i) for i in range(len(FILTER_CASES))])
def test_attribute_filters(backend: Backend, filters: dict[str, Any], expected: set[str]) -> None:
    vs = getattr(backend, "filter_store", None) or load(backend)
    backend.filter_store = vs  # type: ignore[attr-defined]
    query = "bakery sourdough glaciers zebrafish kubernetes operators"
    for vector in (True, False):  # the numpy path and the SQL keyword path apply the same predicate
        hits = backend.search([vs], query, vector=vector, max_num_results=50, filters=filters)
        assert {h.file_id for h in hits} == expected, (filters, vector)


def test_update_attributes_changes_filtering(backend: Backend) -> None:
    vs = load(backend)
    filt = {"type": "eq", "key": "team", "value": "archive"}
    assert backend.search([vs], "bakery", filters=filt) == []
    assert backend.write(lambda c: backend.index.update_attributes(c, vs, "file_a", {"team": "archive"}))
    hits = backend.search([vs], "bakery", filters=filt)
    assert {h.file_id for h in hits} == {"file_a"} and hits[0].attributes == {"team": "archive"}
    assert not backend.write(lambda c: backend.index.update_attributes(c, vs, "nope", {}))


@pytest.mark.parametrize("bad", [{"type": "like", "key": "a", "value": 1}, {"type": "eq", "value": 1},
                                 {"type": "in", "key": "a", "value": []}, {"type": "gt", "key": "a", "value": True},
                                 {"type": "and", "filters": []}, {"type": "eq", "key": "a", "value": {"x": 1}},
                                 {"type": "eq", "key": "a", "value": 1, "extra": 2}])
def test_invalid_filters_are_rejected(backend: Backend, bad: dict[str, Any]) -> None:
    with pytest.raises(FilterError):
        backend.search(["vs_any"], "x", filters=bad)


# ------------------------------------------------------------------------------------------- needle

NEEDLE = "The secret launch code for the orbital telescope is hidden beneath the blue lighthouse in Valparaiso."
PARAPHRASE = "Where was the password for the space observatory concealed?"
KEYWORDS = "Valparaiso lighthouse launch code"
_SUBJ = ["The farmer", "A young baker", "The market trader", "Our football coach", "The village council",
         "A retired teacher", "The shepherd", "Every gardener", "The fishmonger", "A cheerful waiter"]
_VERB = ["carried", "sold", "planted", "repaired", "painted", "counted", "cooked", "cleaned", "ordered", "delivered"]
_OBJ = ["fresh tomatoes", "the wooden fence", "three loaves of rye bread", "a basket of apples", "the old tractor",
        "bags of flour", "the red barn door", "a crate of onions", "the muddy boots", "two dozen eggs"]
_WHEN = ["before the rain started", "after lunch", "on a quiet Sunday", "during the harvest fair",
         "while the cows grazed", "at the end of the season", "despite the cold wind", "as the bells rang"]


@pytest.fixture(scope="module")
def needle_corpus() -> tuple[list[IndexedChunk], list[float]]:
    """50 pages (~300 words each) of generated filler with one unique sentence inside, chunked the API's
    ``auto`` way and embedded by the local model (in its worker process)."""
    import random

    from assistd.retrieval import LocalEmbedder, chunk

    rng = random.Random(7)
    paragraphs = [" ".join(f"{rng.choice(_SUBJ)} {rng.choice(_VERB)} {rng.choice(_OBJ)} {rng.choice(_WHEN)}."
                           for _ in range(rng.randint(5, 8))) for _ in range(50 * 4)]
    paragraphs.insert(117, NEEDLE)
    text = "\n\n".join(paragraphs)
    assert len(text.split()) >= 50 * 280
    pieces = chunk(text)

    async def embed() -> list[list[float]]:
        embedder = LocalEmbedder()
        try:
            return await embedder.embed([p.text for p in pieces] + [PARAPHRASE])
        finally:
            await embedder.aclose()

    vectors = asyncio.run(embed())
    return [IndexedChunk(p.text, v, p.tokens) for p, v in zip(pieces, vectors, strict=False)], vectors[-1]


def test_needle_in_fifty_pages(backend: Backend, needle_corpus: tuple[list[IndexedChunk], list[float]]) -> None:
    corpus, query_vector = needle_corpus
    vs = store_id()
    backend.write(lambda c: backend.index.add(c, vs, "file_haystack", "haystack.txt", corpus, {}))

    async def search(text: str | None, vector: list[float] | None) -> list[Any]:
        async with backend.db.read() as conn:
            return await backend.index.search(conn, [vs], text, vector, max_num_results=3)

    for text, vector in ((PARAPHRASE, query_vector), (None, query_vector), (KEYWORDS, None)):
        top3 = backend.run(search(text, vector))
        assert any(NEEDLE in h.text for h in top3), (text, vector is not None, [h.text[:60] for h in top3])


def test_keyword_ranking_of_common_words(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> None:
    """keyword.py: a word held by more than COMMON chunks of the stores is common. With a rarer word in the
    query only chunks holding a rarer one are candidates, ranked by all the words; with common words only,
    the chunks holding two of them (PostgreSQL: the rarest and another first; SQLite: no two words held by
    more than VERY_COMMON chunks). A store of at most COMMON chunks ranks as the plain OR."""
    from assistd.retrieval.index import keyword

    vs = store_id()
    texts = ([f"alpha beta report number {i}" for i in range(70)] + [f"alpha memo number {i}" for i in range(70)]
             + ["zanzibar harbour notes", "zanzibar alpha beta summary", "harbour memo"])
    backend.write(lambda c: backend.index.add(c, vs, "file_big", "big.txt", chunks(*texts), {}))

    def found(query: str) -> list[str]:
        return [h.text for h in backend.search([vs], query, vector=False, max_num_results=50)]

    plain = {q: found(q) for q in ("zanzibar alpha beta", "alpha memo", "harbour memo")}
    monkeypatch.setattr(keyword, "COMMON", 60)  # alpha (142 chunks), beta (71), memo (71) become common
    assert set(found("zanzibar alpha beta")) == {"zanzibar alpha beta summary", "zanzibar harbour notes"}
    assert set(found("harbour memo")) == {"harbour memo", "zanzibar harbour notes"}
    if backend.db.is_sqlite:  # bm25 (ts_rank_cd's cover density ranks short OR matches its own way)
        assert found("harbour memo")[0] == "harbour memo"
    assert set(found("alpha memo")) <= {t for t in texts if "alpha" in t and "memo" in t}
    assert set(found("alpha memo quetzal")) == set(found("alpha memo"))  # a word in no chunk changes nothing
    # PostgreSQL's counts are exact: the rarest word's chunks first; SQLite pairs no two very common words
    monkeypatch.setattr(keyword, "VERY_COMMON", 100)  # alpha (142 chunks) and number (140)
    assert all("memo" in t for t in found("alpha number memo"))  # not those of the two commonest
    monkeypatch.setattr(keyword, "SAMPLE", 10)  # ranking a bounded sample: still matches of every word
    ranked = found("alpha beta")  # 10 chunks holding both first, then (short of a half list) 10 holding either
    assert len(ranked) <= 20 and all("alpha beta" in t for t in ranked[:10])
    monkeypatch.undo()
    assert {q: found(q) for q in plain} == plain


@pytest.mark.parametrize("exact_rows", [100_000, 0], ids=["every-window", "two-stage"])
def test_a_long_chunk_is_found_by_its_best_window(backend: Backend, request: pytest.FixtureRequest,
                                                  monkeypatch: pytest.MonkeyPatch, exact_rows: int) -> None:
    """vectors.py (and pgvector): a chunk with window vectors scores its best window, so a sentence in its
    last window wins over chunks half about it, though the chunk's mean vector (mostly other topics) would
    lose to them."""
    if "pgvector" in request.node.callspec.params["backend"] and exact_rows == 0:
        pytest.skip("pgvector ranks in the database: no in-memory stages")
    from assistd.retrieval.index import vectors

    monkeypatch.setattr(vectors, "EXACT_ROWS", exact_rows)  # 0: large-store path (candidates by mean, then windows)
    monkeypatch.setattr(vectors, "MIN_WINDOWS_PER_CHUNK", 0 if exact_rows == 0 else 2)
    topics = ["farmers planted tomatoes near the barn", "the baker sold rye bread at dawn",
              "our coach repaired the wooden fence", "quantum cipher lantern harbour"]
    windows = [vec(t) for t in topics]
    mean = [sum(w[i] for w in windows) for i in range(DIMS)]
    long_text = " ".join(topics)
    distractors = [f"quantum cipher notes {i}" for i in range(8)] + [f"lantern harbour log {i}" for i in range(8)]
    vs_windows, vs_mean = store_id(), store_id()
    backend.write(lambda c: backend.index.add(c, vs_windows, "file_long", "long.txt",
                                              [IndexedChunk(long_text, mean, 40, windows)], {}))
    backend.write(lambda c: backend.index.add(c, vs_mean, "file_long", "long.txt",
                                              [IndexedChunk(long_text, mean, 40)], {}))
    for vs in (vs_windows, vs_mean):
        backend.write(lambda c, vs=vs: backend.index.add(c, vs, "file_short", "short.txt", chunks(*distractors), {}))

    def vector_ranking(vs: str) -> list[str]:
        async def go() -> list[Any]:
            async with backend.db.read() as conn:
                return await backend.index.search(conn, [vs], None, vec(topics[-1]), max_num_results=20)
        return [h.text for h in backend.run(go())]

    assert vector_ranking(vs_windows)[0] == long_text
    assert vector_ranking(vs_mean)[0] != long_text  # the mean alone: the half matches come first
    # A file with windows added to a store already in memory (the cache appends its rows): found first.
    backend.write(lambda c: backend.index.add(c, vs_mean, "file_long2", "long2.txt",
                                              [IndexedChunk(long_text + " again", mean, 40, windows)], {}))
    assert vector_ranking(vs_mean)[0] == long_text + " again"
    # Each window is a row of the store's matrix (a chunk without windows is one row); hits are chunks.
    hits = backend.search([vs_windows], "quantum cipher lantern harbour", max_num_results=50)
    assert len({h.chunk_index for h in hits if h.file_id == "file_long"}) == 1
    assert len(hits) == len({(h.file_id, h.chunk_index) for h in hits}) == 17
