"""Model upstreams: the chat-completions providers the run engine streams from, and their router."""

from .base import (
    ChatEvent,
    ChatProvider,
    ChatRequest,
    Finish,
    ProviderError,
    ProviderErrorCode,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from .openai_compat import OpenAICompatibleProvider
from .router import DEFAULT_CONTEXT_WINDOW, ModelRouter, Route, Upstream, load_models_file

__all__ = [
    "DEFAULT_CONTEXT_WINDOW",
    "ChatEvent",
    "ChatProvider",
    "ChatRequest",
    "Finish",
    "ModelRouter",
    "OpenAICompatibleProvider",
    "ProviderError",
    "ProviderErrorCode",
    "Route",
    "TextDelta",
    "ToolCallDelta",
    "Upstream",
    "Usage",
    "load_models_file",
]
