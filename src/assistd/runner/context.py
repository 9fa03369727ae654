"""What the model is shown: the run's instructions, the thread (truncated), and this run's own steps.

Token counts decide what to drop to fit the context window or ``max_prompt_tokens``: OpenAI's cl100k_base
(retrieval/tokens.py), plus 4 a message — exact for OpenAI's older models, close for the rest. They are
only computed when something may have to go: a text never has more tokens than UTF-8 bytes, so a prompt
whose bytes fit the budget is sent whole without tokenizing it (and the encoding, ~40 MB, is never loaded
by a server whose prompts are short). The usage recorded on steps is what the upstream reports.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from assistd.providers.base import ChatRequest
from assistd.runner.server_tools import Offer, Replay
from assistd.services.run_objects import sum_usage
from assistd.store import messages as stored_messages
from assistd.store import steps as stored_steps

# Room kept for the answer when fitting the prompt into the model's context window.
ANSWER_RESERVE = 1024
_MAX_SCAN = 2000  # messages read at most when walking back through a very long thread


MESSAGE_TOKENS = 4  # what a chat message costs beyond its content (role, separators)

Count = Callable[[Any], int]  # tokens of a message's content (a string, or parts as JSON)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def byte_bound(value: Any) -> int:
    """An upper bound of ``exact_tokens``: no token is shorter than a byte."""
    if value is None:
        return 0
    return len(value.encode()) if isinstance(value, str) else len(orjson.dumps(value))


def message_tokens(chat: dict[str, Any], count: Count) -> int:
    """A chat message's tokens: its content, its tool calls (as JSON), and the message's own."""
    return count(chat.get("content")) + count(chat.get("tool_calls")) + MESSAGE_TOKENS


def exact_tokens(value: Any) -> int:
    from assistd.retrieval import tokens  # the encoding loads on first use (~0.1 s)

    return 0 if value is None else tokens.count(_text(value))


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


Candidate = tuple[str, dict[str, Any]]  # a thread message's id and its chat form


async def thread_candidates(
    conn: AsyncConnection, thread_id: str, run_id: str, *, last_messages: int | None
) -> tuple[Candidate | None, list[Candidate]]:
    """What ``fit_history`` picks from: the thread's first message (None with ``last_messages``), and its
    newest (up to ``last_messages``, or a scan limit), newest first — this run's own messages left out."""
    first = None
    if last_messages is None:
        oldest = await stored_messages.thread_messages(conn, thread_id, other_than_run=run_id, newest_first=False,
                                                       limit=1)
        first = None if not oldest else (oldest[0][0], message_to_chat(oldest[0][1]))
    newest = await stored_messages.thread_messages(conn, thread_id, other_than_run=run_id, newest_first=True,
                                                   limit=min(last_messages or _MAX_SCAN, _MAX_SCAN))
    return first, [(message_id, message_to_chat(message)) for message_id, message in newest]


def candidates_of(thread: list[dict[str, Any]], *, last_messages: int | None
                  ) -> tuple[Candidate | None, list[Candidate]]:
    """``thread_candidates`` of a thread whose messages are at hand (all of them, oldest first: one created
    with the run)."""
    first = (thread[0]["id"], message_to_chat(thread[0])) if thread and last_messages is None else None
    newest = [(m["id"], message_to_chat(m)) for m in reversed(thread[-min(last_messages or _MAX_SCAN, _MAX_SCAN):])]
    return first, newest


def fit_history(first: Candidate | None, newest: Iterable[Candidate], *, token_budget: int, count: Count
                ) -> list[dict[str, Any]]:
    """Thread messages that fit ``token_budget``, oldest first.

    With ``first`` (``auto`` truncation) messages in the middle of the thread are dropped, as the API
    describes it: the thread's first message is kept (when it takes at most a quarter of the budget), then
    as many of the newest as fit. The newest message is always kept, even over budget, so the caller can
    tell "too long" apart."""
    head: Candidate | None = None
    reserved = 0
    if first is not None:
        cost = message_tokens(first[1], count)
        if cost <= token_budget // 4:
            head, reserved = first, cost
    picked: list[dict[str, Any]] = []
    used = reserved
    for message_id, chat in newest:
        if head is not None and message_id == head[0]:
            break  # reached the start: nothing had to be dropped
        cost = message_tokens(chat, count)
        if picked and used + cost > token_budget:
            break
        picked.append(chat)
        used += cost
    if head is not None:
        picked.append(head[1])
    picked.reverse()
    return picked


