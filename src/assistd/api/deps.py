"""Request dependencies: the caller's project (auth), the database, list parameters."""

from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import Depends, Query, Request

from assistd.api.authenticate import PROJECT_KEY, origin_of
from assistd.pagination import PageParams, parse_page_params
from assistd.store.db import Database


async def project_id(request: Request) -> str:
    found = request.scope.get(PROJECT_KEY)  # api/authenticate.py checked the key before the body was read
    if found is not None:
        return found
    return await request.app.state.auth.project_for(request.headers.get("authorization"),
                                                    partial(origin_of, request.scope))


# Dependencies are async on purpose: FastAPI runs plain `def` ones in a thread pool, a hop per request.
async def database(request: Request) -> Database:
    return request.app.state.db


async def page_params(
    limit: Annotated[str | None, Query(description="1 to 100, default 20")] = None,
    order: Annotated[str | None, Query(description="asc or desc (default)")] = None,
    after: Annotated[str | None, Query(description="object id to start after")] = None,
    before: Annotated[str | None, Query(description="object id to end before")] = None,
) -> PageParams:
    return parse_page_params(limit, order, after, before)


Project = Annotated[str, Depends(project_id)]
DB = Annotated[Database, Depends(database)]
Paging = Annotated[PageParams, Depends(page_params)]
