"""What the model is shown: the run's instructions, the thread (truncated), and this run's own steps.

Token counts here are estimates (about four bytes a token): they only decide what to drop; the usage
recorded on steps is what the upstream reports.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from assistd.providers.base import ChatRequest
from assistd.services.run_objects import sum_usage
from assistd.store.tables import messages, run_steps
from assistd.tools import code_tool, file_search

# Room kept for the answer when fitting the prompt into the model's context window.
ANSWER_RESERVE = 1024
_MAX_SCAN = 2000  # messages read at most when walking back through a very long thread


def estimate_tokens(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, str):
        return len(value.encode()) // 4 + 1
    return len(orjson.dumps(value)) // 4 + 1


def message_to_chat(message: dict[str, Any]) -> dict[str, Any]:
    """A stored thread message as a chat-completions message."""
    parts: list[dict[str, Any]] = []
    for part in message["content"]:
        if part["type"] == "text":
            parts.append({"type": "text", "text": part["text"]["value"]})
        elif part["type"] == "image_url":
            parts.append({"type": "image_url", "image_url": dict(part["image_url"])})
        elif part["type"] == "image_file":
            # Uploaded images reach the model once files are stored (file_search/files issue).
            parts.append({"type": "text", "text": f"[image file {part['image_file']['file_id']}]"})
        elif part["type"] == "refusal":
            parts.append({"type": "text", "text": part.get("refusal", "")})
    if all(p["type"] == "text" for p in parts):
        return {"role": message["role"], "content": "".join(p["text"] for p in parts)}
    return {"role": message["role"], "content": parts}


async def thread_history(
    conn: AsyncConnection, thread_id: str, run_id: str, *, last_messages: int | None, token_budget: int
) -> list[dict[str, Any]]:
    """Thread messages (not this run's) that fit ``token_budget``, oldest first.

    ``last_messages``: the newest n at most. Otherwise (``auto``) messages in the middle of the thread are
    dropped, as the API describes it: the thread's first message is kept (when it takes at most a quarter
    of the budget), then as many of the newest as fit. The newest message is always kept, even over
    budget, so the caller can tell "too long" apart."""
    scope = (messages.c.thread_id == thread_id, (messages.c.run_id != run_id) | messages.c.run_id.is_(None))
    first = None
    if last_messages is None:
        first = (await conn.execute(
            select(messages.c.id, messages.c.data).where(*scope)
            .order_by(messages.c.created_at.asc(), messages.c.seq.asc()).limit(1))).first()
    limit = min(last_messages or _MAX_SCAN, _MAX_SCAN)
    stmt = (
        select(messages.c.id, messages.c.data)
        .where(*scope)
        .order_by(messages.c.created_at.desc(), messages.c.seq.desc())
        .limit(limit)
    )
    newest = ((message_id, orjson.loads(raw)) for message_id, raw in await conn.execute(stmt))
    return _fit_history(None if first is None else (first.id, orjson.loads(first.data)), newest,
                        token_budget=token_budget)


def history_of(thread: list[dict[str, Any]], *, last_messages: int | None, token_budget: int
               ) -> list[dict[str, Any]]:
    """``thread_history`` of a thread whose messages are at hand (all of them, oldest first: one created
    with the run), picked the same way."""
    first = (thread[0]["id"], thread[0]) if thread and last_messages is None else None
    newest = ((m["id"], m) for m in reversed(thread[-min(last_messages or _MAX_SCAN, _MAX_SCAN):]))
    return _fit_history(first, newest, token_budget=token_budget)


def _fit_history(first: tuple[str, dict[str, Any]] | None, newest: Iterable[tuple[str, dict[str, Any]]], *,
                 token_budget: int) -> list[dict[str, Any]]:
    """``first``: the thread's first message (None: not kept apart); ``newest``: messages newest first."""
    head: tuple[str, dict[str, Any]] | None = None
    reserved = 0
    if first is not None:
        chat = message_to_chat(first[1])
        cost = estimate_tokens(chat["content"]) + 4
        if cost <= token_budget // 4:
            head, reserved = (first[0], chat), cost
    picked: list[dict[str, Any]] = []
    used = reserved
    for message_id, message in newest:
        if head is not None and message_id == head[0]:
            break  # reached the start: nothing had to be dropped
        chat = message_to_chat(message)
        cost = estimate_tokens(chat["content"]) + 4
        if picked and used + cost > token_budget:
            break
        picked.append(chat)
        used += cost
    if head is not None:
        picked.append(head[1])
    picked.reverse()
    return picked


