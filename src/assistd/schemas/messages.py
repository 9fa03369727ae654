"""Request bodies of /v1/threads/{thread_id}/messages."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from assistd.schemas.common import AttachmentTool, Nested, WithMetadata


class ImageFile(Nested):
    file_id: Annotated[str, Field(min_length=1)]
    detail: Literal["auto", "low", "high"] | None = None


class ImageFilePart(Nested):
    type: Literal["image_file"]
    image_file: ImageFile


class ImageUrl(Nested):
    url: Annotated[str, Field(min_length=1)]
    detail: Literal["auto", "low", "high"] | None = None


class ImageUrlPart(Nested):
    type: Literal["image_url"]
    image_url: ImageUrl


class TextPart(Nested):
    type: Literal["text"]
    text: str


ContentPart = Annotated[ImageFilePart | ImageUrlPart | TextPart, Field(discriminator="type")]


class Attachment(Nested):
    file_id: Annotated[str, Field(min_length=1)]
    tools: list[AttachmentTool] = []


class CreateMessage(WithMetadata):
    role: Literal["user", "assistant"]
    content: str | Annotated[list[ContentPart], Field(min_length=1)]
    attachments: list[Attachment] | None = None


class ModifyMessage(WithMetadata):
    pass
