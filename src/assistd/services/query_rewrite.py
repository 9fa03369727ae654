"""``rewrite_query`` of vector store search: the model turns a natural-language question into a search query.

The hosted API rewrote the query with a model and answered with the rewritten one in ``search_query``.
Here the model is ``ASSISTD_REWRITE_MODEL`` (routed like any run's model: ASSISTD_MODELS_FILE may send it
to another upstream). A rewrite that fails (upstream error, timeout, an empty answer) is not the search's
failure: the query is searched as given, and reported so in ``search_query``.
"""

from __future__ import annotations

import asyncio
import logging

from assistd.providers.base import ChatRequest, ProviderError, TextDelta
from assistd.providers.router import ModelRouter

log = logging.getLogger("assistd.retrieval")

INSTRUCTIONS = (
    "Rewrite the user's message as a query for searching a collection of documents: keep the key terms, "
    "names and numbers, drop filler words and politeness, do not answer it. Reply with the query alone, "
    "on one line."
)
TIMEOUT_SECONDS = 15.0
MAX_TOKENS = 100


async def rewrite(router: ModelRouter, model: str, query: str) -> str:
    """The rewritten query, or ``query`` itself when the model gives none (or there is nothing to rewrite)."""
    if not query.strip():
        return query
    request = ChatRequest(model=model, messages=[{"role": "system", "content": INSTRUCTIONS},
                                                 {"role": "user", "content": query}],
                          temperature=0, max_tokens=MAX_TOKENS)
    parts: list[str] = []
    try:
        async with asyncio.timeout(TIMEOUT_SECONDS):
            async for event in router.provider_for(model).stream_chat(request):
                if isinstance(event, TextDelta):
                    parts.append(event.text)
    except (ProviderError, TimeoutError) as exc:
        log.warning("rewrite_query: the model could not rewrite the query (%s); searching it as given", exc)
        return query
    rewritten = " ".join("".join(parts).split())
    return rewritten or query


async def rewrite_all(router: ModelRouter, model: str, queries: list[str]) -> list[str]:
    return list(await asyncio.gather(*(rewrite(router, model, q) for q in queries)))
