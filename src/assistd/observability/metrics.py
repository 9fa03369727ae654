"""Every Prometheus metric assistd exports, in one place (README "Metrics" lists them).

Names carry their unit (``_seconds``) and counters end in ``_total``. Label values are bounded: route
templates (never raw paths), model names from the routing table, step types, tool names, outcomes.
``project`` appears only on the token counters and can be switched off
(``ASSISTD_METRICS_PROJECT_LABEL=0``: the label is then empty, which Prometheus treats as absent).

Each process exports its own series (``serve`` on ``/metrics``, ``assistd worker --metrics-port``):
Prometheus scrapes every process and sums across them; nothing is shared between processes.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    gc_collector,
    generate_latest,
    platform_collector,
    process_collector,
)
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

# No ``*_created`` series: they double what is exported and no alert or dashboard here reads them.
disable_created_metrics()
REGISTRY = CollectorRegistry(auto_describe=True)
process_collector.ProcessCollector(registry=REGISTRY)
platform_collector.PlatformCollector(registry=REGISTRY)
gc_collector.GCCollector(registry=REGISTRY)

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Settings of this process (configure()); off = no recording on the request path and no /metrics.
ENABLED = True
PROJECT_LABEL = True

_FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_MODEL = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
_RUN = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
_QUEUE = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0)

# --- HTTP ---------------------------------------------------------------------------------------------
class _HttpCollector:
    """``assistd_http_requests_total`` and ``assistd_http_request_duration_seconds``, kept as plain numbers.

    Every request passes here, the hot GETs included: prometheus_client's Counter and Histogram take a lock
    per update (~5 µs for the pair); this is one dict lookup and three additions (~1 µs). Only the event
    loop's thread records, and a scrape reads on the same loop, so nothing needs a lock.
    """

    def __init__(self) -> None:
        # key → [sum of seconds, then one count per bucket]; the request count is the buckets' total
        self.series: dict[tuple[str, str, int], list[float]] = {}

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        entry = self.series.get((route, method, status))
        if entry is None:
            entry = self.series[(route, method, status)] = [0.0] * (len(_FAST) + 2)
        entry[0] += seconds
        entry[1 + bisect_left(_FAST, seconds)] += 1

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily("assistd_http_requests", "HTTP requests answered",
                                       labels=["route", "method", "status"])
        durations: dict[tuple[str, str], list[Any]] = {}
        for (route, method, status), entry in list(self.series.items()):
            total, buckets = entry[0], [int(n) for n in entry[1:]]
            count = sum(buckets)
            requests.add_metric([route, method, str(status)], count)
            merged = durations.setdefault((route, method), [0, 0.0, [0] * (len(_FAST) + 1)])
            merged[0] += count
            merged[1] += total
            merged[2] = [a + b for a, b in zip(merged[2], buckets, strict=True)]
        yield requests
        histogram = HistogramMetricFamily(
            "assistd_http_request_duration_seconds",
            "time from the request's arrival to the end of its response (a stream's whole life)",
            labels=["route", "method"])
        for (route, method), (_count, total, buckets) in durations.items():
            cumulative, points = 0, []
            for bound, n in zip((*map(floatToGoString, _FAST), "+Inf"), buckets, strict=True):
                cumulative += n
                points.append((bound, cumulative))
            histogram.add_metric([route, method], points, total)
        yield histogram


_http = _HttpCollector()
REGISTRY.register(_http)
active_streams = Gauge("assistd_active_streams", "SSE streams open on this process", registry=REGISTRY)

# --- runs ---------------------------------------------------------------------------------------------
runs_ended = Counter("assistd_runs_total", "runs that reached a final status",
                     ["status", "model"], registry=REGISTRY)
run_queue_wait = Histogram("assistd_run_queue_wait_seconds", "run created (or put back in the queue) → "
                           "taken by a worker", ["model"], buckets=_QUEUE, registry=REGISTRY)
run_ttft = Histogram("assistd_run_time_to_first_token_seconds", "run taken by a worker → first answer "
                     "token from the model", ["model"], buckets=_MODEL, registry=REGISTRY)
run_duration = Histogram("assistd_run_duration_seconds", "run created → final status",
                         ["model", "status"], buckets=_RUN, registry=REGISTRY)
step_duration = Histogram("assistd_run_step_duration_seconds", "a run step's execution, by type and tool "
                          "(tool empty for message_creation)", ["type", "tool"], buckets=_MODEL, registry=REGISTRY)
runs_queued = Gauge("assistd_runs_queued", "runs waiting for a worker (read from the database at scrape, "
                    "cached 1 s; the same value on every process)", registry=REGISTRY)
oldest_queued = Gauge("assistd_run_oldest_queued_age_seconds", "age of the oldest queued run (0 when none)",
                      registry=REGISTRY)
lease_reclaims = Counter("assistd_run_lease_reclaims_total", "runs resumed after their worker's lease lapsed",
                         registry=REGISTRY)

# --- upstream model calls -----------------------------------------------------------------------------
upstream_duration = Histogram("assistd_upstream_request_duration_seconds", "one model call, request → "
                              "stream end (retries included)", ["upstream", "model"], buckets=_MODEL,
                              registry=REGISTRY)
upstream_errors = Counter("assistd_upstream_errors_total", "model calls that failed after any retries",
                          ["upstream", "model", "code"], registry=REGISTRY)
upstream_retries = Counter("assistd_upstream_retries_total", "model call attempts retried",
                           ["upstream", "model"], registry=REGISTRY)
prompt_tokens = Counter("assistd_prompt_tokens_total", "prompt tokens sent to models",
                        ["model", "project"], registry=REGISTRY)
completion_tokens = Counter("assistd_completion_tokens_total", "completion tokens received from models",
                            ["model", "project"], registry=REGISTRY)

# --- tools, ingestion, code_interpreter ---------------------------------------------------------------
tool_duration = Histogram("assistd_execute_tool_duration_seconds", "a server-side tool's execution",
                          ["tool", "outcome"], buckets=_MODEL, registry=REGISTRY)
ingestion_jobs = Counter("assistd_ingestion_jobs_total", "file ingestion jobs by final state",
                         ["state"], registry=REGISTRY)
chunks_embedded = Counter("assistd_ingestion_chunks_embedded_total", "chunks embedded and indexed",
                          registry=REGISTRY)
code_sessions = Gauge("assistd_code_sessions", "code_interpreter sessions alive in this process",
                      registry=REGISTRY)
code_executions = Counter("assistd_code_executions_total", "code_interpreter executions by outcome",
                          ["outcome"], registry=REGISTRY)

# --- rate limits --------------------------------------------------------------------------------------
rate_limited = Counter("assistd_rate_limited_requests_total", "requests refused with 429 by a project limit",
                       ["limit"], registry=REGISTRY)


def configure(enabled: bool, project_label: bool) -> None:
    global ENABLED, PROJECT_LABEL
    ENABLED = enabled
    PROJECT_LABEL = project_label


# The collector's own method, not a wrapper around it: every request calls it (one Python frame less).
observe_http = _http.observe


class ScrapeGauges:
    """Gauges read from the database when scraped, at most once a second per process."""

    def __init__(self, read: Callable[[], Any], max_age: float = 1.0) -> None:
        self.read = read  # async () -> None, sets the gauges
        self.max_age = max_age
        self._at = 0.0

    async def refresh(self) -> None:
        now = time.monotonic()
        if now - self._at < self.max_age:
            return
        self._at = now
        await self.read()


def exposition() -> bytes:
    return generate_latest(REGISTRY)


_MAX_MODELS = 100
_models: set[str] = set()


def model_label(name: str) -> str:
    """A model name as a label value: the first 100 distinct names as they are, then ``other`` (clients
    choose a run's model, and a label must stay bounded)."""
    if name in _models:
        return name
    if len(_models) < _MAX_MODELS:
        _models.add(name)
        return name
    return "other"
