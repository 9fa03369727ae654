"""The baseline: a bare Starlette app (no FastAPI, no auth, no database) answering one GET route with fixed
JSON bytes — the ceiling uvicorn + Starlette allow.

The bytes come from the file ``BENCH_BARE_JSON_FILE`` names (the benchmark writes there what assistd
returned); the route is ``BENCH_BARE_ROUTE`` (default ``/v1/assistants/{assistant_id}``), so the app has
exactly one route whatever path is measured. Serve with ``harness.uvicorn_app("bench.bare_app:app", ...)``:
same loop/http settings as assistd.
"""

from __future__ import annotations

import os
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

BODY = Path(os.environ["BENCH_BARE_JSON_FILE"]).read_bytes()
ROUTE = os.environ.get("BENCH_BARE_ROUTE", "/v1/assistants/{assistant_id}")


async def get_object(request: Request) -> Response:
    return Response(BODY, media_type="application/json")


app = Starlette(routes=[Route(ROUTE, get_object, methods=["GET"])])
