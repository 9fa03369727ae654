"""parse (in a worker process) → chunk → embed, outside any transaction; then ``HybridIndex.add`` inside
the caller's.

The local embedder embeds each window of a chunk after its heading path (outline.py); what is stored and
searched by keyword is the chunk's text alone. An upstream embedder gets the text as before.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from assistd.observability import metrics
from assistd.retrieval.chunking import AUTO_MAX_TOKENS, AUTO_OVERLAP, chunk
from assistd.retrieval.index.types import IndexedChunk
from assistd.retrieval.outline import Outline
from assistd.retrieval.parse_limits import ParseLimits
from assistd.retrieval.parse_worker import parse_document_isolated
from assistd.retrieval.parsing import ParsedDocument, parse, parse_document

if TYPE_CHECKING:
    from assistd.retrieval.embedding import Embedder


def parse_and_chunk(data: bytes, filename: str, content_type: str | None = None, *,
                    max_tokens: int = AUTO_MAX_TOKENS, overlap: int = AUTO_OVERLAP) -> list[tuple[str, int]]:
    """(text, tokens) per chunk, parsed in this process; raises ``UnsupportedFile`` / ``InvalidFile`` /
    ``ChunkingError``."""
    return [(c.text, c.tokens) for c in chunk(parse(data, filename, content_type), max_tokens, overlap)]


@dataclass(frozen=True, slots=True)
class ChunkText:
    text: str
    tokens: int
    contexts: list[tuple[int, str]]
    """(offset in ``text``, heading path) where each of its sections starts: what its windows are embedded after."""


def split(document: ParsedDocument, filename: str, max_tokens: int = AUTO_MAX_TOKENS,
          overlap: int = AUTO_OVERLAP) -> list[ChunkText]:
    """A parsed document's chunks with their heading paths; a document without a title is titled by its
    file name."""
    outline = Outline(document.headings, title=filename)
    return [ChunkText(c.text, c.tokens, outline.chunk_contexts(c.start, c.end))
            for c in chunk(document.text, max_tokens, overlap)]


def parse_and_split(data: bytes, filename: str, content_type: str | None = None, *,
                    max_tokens: int = AUTO_MAX_TOKENS, overlap: int = AUTO_OVERLAP) -> list[ChunkText]:
    """``split`` of a file parsed in this process (benchmarks, tests)."""
    return split(parse_document(data, filename, content_type), filename, max_tokens, overlap)


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
    document = await parse_document_isolated(data, filename, content_type, limits)
    pieces = await asyncio.to_thread(split, document, filename, max_tokens, overlap)
    texts = [p.text for p in pieces]
    if not texts:
        return []
    embed_windows = getattr(embedder, "embed_windows", None)  # the local model's windows (search: best window)
    if embed_windows is not None:
        embedded = await embed_windows(texts, [p.contexts for p in pieces])
        metrics.chunks_embedded.inc(len(embedded))
        return [IndexedChunk(p.text, vector, p.tokens, windows) for p, (vector, windows)
                in zip(pieces, embedded, strict=True)]
    vectors = await embedder.embed(texts)
    metrics.chunks_embedded.inc(len(vectors))
    return [IndexedChunk(p.text, vector, p.tokens) for p, vector in zip(pieces, vectors, strict=True)]
