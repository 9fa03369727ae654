"""The file_search part of a run's execution: planning the turn's searches, running them against the
run's vector stores, and recording them as one completed ``tool_calls`` step.

A mixin of :class:`assistd.runner.execute.RunExecutor`; it shares the executor's state.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncConnection

from assistd.observability import runs as observe_runs
from assistd.runner import context
from assistd.services import citations
from assistd.services.outbox import Outbox
from assistd.services.run_objects import (
    new_step,
    set_step_status,
    tool_call_delta,
)
from assistd.services.runs import insert_step
from assistd.services.step_render import shown
from assistd.tools import file_search

if TYPE_CHECKING:
    pass

log = logging.getLogger("assistd.runner")


class SearchSteps:
    def _plan_search(self, run: dict[str, Any], steps: list[dict[str, Any]]) -> None:
        """Whether this turn offers file_search, and what the run's earlier searches left to cite."""
        done = file_search.entries_of(steps)
        self._sources = citations.sources_of(steps)
        sources = [(c.get(file_search.PRIVATE) or {}).get("source", -1) for c in done]
        self._next_source = max([len(done) - 1, *sources]) + 1 if done else 0
        offer = (self.retrieval is not None and file_search.active(run)
                 and len(done) < file_search.MAX_SEARCHES)
        self._search_name = file_search.function_name(run) if offer else None

    async def _run_searches(self) -> list[dict[str, Any]]:
        """Execute this turn's file_search calls; their entries, in call order."""
        from assistd.services import vector_search  # imports the retrieval library: only when searching

        run = self.run
        settings = file_search.settings_of(run) or file_search.Settings()
        store_ids = file_search.store_ids(run.get("tool_resources"))
        wait = file_search.THREAD_STORE_WAIT_SECONDS
        if run.get("expires_at") is not None:
            wait = min(wait, max(0.0, run["expires_at"] - time.time()))
        await file_search.wait_for_thread_store(self.db, self.bus, self.project_id, run["thread_id"], store_ids,
                                                time.monotonic() + wait)
        # The results must leave room for the rest of the prompt: half the context window at most.
        room = (self.router.context_window(run["model"]) - context.ANSWER_RESERVE) // 2
        per_call = max(256, room // max(1, len(self.turn.search_calls)))
        entries = []
        for k, call in enumerate(self.turn.search_calls.values()):
            query = file_search.query_of(call["arguments"])
            hits = []
            if query:
                assert self.retrieval is not None
                with observe_runs.tool_call("file_search", call["id"]):
                    hits = await vector_search.search(
                        self.db, self.retrieval.index, self.retrieval.embedder(), self.project_id, store_ids, query,
                        max_num_results=settings.max_num_results, ranking_options=settings.ranking_options)
            entries.append(file_search.entry(call["id"], self._search_name or file_search.FUNCTION_NAME,
                                             call["arguments"], self._next_source + k, settings,
                                             file_search.trim_to_budget(hits, per_call)))
        return entries

    async def _record_searches(self, conn: AsyncConnection, run: dict[str, Any], entries: list[dict[str, Any]],
                               turn_usage: dict[str, int], outbox: Outbox) -> None:
        """The searches' step, written completed; its events as a stream shows a step's life."""
        step = new_step(run, "tool_calls", {"type": "tool_calls", "tool_calls": []})
        outbox.add("thread.run.step.created", step)
        outbox.add("thread.run.step.in_progress", step)
        step["step_details"]["tool_calls"] = entries
        set_step_status(step, "completed", usage=turn_usage)
        await insert_step(conn, self.project_id, step)
        visible = shown(step)
        for i, entry in enumerate(visible["step_details"]["tool_calls"]):
            outbox.add("thread.run.step.delta", tool_call_delta(step["id"], i, entry))
        outbox.add("thread.run.step.completed", visible)
