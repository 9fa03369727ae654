"""The ASGI application: routers under /v1, the error envelope, start-up (migrate, keys), /healthz, /readyz,
/metrics."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from starlette.responses import Response

from assistd import console, runtime
from assistd.api import assistants, error_handlers, files, messages, runs, threads, vector_stores
from assistd.api.authenticate import Authenticate
from assistd.api.hot import HotReads
from assistd.api.rate_limit import RateLimit
from assistd.api.request_body import RequestBody
from assistd.api.responses import json_response
from assistd.config import Settings, get_settings, upstream_unconfigured
from assistd.devupstream.embedded import EmbeddedUpstream
from assistd.errors import error_body
from assistd.events.base import Subscription
from assistd.observability import health, metrics, scrape, tracing
from assistd.observability.http import Observe
from assistd.services.auth import Authenticator
from assistd.services.steps import CACHE_CHANNEL, THREAD_DELETED, TerminalStepCache

log = logging.getLogger("assistd")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tracing.setup()  # a no-op unless OTEL_EXPORTER_OTLP_ENDPOINT is set
        embedded = None
        upstream_settings = settings
        if upstream_unconfigured(settings):  # `make run` alone reaches a completed run (devupstream/embedded.py)
            embedded = EmbeddedUpstream()
            url = await embedded.start()
            log.warning("no model upstream configured (ASSISTD_LLM_BASE_URL, ASSISTD_MODELS_FILE): serving the "
                        "scripted dev model in-process at %s; replies are scripted, not a real model", url)
            # Everything that calls the upstream (runs, upstream:MODEL embeddings) calls the scripted model.
            upstream_settings = settings.model_copy(update={"llm_base_url": url})
        rt = await runtime.start(upstream_settings, workers=settings.workers)
        auth = Authenticator(rt.db, settings.api_keys, dev_mode=settings.dev_mode)
        await auth.start()  # logs the key mode (keys, keyless dev mode, or closed)
        step_cache = TerminalStepCache()
        # Subscribed before serving: no invalidation published from now on is missed.
        cache_watch = asyncio.create_task(_watch_cache(await rt.bus.subscribe(CACHE_CHANNEL), step_cache))
        app.state.runtime = rt
        app.state.scripted_model = embedded is not None
        app.state.settings = settings
        app.state.router = rt.router
        app.state.db = rt.db
        app.state.blobs = rt.blobs
        app.state.retrieval = rt.retrieval
        app.state.code_interpreter = rt.code
        app.state.auth = auth
        app.state.bus = rt.bus
        app.state.pool = rt.pool
        app.state.launcher = rt.launcher
        app.state.step_cache = step_cache
        app.state.queue_gauges = scrape.queue_gauges(rt.db)
        app.state.rate_limits = rt.rate_limits
        app.state.ready = True
        try:
            yield
        finally:
            app.state.ready = False
            cache_watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await cache_watch
            await rt.aclose()
            if embedded is not None:
                await embedded.aclose()
            tracing.shutdown()

    app = FastAPI(
        # FastAPI's own OpenTelemetry spans and metrics need a configured provider, which only tracing.setup()
        # makes here (when OTEL_* asks for traces). Without one, its per-request check that there is none
        # cost ~4 µs of every request (docs/benchmarks.md): switched off then, left as it is otherwise.
        telemetry=None if tracing.wanted() else {"tracing": False, "metrics": False, "logs": False},
        title="assistd",
        summary="A self-hostable, drop-in server for the OpenAI Assistants API v2",
        version="0.1.0",
        lifespan=lifespan,
        docs_url="/docs",
        openapi_url="/openapi.json",
        redoc_url=None,
    )
    app.state.ready = False
    app.state.draining = False  # set by cli.py on SIGTERM: /readyz turns 503 before the server stops
    metrics.configure(settings.metrics, settings.metrics_project_label)
    error_handlers.install(app)
    # runs first: POST /threads/runs must not be taken for POST /threads/{thread_id}.
    for module in (runs, assistants, threads, messages, files, vector_stores):
        app.include_router(module.router, prefix="/v1")

    @app.get("/healthz", include_in_schema=False)
    async def healthz(request: Request) -> Response:
        if request.app.state.ready and await request.app.state.db.ping():
            return json_response({"status": "ok"})
        return json_response(error_body("not ready", "server_error"), 503)

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> Response:
        ok, checks = await health.readiness(request.app.state)
        return json_response({"status": "ready" if ok else "not ready", "checks": checks}, 200 if ok else 503)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics(request: Request) -> Response:
        if not metrics.ENABLED:
            return json_response(error_body("metrics are switched off (ASSISTD_METRICS=0)",
                                            "invalid_request_error"), 404)
        body = await scrape.exposition(getattr(request.app.state, "queue_gauges", None))
        return Response(body, media_type=metrics.CONTENT_TYPE)

    console.install(app, settings)
    # The last added is the outermost: hot GETs (api/hot.py), then the key check, then the body is read.
    # Uploads relayed by the console (console/relay.py) are bounded by the files route, as /v1/files ones.
    app.add_middleware(RequestBody, max_bytes=settings.max_body_bytes, timeout_seconds=settings.body_timeout_seconds,
                       exempt_prefixes=("/v1/files", "/console/api/v1/files"))
    app.add_middleware(Authenticate, state=app.state)
    app.add_middleware(HotReads, state=app.state)
    app.add_middleware(RateLimit, state=app.state)  # outside the hot GETs: they are limited too
    # Outermost: request id, access line and HTTP metrics for every answer (observability/http.py).
    app.add_middleware(Observe, access=settings.access_log)
    return app


async def _watch_cache(sub: Subscription, cache: TerminalStepCache) -> None:
    """Cache invalidations published by any process (a thread deleted there) reach this one's cache."""
    try:
        while True:
            event = await sub.get()
            if event is not None and event.name == THREAD_DELETED:
                cache.forget_thread(event.data["thread_id"])
    finally:
        await sub.close()
