"""Shapes shared by several requests: metadata, tools, tool resources, response formats.

Request models forbid unknown fields (the hosted API answered "Unrecognized request argument supplied").

Explicit ``null`` follows OpenAI's document, field by field: a field the document marks nullable is typed
``X | None`` (``null`` means "not given"; the nulls real clients send, ../shared/spec/clients.md, are all of
this kind); any other optional field is typed ``X = OMITTED``, so it may be left out but an explicit ``null``
is a 400 naming it (pydantic checks the value against ``X``, which has no ``None``). Services read
``model_fields_set`` together with ``None`` checks, never a bare default.
tests/security/test_input_nulls.py walks every request field of the document and checks both kinds.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

# Every integer field has a documented upper bound (README, Security): counts and token limits are at most
# INT32_MAX (ample for any count, and within every column and upstream integer); integers inside free-form
# JSON and attributes fit in 64 bits. tests/security/test_input_bounds.py checks every integer field.
INT32_MAX = 2**31 - 1

# Characters no string may hold: PostgreSQL's text and JSONB refuse NUL, and an unpaired UTF-16 surrogate
# ("\ud800" in JSON) is not Unicode at all (orjson, asyncpg and the upstream refuse it).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def unstorable_path(value: Any) -> str | None:
    """The param path (``messages[0].content``) of the first string, key or value, that cannot be stored."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            if _UNSTORABLE.search(item):
                return path
        elif isinstance(item, dict):
            for key, child in item.items():
                where = f"{path}.{key}" if path else str(key)
                if isinstance(key, str) and _UNSTORABLE.search(key):
                    return path or where
                stack.append((child, where))
        elif isinstance(item, list):
            stack.extend((child, f"{path}[{i}]") for i, child in enumerate(item))
    return None


# Default of an optional field the document does not mark nullable: absent reads as None, sent null is a 400.
OMITTED: Any = None


class _Storable(BaseModel):
    """Every request body is checked whole, before its fields, for strings that cannot be stored.

    One place for every field (names, instructions, metadata, content, tool outputs, function schemas,
    attributes, filters, queries …), so a field added later is covered too. A nested model checks its own
    part again (cheap: the body's check has already passed)."""

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        path = unstorable_path(data)
        if path is not None:
            shown = _UNSTORABLE.sub("?", path)[:200]
            raise PydanticCustomError(
                "openai", "Invalid '{param}': strings may not contain the NUL character (\\u0000) or an "
                "unpaired UTF-16 surrogate.", {"param": shown})
        return data


class Strict(_Storable):
    """Base for request bodies: unknown keys are an error, as in the hosted API.

    Strict types too: ``"1"`` is not a number nor ``1`` a boolean (the hosted API answered 400)."""

    model_config = ConfigDict(extra="forbid", strict=True)


# Nested shapes refuse unknown keys too (``tools[0].bogus`` names where it sits), as the top level does:
# no client in ../shared/spec/clients.md sends keys the spec does not name in them.
Nested = Strict


# Free-form JSON (function parameters, JSON schemas) is stored and echoed with orjson, which refuses
# integers beyond 64 bits and nesting beyond 254 levels: refuse those here as 400s, never as 500s.
MAX_JSON_DEPTH = 100
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1


def check_json_object(value: dict[str, Any]) -> dict[str, Any]:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise PydanticCustomError(
                    "json_too_deep", "nested too deeply: at most {limit} levels are supported",
                    {"limit": MAX_JSON_DEPTH},
                )
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
        elif isinstance(item, int) and not isinstance(item, bool) and not _INT_MIN <= item <= _INT_MAX:
            raise PydanticCustomError("json_number", "integer out of range: {value}", {"value": item})
        elif isinstance(item, float) and not math.isfinite(item):
            raise PydanticCustomError("json_number", "number out of range: {value}", {"value": item})
    return value


JSONObject = Annotated[dict[str, Any], AfterValidator(check_json_object)]


def check_metadata(value: dict[str, str] | None) -> dict[str, str] | None:
    if value is None:
        return None
    if len(value) > 16:
        raise PydanticCustomError(
            "openai",
            "Invalid 'metadata': too many properties. Expected an object with at most 16 properties, "
            "but got an object with {n} properties instead.",
            {"n": len(value), "param": "metadata"},
        )
    for key, item in value.items():
        if len(key) > 64:
            raise PydanticCustomError(
                "openai",
                "Invalid 'metadata': key too long. Expected a key with maximum length 64, but got "
                "'{key}' with length {n} instead.",
                {"key": key[:80], "n": len(key), "param": "metadata"},
            )
        if len(item) > 512:
            raise PydanticCustomError(
                "openai",
                "Invalid 'metadata.{key}': string too long. Expected a string with maximum length 512, "
                "but got a string with length {n} instead.",
                {"key": key, "n": len(item), "param": f"metadata.{key}"},
            )
    return value


Metadata = Annotated[dict[str, str] | None, Field(default=None)]


class WithMetadata(Strict):
    metadata: Metadata = None

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return check_metadata(value)


# --- tools -------------------------------------------------------------------------------------------