async def run_transcript(conn: AsyncConnection, run_id: str) -> list[dict[str, Any]]:
    """This run's completed work so far, as chat messages: its answers and its tool calls with outputs."""
    steps = [orjson.loads(raw) for (raw,) in await conn.execute(
        select(run_steps.c.data).where(run_steps.c.run_id == run_id, run_steps.c.status == "completed")
        .order_by(run_steps.c.created_at, run_steps.c.seq))]
    message_ids = [s["step_details"]["message_creation"]["message_id"] for s in steps
                   if s["type"] == "message_creation"]
    by_id: dict[str, dict[str, Any]] = {}
    if message_ids:
        for (raw,) in await conn.execute(select(messages.c.data).where(messages.c.id.in_(message_ids))):
            m = orjson.loads(raw)
            by_id[m["id"]] = m
    out: list[dict[str, Any]] = []
    for step in steps:
        if step["type"] == "message_creation":
            message = by_id.get(step["step_details"]["message_creation"]["message_id"])
            if message is not None:
                out.append(message_to_chat(message))
            continue
        calls = [c for c in step["step_details"]["tool_calls"]
                 if c["type"] in ("function", "file_search", "code_interpreter")]
        if not calls:
            continue
        out.append({"role": "assistant", "content": None, "tool_calls": [
            file_search.chat_call(c) if c["type"] == "file_search" else
            code_tool.chat_call(c) if c["type"] == "code_interpreter" else
            {"id": c["id"], "type": "function",
             "function": {"name": c["function"]["name"], "arguments": c["function"]["arguments"]}}
            for c in calls]})
        for c in calls:
            output = (file_search.output_text(c) if c["type"] == "file_search" else
                      code_tool.output_text(c) if c["type"] == "code_interpreter" else c["function"]["output"])
            out.append({"role": "tool", "tool_call_id": c["id"], "content": output or ""})
    return out


def chat_tools(run: dict[str, Any], *, search: str | None = None, code: str | None = None
               ) -> list[dict[str, Any]]:
    """The run's tools offered to the model: its functions, the file search and the code interpreter
    (``search``/``code``: the name each is offered under, None when it is not offered — see
    tools/file_search.py, tools/code_tool.py)."""
    tools = [{"type": "function", "function": t["function"]} for t in run["tools"] if t["type"] == "function"]
    if search is not None:
        tools.append(file_search.chat_function(search))
    if code is not None:
        tools.append(code_tool.chat_function(code))
    return tools


def chat_tool_choice(run: dict[str, Any], tools: list[dict[str, Any]], *, search: str | None = None,
                     searched: bool = False, code: str | None = None, coded: bool = False) -> Any:
    """``tool_choice`` for the upstream. A forced file_search (code_interpreter) forces only the run's first
    search (execution), else the model could never answer; a forced tool that is not offered becomes
    ``auto``."""
    choice = run.get("tool_choice") or "auto"
    if not tools:
        return None
    if isinstance(choice, dict):
        if choice.get("type") == "function":
            return {"type": "function", "function": {"name": choice["function"]["name"]}}
        if choice.get("type") == "file_search" and search is not None and not searched:
            return {"type": "function", "function": {"name": search}}
        if choice.get("type") == "code_interpreter" and code is not None and not coded:
            return {"type": "function", "function": {"name": code}}
        return "auto"
    return choice


async def build_request(
    conn: AsyncConnection | None, run: dict[str, Any], steps: list[dict[str, Any]], *, window: int,
    search: str | None, searched: bool, code: str | None, coded: bool, thread: list[dict[str, Any]] | None = None,
) -> tuple[ChatRequest, str | None]:
    """The next model call of ``run`` (whose ``steps`` so far are given), and the token limit it would
    break (``max_prompt_tokens`` / ``max_completion_tokens``) or None. ``search``/``code``: the names the
    run's server tools are offered under (None: not offered); ``searched``/``coded``: already used.
    ``thread``: the thread's messages when they are at hand (a thread created with the run), else they are
    read through ``conn``, which may be None when there is nothing to read (that, and no step done yet)."""
    totals = sum_usage(steps)
    budget = window - ANSWER_RESERVE
    if run.get("max_prompt_tokens"):
        budget = min(budget, run["max_prompt_tokens"] - totals["prompt_tokens"])
    system = [{"role": "system", "content": run["instructions"]}] if run.get("instructions") else []
    transcript: list[dict[str, Any]] = []
    if any(step["status"] == "completed" for step in steps):  # else there is nothing to read back
        assert conn is not None
        transcript = await run_transcript(conn, run["id"])
    fixed = estimate_tokens(system) + estimate_tokens(transcript)
    truncation = run.get("truncation_strategy") or {"type": "auto"}
    last_n = truncation.get("last_messages") if truncation.get("type") == "last_messages" else None
    room = max(budget - fixed, 0)
    if thread is not None:
        history = history_of(thread, last_messages=last_n, token_budget=room)
    else:
        assert conn is not None
        history = await thread_history(conn, run["thread_id"], run["id"], last_messages=last_n, token_budget=room)
    limit_hit = None
    if run.get("max_prompt_tokens") and fixed + estimate_tokens(history[-1:]) > budget:
        limit_hit = "max_prompt_tokens"
    max_tokens = None
    if run.get("max_completion_tokens"):
        max_tokens = run["max_completion_tokens"] - totals["completion_tokens"]
        if max_tokens <= 0:
            limit_hit = limit_hit or "max_completion_tokens"
    tools = chat_tools(run, search=search, code=code)
    response_format = run.get("response_format")
    request = ChatRequest(
        model=run["model"],
        messages=system + history + transcript,
        tools=tools or None,
        tool_choice=chat_tool_choice(run, tools, search=search, searched=searched, code=code, coded=coded),
        parallel_tool_calls=run.get("parallel_tool_calls") if tools else None,
        temperature=run.get("temperature"),
        top_p=run.get("top_p"),
        max_tokens=max_tokens,
        response_format=response_format if isinstance(response_format, dict) else None,
        reasoning_effort=run.get("reasoning_effort"),
    )
    return request, limit_hit
