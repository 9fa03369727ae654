"""Usage: the project's tokens by model and day, and its runs by status (services/usage_report.py)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from starlette.responses import Response

from assistd.console.web import Member, page, render
from assistd.errors import InvalidRequest
from assistd.services.usage_report import DAY, usage_report

router = APIRouter()

PERIODS = (1, 7, 30, 90)


@router.get("/usage")
@page
async def usage_page(request: Request, who: Member) -> Response:
    raw = request.query_params.get("days") or "30"
    if raw not in {str(p) for p in PERIODS}:
        raise InvalidRequest(f"Invalid 'days': expected one of {', '.join(map(str, PERIODS))}.", param="days")
    days = int(raw)
    since = int(time.time()) - days * DAY
    async with request.app.state.db.read() as conn:
        report = await usage_report(conn, who.project_id, since)
    peak = max((r["total"] for r in report.rows), default=0) or 1
    status_peak = max(report.by_status.values(), default=0) or 1
    return render(request, who, "usage.html", report=report, days=days, periods=PERIODS, peak=peak,
                  status_peak=status_peak, nav="usage")
