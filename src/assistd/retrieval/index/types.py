"""Values going into and out of the hybrid index."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

RANKERS = ("auto", "default_2024_08_21")
# Reciprocal rank fusion constant (Cormack et al.): 1 / (k + rank). 30 rather than the usual 60: a first
# place counts more against a list's tail; chosen on the tuning half of bench/retrieval_eval, where it lifted
# MRR (docs/benchmarks.md).
RRF_K = 30
# Weight of each ranking's 1 / (k + rank) terms. The vector ranking (chunks by their best window) counts
# four times the keyword one: chosen on the tuning half of bench/retrieval_eval (docs/benchmarks.md), where
# it lifted paraphrased questions most without costing those that reuse the document's words (3 before
# windows stopped at section starts; 5 gained nothing more).
WEIGHTS = {"vector": 4.0, "keyword": 1.0}


@dataclass(frozen=True, slots=True)
class IndexedChunk:
    text: str
    embedding: Sequence[float]
    tokens: int
    windows: Any = None
    """The vectors of the chunk's model windows, float32 [windows, dims] (the local embedder's), or None:
    the chunk is searched by ``embedding`` alone, as one window."""


@dataclass(frozen=True, slots=True)
class SearchHit:
    file_id: str
    file_name: str
    score: float
    """Fused rank score in [0, 1]: 1.0 = first in every ranking that ran (vector and/or keyword)."""
    text: str
    attributes: dict[str, Any]
    chunk_index: int
    vector_store_id: str = ""
    ranks: dict[str, int] = field(default_factory=dict)
    """1-based rank per ranking that found the chunk ({"vector": 1, "keyword": 4}), for debugging."""
    tokens: int = 0
    """The chunk's size in cl100k_base tokens, counted when it was indexed."""


def check_search_args(vector_store_ids: Sequence[str], max_num_results: int, score_threshold: float,
                      ranker: str) -> None:
    if not vector_store_ids:
        raise ValueError("vector_store_ids must not be empty")
    if isinstance(max_num_results, bool) or not isinstance(max_num_results, int) or not 1 <= max_num_results <= 50:
        raise ValueError("max_num_results must be an integer between 1 and 50")
    if not 0.0 <= score_threshold <= 1.0:
        raise ValueError("score_threshold must be between 0 and 1")
    if ranker not in RANKERS:
        raise ValueError(f"ranker must be one of {', '.join(RANKERS)}")


def fuse(rankings: dict[str, list[int] | None], limit: int) -> list[tuple[int, float, dict[str, int]]]:
    """Reciprocal rank fusion of ranked chunk-id lists → (chunk id, score in [0, 1], ranks), best first.

    Each list's terms are multiplied by its ``WEIGHTS`` entry. Normalised by the best achievable sum (first
    in every list that ran), so a chunk ranked first by both the vector and the keyword search scores 1.0.
    A ranking given as None did not run (no query vector, or no searchable words) and does not count.
    """
    active = {name: ids for name, ids in rankings.items() if ids is not None}
    if not active:
        return []
    best = sum(WEIGHTS.get(name, 1.0) for name in active) / (RRF_K + 1)
    scores: dict[int, float] = {}
    ranks: dict[int, dict[str, int]] = {}
    for name, ids in active.items():
        weight = WEIGHTS.get(name, 1.0)
        for rank, chunk_id in enumerate(ids, start=1):
            scores[chunk_id] = scores.get(chunk_id, 0.0) + weight / (RRF_K + rank)
            ranks.setdefault(chunk_id, {})[name] = rank
    top = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]
    return [(cid, min(1.0, s / best), ranks[cid]) for cid, s in top]
