"""Request bodies of /v1/vector_stores and its files, file batches and search.

Shapes follow the spec (``CreateVectorStoreRequest``, ``CreateVectorStoreFileRequest``,
``CreateVectorStoreFileBatchRequest``, ``VectorStoreSearchRequest`` …); unknown fields are refused as in
every request body here. Rules the spec states in prose (a chunk overlap at most half the chunk size,
``file_ids`` and ``files`` mutually exclusive) are checked here too, so services get valid values only.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator
from pydantic_core import PydanticCustomError

from assistd.schemas.common import OMITTED, ChunkingStrategy, Strict, WithMetadata

FILE_STATUSES = ("in_progress", "completed", "failed", "cancelled")
MAX_ATTRIBUTES = 16
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1  # what orjson stores and filters compare (as 64-bit floats)


# The overlap rule is checked by the strategy itself (schemas.common), wherever one is given.
Chunking = ChunkingStrategy
AttributeValue = str | bool | int | float


def check_attributes(value: dict[str, AttributeValue] | None) -> dict[str, AttributeValue] | None:
    """``VectorStoreFileAttributes``: at most 16 keys of at most 64 characters; strings at most 512."""
    if value is None:
        return None
    if len(value) > MAX_ATTRIBUTES:
        raise PydanticCustomError(
            "openai", "Invalid 'attributes': too many properties. Expected an object with at most 16 "
            "properties, but got an object with {n} properties instead.", {"n": len(value), "param": "attributes"})
    for key, item in value.items():
        if len(key) > 64:
            raise PydanticCustomError(
                "openai", "Invalid 'attributes': key too long. Expected a key with maximum length 64, but got "
                "'{key}' with length {n} instead.", {"key": key[:80], "n": len(key), "param": "attributes"})
        if isinstance(item, str) and len(item) > 512:
            raise PydanticCustomError(
                "openai", "Invalid 'attributes.{key}': string too long. Expected a string with maximum length "
                "512, but got a string with length {n} instead.",
                {"key": key, "n": len(item), "param": f"attributes.{key}"})
        out_of_range = (isinstance(item, float) and not math.isfinite(item)) or (  # no NaN/Infinity in JSON
            isinstance(item, int) and not isinstance(item, bool) and not _INT_MIN <= item <= _INT_MAX)
        if out_of_range:
            raise PydanticCustomError(
                "openai", "Invalid 'attributes.{key}': number out of range: integers must fit in 64 bits.",
                {"key": key, "param": f"attributes.{key}"})
    return value


Attributes = Annotated[dict[str, AttributeValue] | None, AfterValidator(check_attributes)]


class ExpiresAfter(Strict):
    anchor: Literal["last_active_at"]
    days: Annotated[int, Field(ge=1, le=365)]


class CreateVectorStore(WithMetadata):
    file_ids: Annotated[list[str], Field(max_length=500)] = OMITTED
    name: str = OMITTED
    description: Annotated[str, Field(max_length=512)] = OMITTED
    expires_after: ExpiresAfter = OMITTED
    chunking_strategy: Chunking = OMITTED


class ModifyVectorStore(WithMetadata):
    name: str | None = None
    # Explicit null removes the policy (the spec makes it nullable, and there is no other way to clear it).
    expires_after: ExpiresAfter | None = None


class CreateVectorStoreFile(Strict):
    file_id: str
    chunking_strategy: Chunking = OMITTED
    attributes: Attributes = None


class BatchFile(CreateVectorStoreFile):
    """An item of ``files`` in a batch: the same shape as CreateVectorStoreFileRequest."""


class CreateFileBatch(Strict):
    file_ids: Annotated[list[str], Field(min_length=1, max_length=2000)] = OMITTED
    files: Annotated[list[BatchFile], Field(min_length=1, max_length=2000)] = OMITTED
    chunking_strategy: Chunking = OMITTED
    attributes: Attributes = None

    @model_validator(mode="after")
    def _one_list(self) -> CreateFileBatch:
        if self.file_ids is None and self.files is None:
            raise PydanticCustomError("openai", "Missing required parameter: 'file_ids' (or 'files').",
                                      {"param": "file_ids"})
        if self.file_ids is not None and self.files is not None:
            raise PydanticCustomError("openai", "'file_ids' and 'files' are mutually exclusive: give one.",
                                      {"param": "files"})
        return self


class SearchRankingOptions(Strict):
    # The spec's rankers for this endpoint; all run the same fused ranking here (no separate re-ranker).
    ranker: Literal["none", "auto", "default-2024-11-15"] = "auto"
    score_threshold: Annotated[float, Field(ge=0, le=1)] = 0.0


class SearchVectorStore(Strict):
    query: str | Annotated[list[str], Field(min_length=1, max_length=20)]
    rewrite_query: bool = False
    max_num_results: Annotated[int, Field(ge=1, le=50)] = 10
    filters: dict[str, Any] = OMITTED  # checked by retrieval.validate_filter
    ranking_options: SearchRankingOptions = OMITTED


class UpdateFileAttributes(Strict):
    attributes: Attributes = Field(...)
