"""Model calls (providers/openai_compat.py): latency, errors and retries by upstream and model."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

from assistd.observability import metrics


def upstream_label(base_url: str) -> str:
    """host:port of an upstream, never its path, query or credentials."""
    parts = urlsplit(base_url)
    return parts.hostname + (f":{parts.port}" if parts.port else "") if parts.hostname else "unknown"


class ModelCall:
    """One model call, retries included: ``retried()`` per retry, then ``done()`` or ``failed(code)``."""

    __slots__ = ("upstream", "model", "started")

    def __init__(self, upstream: str, model: str) -> None:
        self.upstream = upstream
        self.model = metrics.model_label(model)
        self.started = time.perf_counter()

    def retried(self) -> None:
        if metrics.ENABLED:
            metrics.upstream_retries.labels(self.upstream, self.model).inc()

    def done(self) -> None:
        if metrics.ENABLED:
            metrics.upstream_duration.labels(self.upstream, self.model).observe(time.perf_counter() - self.started)

    def failed(self, code: str) -> None:
        if metrics.ENABLED:
            metrics.upstream_duration.labels(self.upstream, self.model).observe(time.perf_counter() - self.started)
            metrics.upstream_errors.labels(self.upstream, self.model, code).inc()
