"""Split text into token-bounded, overlapping chunks (the API's ``chunking_strategy``).

``auto`` is 800 tokens with 400 overlap, as in the API; ``static`` takes ``max_chunk_size_tokens``
100-4096 and ``chunk_overlap_tokens`` at most half of it. Tokens are cl100k_base (``tokens.py``).

How a chunk ends: within the last half of its stride (``max_tokens - overlap``), at the best break
available — a paragraph break, else a sentence end, else a line break, else a space — and only mid-word
when a single word overflows. The next chunk starts ``overlap`` tokens before that end, moved by up to a
quarter of the overlap to the best break nearby. Every chunk is re-counted after cutting (BPE can
merge differently at the cut), so ``Chunk.tokens <= max_tokens`` always holds exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from assistd.retrieval import tokens

AUTO_MAX_TOKENS, AUTO_OVERLAP = 800, 400


@dataclass(frozen=True, slots=True)
class Chunk:
    text: str
    tokens: int
    start: int  # character offsets of ``text`` in the parsed document
    end: int


class ChunkingError(ValueError):
    """A chunking strategy the API rejects (maps to a 400 ``invalid_request_error``)."""


def strategy_params(strategy: dict[str, Any] | None) -> tuple[int, int]:
    """(max_tokens, overlap) of an API ``chunking_strategy`` object; raises ``ChunkingError``."""
    if strategy is None or strategy.get("type") == "auto":
        return AUTO_MAX_TOKENS, AUTO_OVERLAP
    if strategy.get("type") != "static" or not isinstance(strategy.get("static"), dict):
        raise ChunkingError("chunking_strategy.type must be 'auto' or 'static' (with a 'static' object)")
    static = strategy["static"]
    size, overlap = static.get("max_chunk_size_tokens"), static.get("chunk_overlap_tokens")
    validate(size, overlap)
    return size, overlap


def validate(max_tokens: Any, overlap: Any) -> None:
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or not 100 <= max_tokens <= 4096:
        raise ChunkingError("max_chunk_size_tokens must be an integer between 100 and 4096")
    if not isinstance(overlap, int) or isinstance(overlap, bool) or overlap < 0:
        raise ChunkingError("chunk_overlap_tokens must be a non-negative integer")
    if overlap > max_tokens // 2:
        raise ChunkingError("chunk_overlap_tokens must not exceed half of max_chunk_size_tokens")


# Break quality of the boundary *before* a character position: higher is better.
_BREAKS = [(4, re.compile(r"\n[ \t]*\n\s*")), (3, re.compile(r"(?<=[.!?])[\"')\]]*\s+|(?<=[。！？])")),
           (2, re.compile(r"\n\s*")), (1, re.compile(r"\s+"))]


def _break_scores(text: str) -> dict[int, int]:
    scores: dict[int, int] = {}
    for score, pattern in _BREAKS:
        for m in pattern.finditer(text):
            # Either side of the whitespace: cl100k tokens usually carry their leading space (" The"),
            # so the token boundary is often before it.
            scores.setdefault(m.start(), score)
            scores.setdefault(m.end(), score)
    return scores


def chunk(text: str, max_tokens: int = AUTO_MAX_TOKENS, overlap: int = AUTO_OVERLAP) -> list[Chunk]:
    validate(max_tokens, overlap)
    enc = tokens.encoding()
    ids = enc.encode_ordinary(text)
    if not ids:
        return []
    # Character offset where each token starts (multi-byte characters split across tokens share one).
    _, starts = enc.decode_with_offsets(ids)
    starts.append(len(text))
    scores = _break_scores(text)
    chunks: list[Chunk] = []
    s = 0
    while s < len(ids):
        e = min(s + max_tokens, len(ids))
        if e < len(ids):
            lowest = s + max_tokens - max((max_tokens - overlap) // 2, 1)
            candidates = sorted(range(lowest, e + 1), key=lambda j: (scores.get(starts[j], 0), j), reverse=True)
        else:
            candidates = [e]
        e, found = _cut(text, starts, s, candidates, max_tokens)
        if found is not None:
            chunks.append(found)
        if e >= len(ids):
            break
        # The next chunk starts ~``overlap`` tokens before this one's end, at the best break within a
        # quarter of the overlap of that point (a sentence start rather than mid-sentence), never at or
        # before this chunk's start.
        target, slack = e - overlap, overlap // 4
        options = range(max(s + 1, target - slack), min(e, target + slack) + 1)
        nxt = max(options, key=lambda j: (scores.get(starts[j], 0), -abs(j - target))) if options else e
        s = nxt
    return chunks


def _span(text: str, a: int, b: int) -> tuple[int, int]:
    while a < b and text[a].isspace():
        a += 1
    while b > a and text[b - 1].isspace():
        b -= 1
    return a, b


def _cut(text: str, starts: list[int], s: int, candidates: list[int], max_tokens: int) -> tuple[int, Chunk | None]:
    """The chunk of tokens [s, e) for the best candidate end ``e`` whose text, without surrounding whitespace,
    re-encodes within ``max_tokens`` (BPE may tokenise a cut text differently, e.g. a word that loses its
    leading space); failing all, the longest prefix that fits. None for a blank span."""
    for e in candidates[:16]:
        a, b = _span(text, starts[s], starts[e])
        if a == b:
            return e, None
        n = tokens.count(text[a:b])
        if n <= max_tokens:
            return e, Chunk(text[a:b], n, a, b)
    e = candidates[0]
    while True:
        e -= 1
        a, b = _span(text, starts[s], starts[e])
        n = tokens.count(text[a:b])
        if n <= max_tokens or e - s <= 1:
            return e, (Chunk(text[a:b], n, a, b) if a < b else None)
