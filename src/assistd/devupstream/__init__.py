"""Scripted OpenAI-compatible upstream for tests and the quick start.

Chat replies are scripted by directives in the last user message (see
:mod:`assistd.devupstream.script` for the language); embeddings are deterministic.
"""

from .server import build_app, serve

__all__ = ["build_app", "serve"]
