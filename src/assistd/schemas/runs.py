"""Request bodies of runs: create, create thread-and-run, modify, submit_tool_outputs."""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field

from assistd.schemas.assistants import Instructions
from assistd.schemas.common import (
    INT32_MAX,
    OMITTED,
    Nested,
    NewToolResources,
    ReasoningEffort,
    ResponseFormat,
    Strict,
    Temperature,
    Tool,
    TopP,
    WithMetadata,
)
from assistd.schemas.messages import NewMessages
from assistd.schemas.threads import CreateThread

RunTools = Annotated[list[Tool], Field(max_length=20)]
TokenLimit = Annotated[int, Field(ge=256, le=INT32_MAX)]


class Truncation(Nested):
    type: Literal["auto", "last_messages"]
    last_messages: Annotated[int, Field(ge=1, le=INT32_MAX)] | None = None


class NamedFunction(Nested):
    name: Annotated[str, Field(min_length=1)]


class NamedToolChoice(Nested):
    type: Literal["function", "code_interpreter", "file_search"]
    function: NamedFunction = OMITTED


ToolChoice = Union[Literal["none", "auto", "required"], NamedToolChoice]


class RunOptions(WithMetadata):
    """What create-run and create-thread-and-run share."""

    assistant_id: Annotated[str, Field(min_length=1)]
    model: str | None = None
    instructions: Instructions | None = None
    tools: RunTools | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    stream: bool | None = None
    max_prompt_tokens: TokenLimit | None = None
    max_completion_tokens: TokenLimit | None = None
    truncation_strategy: Truncation | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool = OMITTED
    response_format: ResponseFormat | None = None
    reasoning_effort: ReasoningEffort | None = None


class CreateRun(RunOptions):
    additional_instructions: str | None = None
    additional_messages: NewMessages | None = None


class CreateThreadAndRun(RunOptions):
    thread: CreateThread = OMITTED
    tool_resources: NewToolResources | None = None


class ModifyRun(WithMetadata):
    pass


class ToolOutput(Nested):
    tool_call_id: Annotated[str, Field(min_length=1)]
    output: str = ""


class SubmitToolOutputs(Strict):
    tool_outputs: list[ToolOutput]
    stream: bool | None = None
