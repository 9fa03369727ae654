"""The file_search tool in runs: offered to the model as a function, executed by the server.

A run whose tools include ``{"type": "file_search"}`` and which has vector stores (the assistant's and the
thread's ``tool_resources.file_search.vector_store_ids``, both searched) offers the model a
chat-completions function named ``file_search`` (``file_search_files`` if a client function already has that
name) with one string parameter, ``query``. When the model calls it the runner searches the stores itself
and records a ``tool_calls`` step whose entry is the spec's file_search tool call::

    {"id": "call_…", "type": "file_search",
     "file_search": {"ranking_options": {"ranker": "auto", "score_threshold": 0.0},
                     "results": [{"file_id", "file_name", "score", "content": [{"type": "text", "text"}]}]},
     "_assistd": {"name": "file_search", "arguments": "{\\"query\\": …}", "source": 0}}

``content`` and ``_assistd`` are stored but not shown (services/step_render.py): the API returns content
only for ``include[]=step_details.tool_calls[*].file_search.results[*].content``; ``_assistd`` keeps what the
model's next call needs (its call as it made it) and the call's source number.

The results go back to the model as the tool's output, each under a source marker
``【{source}:{result}†{file_name}】`` — ``source`` numbers the run's file_search calls from 0 — and the
markers the model copies into its answer become ``file_citation`` annotations (services/citations.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from assistd.events.base import EventBus
from assistd.services.outbox import Outbox
from assistd.store import objects
from assistd.store import vector_store_files as stored_store_files
from assistd.store.db import Database
from assistd.store.tables import threads
from assistd.tools.server_functions import free_name, one_string_function

FUNCTION_NAME = "file_search"
FALLBACK_NAME = "file_search_files"  # when a client function is already called file_search
DEFAULT_MAX_RESULTS = 20
# A run's searches at most; past this the tool is no longer offered and the model has to answer.
MAX_SEARCHES = 10
# Files still being ingested into the THREAD's vector store are waited for this long before a search (the
# hosted API's fallback for stores made by thread helpers and attachments); never for the assistant's.
THREAD_STORE_WAIT_SECONDS = 60.0
_WAIT_POLL_SECONDS = 0.25
PRIVATE = "_assistd"  # the key of the stored, never shown, part of an entry

DESCRIPTION = (
    "Search the files the user uploaded (their documents, notes and data) and return the passages most "
    "relevant to the query. Use it whenever the answer may be in the user's files. Each result is headed "
    "by a source marker like 【0:1†report.pdf】: when you use a result, cite it by copying its marker, "
    "exactly, right after the statement it supports."
)


@dataclass(frozen=True, slots=True)
class Settings:
    """The tool's settings (``tools[*].file_search``), defaults filled in."""

    max_num_results: int = DEFAULT_MAX_RESULTS
    ranker: str = "auto"
    score_threshold: float = 0.0

    @property
    def ranking_options(self) -> dict[str, Any]:
        return {"ranker": self.ranker, "score_threshold": self.score_threshold}


def settings_of(run: dict[str, Any]) -> Settings | None:
    """The run's file_search settings, or None when its tools have no file_search."""
    for tool in run.get("tools") or []:
        if tool.get("type") == "file_search":
            options = tool.get("file_search") or {}
            ranking = options.get("ranking_options") or {}
            return Settings(
                max_num_results=int(options.get("max_num_results") or DEFAULT_MAX_RESULTS),
                ranker=ranking.get("ranker") or "auto",
                score_threshold=float(ranking.get("score_threshold") or 0.0),
            )
    return None


def store_ids(tool_resources: dict[str, Any] | None) -> list[str]:
    return list(((tool_resources or {}).get("file_search") or {}).get("vector_store_ids") or [])


def active(run: dict[str, Any]) -> bool:
    """Whether the model is offered the search: the file_search tool, and vector stores to search."""
    return settings_of(run) is not None and bool(store_ids(run.get("tool_resources")))


def function_name(run: dict[str, Any]) -> str:
    return free_name(run, FUNCTION_NAME, FALLBACK_NAME)


def chat_function(name: str) -> dict[str, Any]:
    return one_string_function(name, DESCRIPTION, "query", "What to look for in the files.")


