"""Query-string paging for console pages: the API's cursor parameters, with the console's default size."""

from __future__ import annotations

from urllib.parse import urlencode

import orjson
from starlette.requests import Request

from assistd.pagination import Page, PageParams, parse_page_params


def page_items(page: Page) -> list[dict]:
    """A page's objects, decoded from the stored JSON the services hand out."""
    return [orjson.loads(raw) for raw in page.items]


def page_params(request: Request, default_limit: int = 20, order: str = "desc") -> PageParams:
    q = request.query_params
    return parse_page_params(q.get("limit") or str(default_limit), q.get("order") or order, q.get("after"),
                             q.get("before"))


def with_query(request: Request, **changes: str | None) -> str:
    """This page's URL with some query parameters replaced (None drops one)."""
    params = dict(request.query_params)
    for key, value in changes.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = value
    return request.url.path + ("?" + urlencode(params) if params else "")


def nav_links(request: Request, params: PageParams, page: Page) -> tuple[str | None, str | None]:
    """(link to the next page in list order, link to the previous one) for a cursor page."""
    if not page.items:
        return None, None
    following = page.has_more if not params.before else True
    preceding = bool(params.after) or (bool(params.before) and page.has_more)
    return (with_query(request, after=page.last_id, before=None) if following else None,
            with_query(request, before=page.first_id, after=None) if preceding else None)
