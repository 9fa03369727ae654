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
    """One model call, retries included: ``retried()`` per retry, then ``done()`` or ``failed(code)``."""

    __slots__ = ("upstream", "model", "started", "span")

    def __init__(self, upstream: str, model: str) -> None:
        self.upstream = upstream
        self.model = metrics.model_label(model)
        self.started = time.perf_counter()
        self.span: Any = None
        if tracing.TRACER is not None:  # a child of the run's invoke_agent span (current in the run's task)
            host, _, port = upstream.partition(":")
            self.span = tracing.start_span(f"chat {model}", kind="CLIENT", attributes={
                "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": model,
                "server.address": host, **({"server.port": int(port)} if port.isdigit() else {})})

    def retried(self) -> None:
        if metrics.ENABLED:
            metrics.upstream_retries.labels(self.upstream, self.model).inc()

    def done(self, prompt_tokens: int = 0, completion_tokens: int = 0) -> None:
        if metrics.ENABLED:
            metrics.upstream_duration.labels(self.upstream, self.model).observe(time.perf_counter() - self.started)
        if self.span is not None:
            self.span.set_attribute("gen_ai.usage.input_tokens", prompt_tokens)
            self.span.set_attribute("gen_ai.usage.output_tokens", completion_tokens)
            tracing.end(self.span)

    def failed(self, code: str) -> None:
        if metrics.ENABLED:
            metrics.upstream_duration.labels(self.upstream, self.model).observe(time.perf_counter() - self.started)
            metrics.upstream_errors.labels(self.upstream, self.model, code).inc()
        if self.span is not None:
            tracing.end(self.span, error=code)
