"""Request bodies of /v1/threads/{thread_id}/messages."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

from assistd.schemas.common import OMITTED, AttachmentTool, Nested, WithMetadata


class ImageFile(Nested):
    file_id: Annotated[str, Field(min_length=1)]
    detail: Literal["auto", "low", "high"] = OMITTED


class ImageFilePart(Nested):
    type: Literal["image_file"]
    image_file: ImageFile


# Image urls are passed to the upstream model, which may fetch them: only web urls, and inline images as
# base64 data urls of the spec's image types (chat completions upstreams take these; nothing is fetched).
_WEB_URL = re.compile(r"https?://[^\s/?#]+\S*", re.IGNORECASE)
_DATA_URL = re.compile(r"data:image/(png|jpeg|jpg|gif|webp);base64,[A-Za-z0-9+/=\s]+", re.IGNORECASE)


def check_image_url(url: str) -> str:
    if not (_WEB_URL.fullmatch(url) or _DATA_URL.fullmatch(url)):
        raise PydanticCustomError(
            "openai", "Invalid 'url': expected an http or https url, or a data url of a base64 png, jpeg, gif "
            "or webp image.", {"param": "url"})
    return url


class ImageUrl(Nested):
    url: Annotated[str, Field(min_length=1), AfterValidator(check_image_url)]
    detail: Literal["auto", "low", "high"] = OMITTED


class ImageUrlPart(Nested):
    type: Literal["image_url"]
    image_url: ImageUrl


# The hosted API's bounds: a message's text is at most 256,000 characters, and a thread is created with at
# most 32 messages (additional_messages alike). Without them one request could store 100,000 messages in
# one write transaction, holding every other write in the server for tens of seconds.
MAX_TEXT = 256_000
MAX_MESSAGES = 32
Text = Annotated[str, Field(max_length=MAX_TEXT)]


class TextPart(Nested):
    type: Literal["text"]
    text: Text


ContentPart = Annotated[ImageFilePart | ImageUrlPart | TextPart, Field(discriminator="type")]


class Attachment(Nested):
    file_id: Annotated[str, Field(min_length=1)]
    tools: list[AttachmentTool] = []


class CreateMessage(WithMetadata):
    role: Literal["user", "assistant"]
    content: Text | Annotated[list[ContentPart], Field(min_length=1)]
    attachments: list[Attachment] | None = None


NewMessages = Annotated[list[CreateMessage], Field(max_length=MAX_MESSAGES)]


class ModifyMessage(WithMetadata):
    pass
