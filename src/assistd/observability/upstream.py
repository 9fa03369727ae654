"""Model calls (providers/openai_compat.py): latency, errors and retries by upstream and model."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

from assistd.observability import metrics, tracing


def upstream_label(base_url: str) -> str:
    """host:port of an upstream, never its path, query or credentials."""
    parts = urlsplit(base_url)
    return parts.hostname + (f":{parts.port}" if parts.port else "") if parts.hostname else "unknown"


class ModelCall:
    """One model call, retries included: ``retried()`` per retry, then ``done()``, ``failed(code)`` or, when
    the caller stops reading (a run cancelled mid-answer), ``cut()``."""

    __slots__ = ("upstream", "model", "started", "span", "ended")

    def __init__(self, upstream: str, model: str) -> None:
        self.upstream = upstream
        self.model = metrics.model_label(model)
        self.started = time.perf_counter()
        self.span: Any = None
        self.ended = False
        if tracing.TRACER is not None:  # a child of the run's invoke_agent span (current in the run's task)
            host, _, port = upstream.partition(":")
            self.span = tracing.start_span(f"chat {model}", kind="CLIENT", attributes={
                "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": model,
                "server.address": host, **({"server.port": int(port)} if port.isdigit() else {})})

    def retried(self) -> None:
        if metrics.ENABLED:
            metrics.upstream_retries.labels(self.upstream, self.model).inc()

    def done(self, prompt_tokens: int = 0, completion_tokens: int = 0) -> None:
        self.ended = True
        if metrics.ENABLED:
            metrics.upstream_duration.labels(self.upstream, self.model).observe(time.perf_counter() - self.started)
        if self.span is not None:
            self._usage(prompt_tokens, completion_tokens)
            tracing.end(self.span)

    def cut(self, prompt_tokens: int, completion_tokens: int) -> None:
        """The caller stopped reading the answer (cancelled): the span ends as an error ``cancelled``, with the
        usage known so far (the upstream's, or estimated from what streamed). Not an upstream error."""
        self.ended = True
        if self.span is not None:
            self._usage(prompt_tokens, completion_tokens)
            tracing.end(self.span, error="cancelled")

    def _usage(self, prompt_tokens: int, completion_tokens: int) -> None:
        self.span.set_attribute("gen_ai.usage.input_tokens", prompt_tokens)
        self.span.set_attribute("gen_ai.usage.output_tokens", completion_tokens)

    def failed(self, code: str) -> None:
        self.ended = True
        if metrics.ENABLED:
            metrics.upstream_duration.labels(self.upstream, self.model).observe(time.perf_counter() - self.started)
            metrics.upstream_errors.labels(self.upstream, self.model, code).inc()
        if self.span is not None:
            tracing.end(self.span, error=code)