class FunctionDefinition(Nested):
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-zA-Z0-9_-]+$")]
    description: str = OMITTED
    parameters: JSONObject = OMITTED
    strict: bool | None = None


class FunctionTool(Nested):
    type: Literal["function"]
    function: FunctionDefinition


class CodeInterpreterTool(Nested):
    type: Literal["code_interpreter"]


class RankingOptions(Nested):
    ranker: Literal["auto", "default_2024_08_21"] = "auto"
    score_threshold: Annotated[float, Field(ge=0, le=1)]


class FileSearchSettings(Nested):
    # Not nullable in the spec (AssistantToolsFileSearch): an explicit null is a 400; omitted means default.
    max_num_results: Annotated[int, Field(ge=1, le=50)] = OMITTED
    ranking_options: RankingOptions = OMITTED


class FileSearchTool(Nested):
    type: Literal["file_search"]
    file_search: FileSearchSettings = OMITTED


Tool = Annotated[FunctionTool | CodeInterpreterTool | FileSearchTool, Field(discriminator="type")]


class FileSearchTypeOnly(Nested):
    type: Literal["file_search"]


AttachmentTool = Annotated[CodeInterpreterTool | FileSearchTypeOnly, Field(discriminator="type")]


def tool_dicts(tools: list[Any] | None) -> list[dict[str, Any]]:
    """Tools as stored and returned: what the client sent, without nulls it did not mean."""
    return [t.model_dump(exclude_none=True) for t in tools or []]


# --- tool resources ------------------------------------------------------------------------------------

class CodeInterpreterResources(Nested):
    file_ids: Annotated[list[str], Field(max_length=20)] = []


class AutoChunking(Strict):
    type: Literal["auto"]


class StaticChunkingParams(Strict):
    max_chunk_size_tokens: Annotated[int, Field(ge=100, le=4096)]
    chunk_overlap_tokens: Annotated[int, Field(ge=0, le=2048)]

    @model_validator(mode="after")
    def _overlap(self) -> StaticChunkingParams:
        # The spec's prose rule, wherever a chunking strategy is given (stores, batches, helpers).
        if self.chunk_overlap_tokens > self.max_chunk_size_tokens // 2:
            raise PydanticCustomError(
                "openai",
                "Invalid 'static.chunk_overlap_tokens': must not exceed half of max_chunk_size_tokens ({limit}), "
                "but got {value}.",
                {"limit": self.max_chunk_size_tokens // 2, "value": self.chunk_overlap_tokens,
                 "param": "static.chunk_overlap_tokens"},
            )
        return self


class StaticChunking(Strict):
    type: Literal["static"]
    static: StaticChunkingParams


ChunkingStrategy = Annotated[AutoChunking | StaticChunking, Field(discriminator="type")]


class VectorStoreHelper(Nested):
    metadata: Metadata = None
    file_ids: list[str] = []
    chunking_strategy: ChunkingStrategy = OMITTED


class FileSearchResources(Nested):
    vector_store_ids: Annotated[list[str], Field(max_length=1)] = OMITTED
    vector_stores: Annotated[list[VectorStoreHelper], Field(max_length=1)] = OMITTED


class ToolResources(Nested):
    """``tool_resources`` of a modify (assistant, thread): ``file_search`` may name no store."""

    code_interpreter: CodeInterpreterResources = OMITTED
    file_search: FileSearchResources = OMITTED


class NewFileSearchResources(FileSearchResources):
    @model_validator(mode="after")
    def _one_source(self) -> NewFileSearchResources:
        # The spec's create shapes: oneOf required vector_store_ids / required vector_stores.
        if self.vector_store_ids is None and self.vector_stores is None:
            raise PydanticCustomError("openai", "Missing required parameter: 'file_search.vector_store_ids'.",
                                      {"param": "file_search.vector_store_ids"})
        return self


class NewToolResources(ToolResources):
    """``tool_resources`` of a create (assistant, thread, thread-and-run)."""

    file_search: NewFileSearchResources = OMITTED


# --- response format -----------------------------------------------------------------------------------

class TextFormat(Nested):
    type: Literal["text"]


class JsonObjectFormat(Nested):
    type: Literal["json_object"]


class JsonSchemaSpec(Nested):
    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-zA-Z0-9_-]+$")]
    description: str = OMITTED
    schema_: JSONObject = Field(default=OMITTED, alias="schema")
    strict: bool | None = None

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


class JsonSchemaFormat(Nested):
    type: Literal["json_schema"]
    json_schema: JsonSchemaSpec


ResponseFormatObject = Annotated[
    TextFormat | JsonObjectFormat | JsonSchemaFormat, Field(discriminator="type")
]
ResponseFormat = Union[Literal["auto"], ResponseFormatObject]

ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"]


def response_format_value(value: Any) -> Any:
    """The response_format as stored and returned (``auto`` when not given)."""
    if value is None:
        return "auto"
    if isinstance(value, str):
        return value
    return value.model_dump(exclude_none=True, by_alias=True)


Temperature = Annotated[float, Field(ge=0, le=2)]
TopP = Annotated[float, Field(ge=0, le=1)]