async def run_transcript(conn: AsyncConnection, run_id: str, replays: Mapping[str, Replay]) -> list[dict[str, Any]]:
    """This run's completed work so far, as chat messages: its answers and its tool calls with outputs
    (``replays``: how each server tool's stored calls read back, by kind)."""
    steps = await stored_steps.completed_steps(conn, run_id)
    by_id = await stored_messages.messages_by_id(conn, [s["step_details"]["message_creation"]["message_id"]
                                                        for s in steps if s["type"] == "message_creation"])
    out: list[dict[str, Any]] = []
    for step in steps:
        if step["type"] == "message_creation":
            message = by_id.get(step["step_details"]["message_creation"]["message_id"])
            if message is not None:
                out.append(message_to_chat(message))
            continue
        replayed = [_replay(c, replays) for c in step["step_details"]["tool_calls"]
                    if c["type"] == "function" or c["type"] in replays]
        if not replayed:
            continue
        out.append({"role": "assistant", "content": None, "tool_calls": [call for call, _ in replayed]})
        out.extend({"role": "tool", "tool_call_id": call["id"], "content": output or ""} for call, output in replayed)
    return out


def _replay(call: dict[str, Any], replays: Mapping[str, Replay]) -> tuple[dict[str, Any], str | None]:
    """A stored tool call as the model made it, and the output it read."""
    if call["type"] in replays:
        return replays[call["type"]](call)
    function = call["function"]
    return ({"id": call["id"], "type": "function",
             "function": {"name": function["name"], "arguments": function["arguments"]}}, function["output"])


def chat_tools(run: dict[str, Any], offers: Sequence[Offer] = ()) -> list[dict[str, Any]]:
    """The run's tools offered to the model: its functions, then the server tools ``offers`` (see
    runner/server_tools.py)."""
    tools = [{"type": "function", "function": t["function"]} for t in run["tools"] if t["type"] == "function"]
    tools.extend(offer.function for offer in offers)
    return tools


def chat_tool_choice(run: dict[str, Any], tools: list[dict[str, Any]], offers: Sequence[Offer] = ()) -> Any:
    """``tool_choice`` for the upstream. A forced server tool (file_search, code_interpreter) forces only its
    first call in the run (``Offer.forcible``), else the model could never answer; a forced tool that is
    not offered becomes ``auto``."""
    choice = run.get("tool_choice") or "auto"
    if not tools:
        return None
    if isinstance(choice, dict):
        if choice.get("type") == "function":
            return {"type": "function", "function": {"name": choice["function"]["name"]}}
        for offer in offers:
            if choice.get("type") == offer.kind and offer.forcible:
                return {"type": "function", "function": {"name": offer.name}}
        return "auto"
    return choice


async def build_request(
    conn: AsyncConnection | None, run: dict[str, Any], steps: list[dict[str, Any]], *, window: int,
    offers: Sequence[Offer] = (), replays: Mapping[str, Replay] | None = None,
    thread: list[dict[str, Any]] | None = None,
) -> tuple[ChatRequest, str | None]:
    """The next model call of ``run`` (whose ``steps`` so far are given), and the token limit it would
    break (``max_prompt_tokens`` / ``max_completion_tokens``) or None. ``offers``: the server tools offered
    on it; ``replays``: how each server tool's earlier calls read back (runner/tool_set.py).
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
        transcript = await run_transcript(conn, run["id"], replays or {})
    truncation = run.get("truncation_strategy") or {"type": "auto"}
    last_n = truncation.get("last_messages") if truncation.get("type") == "last_messages" else None
    if thread is not None:
        first, newest = candidates_of(thread, last_messages=last_n)
    else:
        assert conn is not None
        first, newest = await thread_candidates(conn, run["thread_id"], run["id"], last_messages=last_n)
    # Every candidate fits even at a token a byte: nothing to drop, nothing to tokenize.
    bound = sum(message_tokens(m, byte_bound) for m in system + transcript) + sum(
        message_tokens(chat, byte_bound) for _, chat in [*newest, *([first] if first else [])])
    count: Count = byte_bound if bound <= budget else exact_tokens
    fixed = sum(message_tokens(m, count) for m in system + transcript)
    history = fit_history(first, newest, token_budget=max(budget - fixed, 0), count=count)
    limit_hit = None
    if run.get("max_prompt_tokens") and fixed + sum(message_tokens(m, count) for m in history[-1:]) > budget:
        limit_hit = "max_prompt_tokens"
    max_tokens = None
    if run.get("max_completion_tokens"):
        max_tokens = run["max_completion_tokens"] - totals["completion_tokens"]
        if max_tokens <= 0:
            limit_hit = limit_hit or "max_completion_tokens"
    tools = chat_tools(run, offers)
    response_format = run.get("response_format")
    request = ChatRequest(
        model=run["model"],
        messages=system + history + transcript,
        tools=tools or None,
        tool_choice=chat_tool_choice(run, tools, offers),
        parallel_tool_calls=run.get("parallel_tool_calls") if tools else None,
        temperature=run.get("temperature"),
        top_p=run.get("top_p"),
        max_tokens=max_tokens,
        response_format=response_format if isinstance(response_format, dict) else None,
        reasoning_effort=run.get("reasoning_effort"),
    )
    return request, limit_hit
