"""Run steps as the API reads them: list (paginated) and retrieve, scoped to their thread and run.

Terminal steps (completed, cancelled, failed, expired) never change again: nothing rewrites a step once it
left ``in_progress`` (resumed runs adopt only in-progress ones). Their stored JSON is kept in a bounded
in-process cache (``TerminalStepCache``) so polling clients re-reading them cost no database read. The only
way such a step goes away is its thread's deletion: ``forget_thread`` drops the thread's steps in this
process at once, and the API publishes a ``cache`` event so every other process does the same (see
``api/threads.py``); entries also lapse after ``TTL_SECONDS``, bounding what a lost notification could
leave behind.
"""

from __future__ import annotations

import time

from sqlalchemy.ext.asyncio import AsyncConnection

from assistd.errors import InvalidRequest, NotFound
from assistd.events import channels
from assistd.pagination import Page, PageParams
from assistd.services.run_objects import STEP_TERMINAL
from assistd.store import objects
from assistd.store.db import Database
from assistd.store.tables import run_steps, runs

FILE_SEARCH_CONTENT = "step_details.tool_calls[*].file_search.results[*].content"
INCLUDABLE = (FILE_SEARCH_CONTENT,)
CACHE_CHANNEL = channels.CACHE  # cache invalidations between processes
THREAD_DELETED = channels.THREAD_DELETED


def check_include(include: list[str] | None) -> list[str]:
    for i, value in enumerate(include or []):
        if value not in INCLUDABLE:
            raise InvalidRequest(
                f"Invalid value: '{value}'. Supported values are: '{FILE_SEARCH_CONTENT}'.", param=f"include[{i}]")
    return list(include or [])


class TerminalStepCache:
    """Step id → (project, thread, run, JSON bytes) of terminal steps; a hit must match all three scopes.

    ``epoch`` guards against a read racing a deletion: a reader notes it before reading the database and
    ``put`` drops the entry if any thread was forgotten meanwhile (the row it read may be gone by now).
    """

    MAX_ENTRIES = 4096  # ~1 KB each: a few MB at most
    TTL_SECONDS = 5.0

    def __init__(self, max_entries: int = MAX_ENTRIES, ttl_seconds: float = TTL_SECONDS) -> None:
        self.max_entries = max_entries
        self.ttl_seconds = ttl_seconds
        self.epoch = 0
        self._entries: dict[str, tuple[str, str, str, bytes, float]] = {}
        self._by_thread: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, project_id: str, thread_id: str, run_id: str, step_id: str) -> bytes | None:
        entry = self._entries.get(step_id)
        if entry is None or entry[0] != project_id or entry[1] != thread_id or entry[2] != run_id:
            return None
        if entry[4] < time.monotonic():
            self._drop(step_id)
            return None
        return entry[3]

    def put(self, epoch: int, project_id: str, thread_id: str, run_id: str, step_id: str, body: bytes) -> None:
        if epoch != self.epoch:
            return
        if step_id not in self._entries and len(self._entries) >= self.max_entries:
            self._drop(next(iter(self._entries)))  # the oldest
        self._entries[step_id] = (project_id, thread_id, run_id, body, time.monotonic() + self.ttl_seconds)
        self._by_thread.setdefault(thread_id, set()).add(step_id)

    def forget_thread(self, thread_id: str) -> None:
        self.epoch += 1
        for step_id in self._by_thread.pop(thread_id, ()):
            self._entries.pop(step_id, None)

    def clear(self) -> None:
        self.epoch += 1
        self._entries.clear()
        self._by_thread.clear()

    def _drop(self, step_id: str) -> None:
        entry = self._entries.pop(step_id, None)
        if entry is not None:
            ids = self._by_thread.get(entry[1])
            if ids is not None:
                ids.discard(step_id)
                if not ids:
                    del self._by_thread[entry[1]]


async def find_raw(
    db: Database, cache: TerminalStepCache | None, project_id: str, thread_id: str, run_id: str, step_id: str
) -> bytes | None:
    """The step's JSON if it exists in this project, thread and run (from the cache when terminal), or None.
    The hot path of ``GET …/steps/{step_id}``; a miss is worded by ``get_raw``."""
    if cache is not None:
        cached = cache.get(project_id, thread_id, run_id, step_id)
        if cached is not None:
            return cached
        epoch = cache.epoch
    row = await objects.read_row(db, run_steps, step_id, ("data", "status"), project_id=project_id,
                                 thread_id=thread_id, run_id=run_id)
    if row is None:
        return None
    body: bytes = row[0].encode()
    if cache is not None and row[1] in STEP_TERMINAL:
        cache.put(epoch, project_id, thread_id, run_id, step_id, body)
    return body


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
