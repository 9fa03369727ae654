"""file_search in a run (a ``ServerTool``, runner/server_tools.py): offered while the run has stores to
search and searches left, its calls collected as the model streams them, searched once the model's call
is complete, and recorded as one completed ``tool_calls`` step; the answers that follow cite the results."""

from __future__ import annotations

import logging
import time
from typing import Any

from assistd import ids
from assistd.errors import APIError
from assistd.observability import runs as observe_runs
from assistd.providers.base import ToolCallDelta
from assistd.runner import context
from assistd.runner.run_scope import RunScope
from assistd.runner.server_tools import Offer, Recorded, Recording, ToolEngines, ToolFailed
from assistd.services import citations
from assistd.services.run_objects import new_step, set_step_status, tool_call_delta
from assistd.services.runs import insert_step
from assistd.services.step_render import shown
from assistd.tools import file_search

log = logging.getLogger("assistd.runner")


class FileSearchSteps:
    kind = "file_search"

    def __init__(self, scope: RunScope, engines: ToolEngines) -> None:
        self.scope = scope
        self.retrieval = engines.retrieval
        self.sources: citations.Sources = {}  # the run's citable results so far
        self.next_source = 0  # the source number of this call's first search
        self.name: str | None = None  # what it is offered under on this call (None: not offered)
        self.calls: dict[int, dict[str, Any]] = {}  # this call's searches, by upstream index
        self.entries: list[dict[str, Any]] = []  # ... once executed, in call order

    def plan(self, run: dict[str, Any], steps: list[dict[str, Any]]) -> Offer | None:
        done = file_search.entries_of(steps)
        self.sources = citations.sources_of(steps)
        numbers = [(c.get(file_search.PRIVATE) or {}).get("source", -1) for c in done]
        self.next_source = max([len(done) - 1, *numbers]) + 1 if done else 0
        self.calls, self.entries = {}, []
        offered = self.retrieval is not None and file_search.active(run) and len(done) < file_search.MAX_SEARCHES
        self.name = file_search.function_name(run) if offered else None
        if self.name is None:
            return None
        return Offer(self.kind, self.name, file_search.chat_function(self.name), forcible=self.next_source == 0)

    def replay(self, entry: dict[str, Any]) -> tuple[dict[str, Any], str]:
        return file_search.chat_call(entry), file_search.output_text(entry)

    async def on_delta(self, delta: ToolCallDelta, *, taken: bool) -> bool:
        call = self.calls.get(delta.index)
        if call is None:
            if taken or self.name is None or delta.name != self.name:
                return False
            call = self.calls[delta.index] = {"id": delta.id or ids.new_id("tool_call"), "arguments": ""}
        call["arguments"] += delta.arguments
        return True

    def called(self) -> bool:
        return bool(self.entries)

    def open_step(self) -> None:
        return None  # its step is written whole, once the searches are done

    async def execute(self) -> None:
        if not self.calls:
            return
        try:
            self.entries = await self._search()
        except APIError as exc:  # a vector store deleted or expired since the run was created
            raise ToolFailed(f"The file_search tool failed: {exc.message}"[:1000]) from exc
        except Exception as exc:
            log.exception("run %s: file_search failed", self.scope.run_id)
            raise ToolFailed(f"The file_search tool failed: {type(exc).__name__}: {exc}"[:1000]) from exc

    async def _search(self) -> list[dict[str, Any]]:
        """This call's searches; their entries, in call order."""
        from assistd.services import vector_search  # imports the retrieval library: only when searching

        scope, run = self.scope, self.scope.run
        settings = file_search.settings_of(run) or file_search.Settings()
        store_ids = file_search.store_ids(run.get("tool_resources"))
        wait = file_search.THREAD_STORE_WAIT_SECONDS
        if run.get("expires_at") is not None:
            wait = min(wait, max(0.0, run["expires_at"] - time.time()))
        await file_search.wait_for_thread_store(scope.db, scope.bus, scope.project_id, run["thread_id"], store_ids,
                                                time.monotonic() + wait)
        # The results must leave room for the rest of the prompt: half the context window at most.
        room = (scope.router.context_window(run["model"]) - context.ANSWER_RESERVE) // 2
        per_call = max(256, room // max(1, len(self.calls)))
        entries = []
        for k, call in enumerate(self.calls.values()):
            query = file_search.query_of(call["arguments"])
            hits: list[Any] = []
            if query:
                assert self.retrieval is not None
                with observe_runs.tool_call("file_search", call["id"]):
                    hits = await vector_search.search(
                        scope.db, self.retrieval.index, self.retrieval.embedder(), scope.project_id, store_ids,
                        query, max_num_results=settings.max_num_results, ranking_options=settings.ranking_options)
            entries.append(file_search.entry(call["id"], self.name or file_search.FUNCTION_NAME,
                                             call["arguments"], self.next_source + k, settings,
                                             file_search.trim_to_budget(hits, per_call)))
        return entries

    async def record(self, rec: Recording) -> Recorded:
        """The searches' step, written completed; its events as a stream shows a step's life. Not when the
        run is being cancelled or the call went over max_prompt_tokens: the model will not read them."""
        if not self.entries or rec.run["status"] == "cancelling" or rec.over_prompt:
            return Recorded()
        step = new_step(rec.run, "tool_calls", {"type": "tool_calls", "tool_calls": []})
        rec.outbox.add("thread.run.step.created", step)
        rec.outbox.add("thread.run.step.in_progress", step)
        step["step_details"]["tool_calls"] = self.entries
        set_step_status(step, "completed", usage=rec.take_usage())
        await insert_step(rec.conn, self.scope.project_id, step)
        visible = shown(step)
        for i, entry in enumerate(visible["step_details"]["tool_calls"]):
            rec.outbox.add("thread.run.step.delta", tool_call_delta(step["id"], i, entry))
        rec.outbox.add("thread.run.step.completed", visible)
        return Recorded(executed=True)

    def take_answer_parts(self) -> list[dict[str, Any]]:
        return []

    def annotate(self, text: str) -> list[dict[str, Any]]:
        return citations.annotate(text, self.sources)
