"""The hybrid (vector + keyword) index; see ``hybrid.py``."""

from assistd.retrieval.index.hybrid import HybridIndex
from assistd.retrieval.index.types import RANKERS, IndexedChunk, SearchHit

__all__ = ["RANKERS", "HybridIndex", "IndexedChunk", "SearchHit"]
