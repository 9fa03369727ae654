"""Searching vector stores: the ``/vector_stores/{id}/search`` endpoint and the ``file_search`` tool.

For other services::

    Retrieval(settings)                       this process's index + embedder (``app.state.retrieval``)
        .index: HybridIndex                   the process's one index (vector_stores.process_index())
        .embedder() -> Embedder               created on first use: an API process that never embeds
                                              never starts the local model's worker
    async search(db, index, embedder, project_id, vector_store_ids, query, *, max_num_results,
                 filters=None, ranking_options=None) -> list[SearchHit]
        ``query``: a string or a list of strings (each searched, hits merged by best score);
        ``filters``: ComparisonFilter / CompoundFilter (400 on ``filters`` when invalid);
        ``ranking_options``: {ranker, score_threshold} (dict or model).
        Raises NotFound (unknown store, or another project's), ``VectorStoreExpired`` (400): a run whose
        store expired fails, as on the hosted API. Touches the stores' ``last_active_at``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from assistd import ids
from assistd.errors import InvalidRequest, ServiceUnavailable
from assistd.retrieval import (
    RANKERS,
    Embedder,
    EmbeddingUnavailable,
    FilterError,
    HybridIndex,
    SearchHit,
    create_embedder,
    validate_filter,
)
from assistd.services import vector_stores
from assistd.store.db import Database

log = logging.getLogger("assistd.retrieval")

__all__ = ["Retrieval", "SearchHit", "check_filters", "search"]


class Retrieval:
    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.index = vector_stores.process_index()
        self._embedder: Embedder | None = None

    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = create_embedder(self.settings)
        return self._embedder

    async def aclose(self) -> None:
        if self._embedder is not None:
            await self._embedder.aclose()
            self._embedder = None


def check_filters(filters: Any, param: str = "filters") -> dict[str, Any] | None:
    if filters is None:
        return None
    try:
        return validate_filter(filters)
    except FilterError as exc:
        where = f"{param}{exc.path}"
        raise InvalidRequest(f"Invalid '{where}': {exc}.", param=where) from None


def _ranking(options: Any) -> tuple[str, float]:
    if options is None:
        return "auto", 0.0
    opts = options.model_dump() if hasattr(options, "model_dump") else dict(options)
    ranker = opts.get("ranker") or "auto"
    # The endpoint's rankers (none, auto, default-2024-11-15) all mean the index's one fused ranking.
    return (ranker if ranker in RANKERS else "auto"), float(opts.get("score_threshold") or 0.0)


async def search(db: Database, index: HybridIndex, embedder: Embedder, project_id: str,
                 vector_store_ids: Sequence[str], query: str | Sequence[str], *, max_num_results: int,
                 filters: dict[str, Any] | None = None, ranking_options: Any = None,
                 param: str | None = None) -> list[SearchHit]:
    queries = [query] if isinstance(query, str) else list(query)
    filters = check_filters(filters)
    ranker, threshold = _ranking(ranking_options)
    store_ids = list(dict.fromkeys(vector_store_ids))
    async with db.read() as conn:
        stores = await vector_stores.require_stores(conn, project_id, store_ids, param)
    for store in stores:
        if store["status"] == "expired":
            raise vector_stores.VectorStoreExpired(store["id"])
    if any(store["last_active_at"] < ids.now() for store in stores):
        async with db.write() as conn:
            await vector_stores.touch(conn, store_ids)
    texts = [q for q in queries if q.strip()]  # an empty query matches nothing (and embedders refuse it)
    if not texts or not store_ids:
        return []
    try:
        vectors = await embedder.embed(texts)
    except EmbeddingUnavailable as exc:
        log.warning("search: the embedding model is unavailable (%s)", exc)
        raise ServiceUnavailable("its embedding model cannot be reached") from exc
    best: dict[tuple[str, str, int], SearchHit] = {}
    async with db.read() as conn:
        for text, vector in zip(texts, vectors, strict=True):
            for hit in await index.search(conn, store_ids, text, vector, max_num_results=max_num_results,
                                          filters=filters, score_threshold=threshold, ranker=ranker):
                key = (hit.vector_store_id, hit.file_id, hit.chunk_index)
                if key not in best or best[key].score < hit.score:
                    best[key] = hit
    return sorted(best.values(), key=lambda h: -h.score)[:max_num_results]


def result_item(hit: SearchHit) -> dict[str, Any]:
    """A ``VectorStoreSearchResultItem``: one chunk."""
    return {"file_id": hit.file_id, "filename": hit.file_name, "score": hit.score,
            "attributes": _as_sent(hit.attributes), "content": [{"type": "text", "text": hit.text}]}


_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1


def _as_sent(attributes: dict[str, Any]) -> dict[str, Any]:
    """PostgreSQL's JSONB writes a number without its exponent (``1e20`` comes back as the integer
    100000000000000000000). Integers beyond 64 bits are refused on input, so such a value was a float:
    give it back as one (orjson cannot write it as an integer)."""
    return {key: float(value) if isinstance(value, int) and not isinstance(value, bool)
            and not _INT_MIN <= value <= _INT_MAX else value for key, value in attributes.items()}
