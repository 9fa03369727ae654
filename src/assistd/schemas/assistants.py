"""Request bodies of /v1/assistants."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from assistd.schemas.common import (
    OMITTED,
    NewToolResources,
    ReasoningEffort,
    ResponseFormat,
    Temperature,
    Tool,
    ToolResources,
    TopP,
    WithMetadata,
)

Name = Annotated[str, Field(max_length=256)]
Description = Annotated[str, Field(max_length=512)]
Instructions = Annotated[str, Field(max_length=256_000)]
Tools = Annotated[list[Tool], Field(max_length=128)]


class CreateAssistant(WithMetadata):
    model: Annotated[str, Field(min_length=1)]
    name: Name | None = None
    description: Description | None = None
    instructions: Instructions | None = None
    reasoning_effort: ReasoningEffort | None = None
    tools: Tools = OMITTED
    tool_resources: NewToolResources | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    response_format: ResponseFormat | None = None


class ModifyAssistant(WithMetadata):
    model: Annotated[str, Field(min_length=1)] = OMITTED
    name: Name | None = None
    description: Description | None = None
    instructions: Instructions | None = None
    reasoning_effort: ReasoningEffort | None = None
    tools: Tools = OMITTED
    tool_resources: ToolResources | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    response_format: ResponseFormat | None = None
