"""The console: a web UI for one project's assistants, threads, runs and storage, at ``/console``.

Server-rendered Jinja2 pages (every page a URL) with a little plain JavaScript; it reads through
``services/`` with the signed-in session's project and writes through the ``/v1`` API itself (relay.py),
so its behaviour and error messages are the API's. See docs/console.md.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.routing import Mount

from assistd.config import Settings
from assistd.console import (
    file_routes,
    pages_assistants,
    pages_playground,
    pages_storage,
    pages_threads,
    pages_usage,
    signin,
)
from assistd.console.headers import ConsoleHeaders
from assistd.console.relay import ApiRelay
from assistd.console.sessions import SessionSigner, load_secret
from assistd.console.web import ConsoleState, make_templates, static_versions


def install(app: FastAPI, settings: Settings) -> None:
    """Mount the console on ``app`` (called by ``create_app``)."""
    versions = static_versions()
    app.state.console = ConsoleState(SessionSigner(load_secret(settings.data_dir)), make_templates(versions),
                                     versions)
    app.router.routes.append(Mount("/console/api", app=ApiRelay()))
    for module in (signin, file_routes, pages_threads, pages_assistants, pages_playground, pages_storage, pages_usage):
        app.include_router(module.router, prefix="/console", include_in_schema=False)
    app.add_middleware(ConsoleHeaders)
