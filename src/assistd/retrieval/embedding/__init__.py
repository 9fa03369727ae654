"""Embedders: one small interface, a local model (default) and an OpenAI-compatible upstream.

``ASSISTD_EMBEDDINGS`` picks one: ``local`` (all-MiniLM-L6-v2 in a worker process) or ``upstream:MODEL``
(``ASSISTD_LLM_BASE_URL`` / ``ASSISTD_LLM_API_KEY``'s ``/embeddings``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:  # imported lazily: the worker process imports this package and needs neither
    from assistd.retrieval.embedding.local import LocalEmbedder
    from assistd.retrieval.embedding.upstream import UpstreamEmbedder


class EmbeddingUnavailable(RuntimeError):
    """The embedding model cannot answer for now (unreachable, overloaded, rate-limited): worth a retry."""


@runtime_checkable
class Embedder(Protocol):
    name: str
    """The model's name; store it beside vectors so a store is never searched with another model's."""

    @property
    def dimensions(self) -> int | None:
        """Vector length (None only for an upstream model not yet called)."""
        ...

    async def embed(self, texts: list[str]) -> list[list[float]]:
        """One vector per text, in order (the local model's are L2-normalised). Never truncates a text."""
        ...

    async def aclose(self) -> None: ...


def create_embedder(settings: Any) -> Embedder:
    """The embedder ``settings.embeddings`` names (``local`` when unset)."""
    spec = str(getattr(settings, "embeddings", "local") or "local").strip()
    if spec == "local":
        from assistd.retrieval.embedding.local import LocalEmbedder

        return LocalEmbedder(idle_seconds=float(getattr(settings, "embeddings_idle_seconds", 0) or 0))
    if spec.startswith("upstream:") and spec.split(":", 1)[1].strip():
        from assistd.retrieval.embedding.upstream import UpstreamEmbedder

        return UpstreamEmbedder(settings.llm_base_url, settings.llm_api_key, spec.split(":", 1)[1].strip())
    raise ValueError(f"ASSISTD_EMBEDDINGS must be 'local' or 'upstream:MODEL', not {spec!r}")


def __getattr__(name: str) -> Any:
    if name == "LocalEmbedder":
        from assistd.retrieval.embedding.local import LocalEmbedder

        return LocalEmbedder
    if name == "UpstreamEmbedder":
        from assistd.retrieval.embedding.upstream import UpstreamEmbedder

        return UpstreamEmbedder
    raise AttributeError(f"module 'assistd.retrieval.embedding' has no attribute {name!r}")


__all__ = ["Embedder", "EmbeddingUnavailable", "LocalEmbedder", "UpstreamEmbedder", "create_embedder"]
