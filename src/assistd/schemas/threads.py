"""Request bodies of /v1/threads."""

from __future__ import annotations

from assistd.schemas.common import OMITTED, NewToolResources, ToolResources, WithMetadata
from assistd.schemas.messages import NewMessages


class CreateThread(WithMetadata):
    messages: NewMessages = OMITTED
    tool_resources: NewToolResources | None = None


class ModifyThread(WithMetadata):
    tool_resources: ToolResources | None = None
