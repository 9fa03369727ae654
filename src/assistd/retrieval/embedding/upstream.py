"""Embeddings from an OpenAI-compatible ``/embeddings`` endpoint (OpenAI, vLLM, Ollama, the dev upstream)."""

from __future__ import annotations

import asyncio

import openai
from openai import AsyncOpenAI

from assistd.retrieval.embedding import EmbeddingUnavailable

# OpenAI accepts up to 2048 inputs and ~300k tokens per request; stay well inside both (chunks are at
# most 4096 tokens, ~4 characters a token).
BATCH_TEXTS = 256
BATCH_CHARS = 600_000
CONCURRENCY = 4

_KNOWN_DIMENSIONS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072,
                     "text-embedding-ada-002": 1536}


class UpstreamEmbedder:
    """``Embedder`` calling ``{base_url}/embeddings`` with the openai client, in batches.

    ``dimensions`` (optional) is sent as the API's ``dimensions`` parameter (text-embedding-3 models can
    shorten their vectors); otherwise it is the model's known size, or learnt from the first response.
    """

    def __init__(self, base_url: str, api_key: str, model: str, *, dimensions: int | None = None,
                 max_retries: int = 3, timeout: float = 60.0) -> None:
        self.client = AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=max_retries, timeout=timeout)
        self.model = model
        self.name = model
        self._requested = dimensions
        self.dimensions: int | None = dimensions or _KNOWN_DIMENSIONS.get(model)

    def _batches(self, texts: list[str]) -> list[tuple[int, list[str]]]:
        batches: list[tuple[int, list[str]]] = []
        start, chars = 0, 0
        for i, text in enumerate(texts):
            if i > start and (i - start >= BATCH_TEXTS or chars + len(text) > BATCH_CHARS):
                batches.append((start, texts[start:i]))
                start, chars = i, 0
            chars += len(text)
        if start < len(texts):
            batches.append((start, texts[start:]))
        return batches

    async def embed(self, texts: list[str]) -> list[list[float]]:
        out: list[list[float]] = [[] for _ in texts]
        gate = asyncio.Semaphore(CONCURRENCY)

        async def run(start: int, batch: list[str]) -> None:
            async with gate:
                try:
                    if self._requested:
                        resp = await self.client.embeddings.create(model=self.model, input=batch,
                                                                   dimensions=self._requested)
                    else:
                        resp = await self.client.embeddings.create(model=self.model, input=batch)
                except openai.APIError as exc:
                    # After the client's own retries. Down, overloaded, or refusing our key or model: either
                    # way the operator's upstream, not the caller's request, is what failed.
                    raise EmbeddingUnavailable(f"{type(exc).__name__}: {exc}") from exc
            for item in resp.data:
                out[start + item.index] = list(item.embedding)

        await asyncio.gather(*(run(s, b) for s, b in self._batches(texts)))
        if out and self.dimensions is None:
            self.dimensions = len(out[0])
        return out

    async def aclose(self) -> None:
        await self.client.close()
