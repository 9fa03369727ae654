"""Run steps as the API reads them: list (paginated) and retrieve, scoped to their thread and run."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from assistd.errors import InvalidRequest, NotFound
from assistd.pagination import Page, PageParams
from assistd.store import objects
from assistd.store.tables import run_steps, runs

FILE_SEARCH_CONTENT = "step_details.tool_calls[*].file_search.results[*].content"
INCLUDABLE = (FILE_SEARCH_CONTENT,)


def check_include(include: list[str] | None) -> list[str]:
    for i, value in enumerate(include or []):
        if value not in INCLUDABLE:
            raise InvalidRequest(
                f"Invalid value: '{value}'. Supported values are: '{FILE_SEARCH_CONTENT}'.", param=f"include[{i}]")
    return list(include or [])


async def _require_run(conn: AsyncConnection, project_id: str, thread_id: str, run_id: str) -> None:
    if await objects.get_raw(conn, runs, run_id, project_id=project_id, thread_id=thread_id) is None:
        raise NotFound("run", run_id)


async def get_raw(
    conn: AsyncConnection, project_id: str, thread_id: str, run_id: str, step_id: str
) -> str:
    # One indexed lookup on the hot path; the parent checks run only to word a miss precisely.
    raw = await objects.get_raw(conn, run_steps, step_id, project_id=project_id, thread_id=thread_id,
                                run_id=run_id)
    if raw is None:
        await _require_run(conn, project_id, thread_id, run_id)
        raise NotFound("run step", step_id)
    return raw


async def list_page(
    conn: AsyncConnection, project_id: str, thread_id: str, run_id: str, page: PageParams
) -> Page:
    await _require_run(conn, project_id, thread_id, run_id)
    return await objects.list_page(conn, run_steps, page, project_id=project_id, thread_id=thread_id,
                                   run_id=run_id)
