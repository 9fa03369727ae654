"""parse (in a worker process) → chunk → embed, outside any transaction; then ``HybridIndex.add`` inside
the caller's."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from assistd.observability import metrics
from assistd.retrieval.chunking import AUTO_MAX_TOKENS, AUTO_OVERLAP, chunk
from assistd.retrieval.index.types import IndexedChunk
from assistd.retrieval.parse_limits import ParseLimits
from assistd.retrieval.parse_worker import parse_isolated
from assistd.retrieval.parsing import parse

if TYPE_CHECKING:
    from assistd.retrieval.embedding import Embedder


def parse_and_chunk(data: bytes, filename: str, content_type: str | None = None, *,
                    max_tokens: int = AUTO_MAX_TOKENS, overlap: int = AUTO_OVERLAP) -> list[tuple[str, int]]:
    """(text, tokens) per chunk, parsed in this process; raises ``UnsupportedFile`` / ``InvalidFile`` /
    ``ChunkingError``."""
    return [(c.text, c.tokens) for c in chunk(parse(data, filename, content_type), max_tokens, overlap)]


async def prepare(data: bytes, filename: str, content_type: str | None, embedder: Embedder, *,
                  max_tokens: int = AUTO_MAX_TOKENS, overlap: int = AUTO_OVERLAP,
                  limits: ParseLimits | None = None) -> list[IndexedChunk]:
    """Everything before indexing. Parsing runs in a worker process bounded in memory and time (a
    decompression bomb or a pathological PDF must not reach the server), chunking in a thread, embedding
    in the embedder's own process or upstream, so the event loop stays responsive. ``limits`` default to
    the ``ASSISTD_PARSE_*`` settings."""
    if limits is None:
        from assistd.config import get_settings

        limits = ParseLimits.from_settings(get_settings())
    text = await parse_isolated(data, filename, content_type, limits)
    pieces = [(c.text, c.tokens) for c in await asyncio.to_thread(chunk, text, max_tokens, overlap)]
    texts = [text for text, _ in pieces]
    if not texts:
        return []
    embed_windows = getattr(embedder, "embed_windows", None)  # the local model's windows (search: best window)
    if embed_windows is not None:
        embedded = await embed_windows(texts)
        metrics.chunks_embedded.inc(len(embedded))
        return [IndexedChunk(text, vector, tokens, windows) for (text, tokens), (vector, windows)
                in zip(pieces, embedded, strict=True)]
    vectors = await embedder.embed(texts)
    metrics.chunks_embedded.inc(len(vectors))
    return [IndexedChunk(text, vector, tokens) for (text, tokens), vector in zip(pieces, vectors, strict=True)]
