"""parse → chunk → embed, outside any transaction; then ``HybridIndex.add`` inside the caller's."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from assistd.retrieval.chunking import AUTO_MAX_TOKENS, AUTO_OVERLAP, chunk
from assistd.retrieval.index.types import IndexedChunk
from assistd.retrieval.parsing import parse

if TYPE_CHECKING:
    from assistd.retrieval.embedding import Embedder


def parse_and_chunk(data: bytes, filename: str, content_type: str | None = None, *,
                    max_tokens: int = AUTO_MAX_TOKENS, overlap: int = AUTO_OVERLAP) -> list[tuple[str, int]]:
    """(text, tokens) per chunk; raises ``UnsupportedFile`` / ``InvalidFile`` / ``ChunkingError``."""
    return [(c.text, c.tokens) for c in chunk(parse(data, filename, content_type), max_tokens, overlap)]


async def prepare(data: bytes, filename: str, content_type: str | None, embedder: Embedder, *,
                  max_tokens: int = AUTO_MAX_TOKENS, overlap: int = AUTO_OVERLAP) -> list[IndexedChunk]:
    """Everything before indexing. Parsing and chunking run in a thread (a large PDF takes seconds of CPU),
    embedding in the embedder's own process or upstream, so the event loop stays responsive."""
    pieces = await asyncio.to_thread(parse_and_chunk, data, filename, content_type,
                                     max_tokens=max_tokens, overlap=overlap)
    vectors = await embedder.embed([text for text, _ in pieces]) if pieces else []
    return [IndexedChunk(text, vector, tokens) for (text, tokens), vector in zip(pieces, vectors, strict=True)]
