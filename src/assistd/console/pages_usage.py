"""Usage: the project's tokens by model and day, and its runs by final status (usage_daily: services/usage.py)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from assistd.console.web import Member, page, render
from assistd.errors import InvalidRequest
from assistd.services import usage

router = APIRouter()

PERIODS = (1, 7, 30, 90)


@router.get("/usage")
@page
async def usage_page(request: Request, who: Member) -> Response:
    raw = request.query_params.get("days") or "30"
    if raw not in {str(p) for p in PERIODS}:
        raise InvalidRequest(f"Invalid 'days': expected one of {', '.join(map(str, PERIODS))}.", param="days")
    days = int(raw)
    report = await usage.report(request.app.state.db, who.project_id, days)
    peak = max((r["total"] for r in report.rows), default=0) or 1
    status_peak = max(report.by_status.values(), default=0) or 1
    return render(request, who, "usage.html", report=report, days=days, periods=PERIODS, peak=peak,
                  status_peak=status_peak, nav="usage")