def query_of(arguments: str) -> str:
    """The query the model asked for; a model that sent something else than ``{"query": …}`` gets its
    arguments searched as text rather than an error."""
    try:
        args = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        return arguments.strip()
    if isinstance(args, dict):
        query = args.get("query")
        if isinstance(query, str):
            return query.strip()
        if isinstance(query, list):
            return " ".join(str(q) for q in query).strip()
        return " ".join(str(v) for v in args.values() if isinstance(v, str)).strip()
    return str(args).strip()


# --- entries -----------------------------------------------------------------------------------------------

def entries_of(steps: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The file_search entries of a run's steps, in step order."""
    out: list[dict[str, Any]] = []
    for step in steps:
        if step.get("type") == "tool_calls":
            out.extend(c for c in step["step_details"]["tool_calls"] if c.get("type") == "file_search")
    return out


def clean_name(file_name: str) -> str:
    """A file name as it appears inside a source marker (no marker delimiters, one line)."""
    cleaned = "".join(" " if ch in "【】†\n\r" else ch for ch in file_name).strip()
    return cleaned or "source"


def marker(source: int, result: int, file_name: str) -> str:
    return f"【{source}:{result}†{clean_name(file_name)}】"


def entry(call_id: str, name: str, arguments: str, source: int, settings: Settings,
          hits: Sequence[Any]) -> dict[str, Any]:
    """The stored tool call for one search (``hits``: SearchHit-like, best first)."""
    return {
        "id": call_id,
        "type": "file_search",
        "file_search": {
            "ranking_options": settings.ranking_options,
            "results": [{"file_id": h.file_id, "file_name": h.file_name, "score": min(1.0, max(0.0, float(h.score))),
                         "content": [{"type": "text", "text": h.text}]} for h in hits],
        },
        PRIVATE: {"name": name, "arguments": arguments, "source": source},
    }


def output_text(call: dict[str, Any]) -> str:
    """What the model reads as the call's output: every result under its source marker."""
    private = call.get(PRIVATE) or {}
    source = private.get("source", 0)
    results = call["file_search"].get("results") or []
    if not results:
        return "No results: the files contain nothing matching this query."
    parts = []
    for i, result in enumerate(results):
        text = "".join(c.get("text", "") for c in result.get("content") or [])
        parts.append(f"{marker(source, i, result['file_name'])}\n{text}")
    return "\n\n".join(parts)


def chat_call(call: dict[str, Any]) -> dict[str, Any]:
    """The entry as the assistant tool call the model made."""
    private = call.get(PRIVATE) or {}
    return {"id": call["id"], "type": "function",
            "function": {"name": private.get("name", FUNCTION_NAME), "arguments": private.get("arguments", "{}")}}


def trim_to_budget(hits: Sequence[Any], max_tokens: int) -> list[Any]:
    """The best hits whose text fits ``max_tokens`` (each its chunk's tokens, counted at indexing, and 16
    for its source marker); the first always."""
    kept: list[Any] = []
    used = 0
    for hit in hits:
        cost = (hit.tokens or len(hit.text.encode()) // 4) + 16
        if kept and used + cost > max_tokens:
            break
        kept.append(hit)
        used += cost
    return kept


# --- executing ---------------------------------------------------------------------------------------------

async def wait_for_thread_store(db: Database, bus: EventBus, project_id: str, thread_id: str,
                                run_store_ids: Sequence[str], deadline: float) -> None:
    """Wait (until ``deadline``, a ``time.monotonic()``) while the thread's vector store still ingests files."""
    nudged = False
    while True:
        async with db.read() as conn:
            thread = await objects.get_object(conn, threads, thread_id, project_id=project_id)
            wanted = [vs for vs in store_ids(thread.get("tool_resources")) if vs in run_store_ids] \
                if thread is not None else []
            busy = await stored_store_files.any_in_progress(conn, project_id, wanted)
        if not busy or time.monotonic() >= deadline:
            return
        if not nudged:  # files attached with the run's own request: their jobs are committed by now
            outbox = Outbox()
            outbox.wake_jobs()
            await outbox.flush(bus)
            nudged = True
        await asyncio.sleep(min(_WAIT_POLL_SECONDS, max(0.0, deadline - time.monotonic())))
