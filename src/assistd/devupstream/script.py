r"""Directive language of the scripted dev upstream (pure logic, no web imports).

Directives are bracketed tokens anywhere in the text of the LAST message with role "user"
(string content, or the concatenated ``text`` parts of an array); names are case-insensitive.
Text outside directives is ignored except in echo/json mode, where it is "the user text"
(stripped). Content precedence: tool round > tool results > reply > tokens > json > echo.

  (no content directive)     reply ``echo: <user text>``
  [reply: some text]         reply exactly ``some text`` (stripped). Ends at the matching ``]``:
                             nested ``[...]`` pairs are kept, ``\]`` / ``\[`` escape a bracket.
                             Several replies are concatenated.
  [tool: NAME {json args}]   call function NAME; the JSON object (optional, default ``{}``) is
                             re-serialised compactly as ``arguments``. Several -> parallel calls,
                             finish_reason ``tool_calls``, ids ``call_`` + 24 alphanumerics. Sent
                             even if ``tools`` lacks NAME. A ``[reply:]`` alongside is the content.
  (tool results present)     once a ``tool`` message follows the last user message, reply
                             ``tool results: `` + the tool messages' contents joined by ``; ``
  [cite]                     ...then reply ``cited: `` + each source marker (``【…】``) found in
                             the tool messages, in order, once each, joined by `` `` (``cited:``
                             alone when there is none): tests file_search citations
  [tool-again: N]            ...unless fewer than N (default 2) assistant tool_calls messages
                             follow the last user message: then call the tools again
  [delay: 1.5]               sleep before responding (stream: after headers, before chunk 1)
  [chunk-delay: 0.2]         sleep between streamed chunks
  [error: 500]               answer with that HTTP status (400-599) in an OpenAI error envelope
                             (429 rate_limit_error/rate_limit_exceeded, 5xx server_error, 400
                             invalid_request_error)
  [error-once: 500]          like [error], but only for the FIRST request whose last-user text is
                             exactly this text; later identical requests succeed
  [stream-error]             streaming only: send two chunks, then cut the connection
  [malformed]                streaming only: the second chunk is not JSON (the rest follow as usual)
  [length]                   keep the reply but report finish_reason ``length``
  [tokens: 500]              reply text is ``tok`` repeated 500 times, space separated
  [json]                     reply ``{"echo": "<user text>"}``; also implied by a request
                             ``response_format`` of type json_object / json_schema
  [usage: prompt=N completion=M]  force the reported usage (either part may be omitted)

Tokens are whitespace-separated words. Prompt: words of every message + 1 per message
(tool-call names and arguments included). Completion: text words + per tool call 1 + the words
of its arguments JSON. If ``max_completion_tokens``/``max_tokens`` is smaller, the text is cut
to that many words, tool calls that no longer fit are dropped, and finish_reason is ``length``.
Malformed directives or requests raise :class:`BadRequest` (HTTP 400).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import string
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

_NAMES = (
    "reply",
    "tool-again",
    "tool",
    "chunk-delay",
    "delay",
    "error-once",
    "error",
    "stream-error",
    "malformed",
    "length",
    "tokens",
    "json",
    "usage",
    "cite",
)
# A directive opens with "[name:" or is the bare "[name]"; other brackets are plain text.
_OPEN = re.compile(r"\[\s*(" + "|".join(map(re.escape, _NAMES)) + r")\s*([:\]])", re.IGNORECASE)
_FUNC_NAME = re.compile(r"\s*([A-Za-z0-9_-]{1,64})\s*")
_USAGE_PART = re.compile(r"(prompt|completion)\s*=\s*(\d+)", re.IGNORECASE)
_WORD_PIECE = re.compile(r"\s*\S+")
_FLAGS = {"stream-error": "stream_error", "malformed": "malformed", "length": "length", "json": "json_mode",
          "cite": "cite"}
_SOURCE_MARKER = re.compile(r"【[^】]*】")
_DECODER = json.JSONDecoder()
_ALNUM = string.ascii_letters + string.digits


class BadRequest(Exception):
    """The request (or a directive in it) is malformed; maps to an HTTP 400."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # compact JSON object text


@dataclass
class Script:
    """The directives found in one user text."""

    plain: str = ""
    reply: str | None = None
    tools: list[tuple[str, str]] = field(default_factory=list)
    tool_rounds: int = 0  # 0: no [tool-again]; results end the tool phase after one round
    delay: float = 0.0
    chunk_delay: float = 0.0
    error: int | None = None
    error_once: int | None = None
    stream_error: bool = False
    malformed: bool = False
    length: bool = False
    tokens: int | None = None
    json_mode: bool = False
    cite: bool = False
    usage: dict[str, int] = field(default_factory=dict)


@dataclass
class Reply:
    """What the server should send back for one chat request."""

    text: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    delay: float = 0.0
    chunk_delay: float = 0.0
    error_status: int | None = None
    stream_error: bool = False
    malformed: bool = False


class OnceRegistry:
    """Remembers which texts already failed once; bounded so a long-lived server can't grow."""

    def __init__(self, limit: int = 10_000) -> None:
        self._seen: OrderedDict[bytes, None] = OrderedDict()
        self._limit = limit

    def first(self, text: str) -> bool:
        key = hashlib.sha256(text.encode()).digest()
        if key in self._seen:
            return False
        self._seen[key] = None
        if len(self._seen) > self._limit:
            self._seen.popitem(last=False)
        return True


def content_text(content: Any) -> str:
    """Text of a message ``content``: a string, or the concatenated text parts of an array."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def count_words(text: str) -> int:
    return len(text.split())


def parse_script(text: str) -> Script:
    """Split ``text`` into directives and plain text."""
    script, plain, pos = Script(), [], 0
    while m := _OPEN.search(text, pos):
        plain.append(text[pos : m.start()])
        name = m.group(1).lower()
        if name == "tool" and m.group(2) == ":":
            tool_name, arguments, pos = _parse_tool(text, m.end())
            script.tools.append((tool_name, arguments))
        elif m.group(2) == "]":
            _apply(script, name, None)
            pos = m.end()
        else:
            value, pos = _scan_value(text, m.end(), name)
            _apply(script, name, value)
    plain.append(text[pos:])
    script.plain = "".join(plain).strip()
    return script


def _scan_value(text: str, start: int, name: str) -> tuple[str, int]:
    """Read up to the ``]`` that closes the directive, honouring nesting and ``\\]``/``\\[``."""
    out: list[str] = []
    depth, i = 0, start
    while i < len(text):
        ch = text[i]
        if ch == "\\" and text[i + 1 : i + 2] in ("[", "]"):
            out.append(text[i + 1])
            i += 2
            continue
        if ch == "]" and depth == 0:
            return "".join(out).strip(), i + 1
        depth += (ch == "[") - (ch == "]")
        out.append(ch)
        i += 1
    raise BadRequest(f"unterminated [{name}: directive (missing ']')", "messages")


def _parse_tool(text: str, start: int) -> tuple[str, str, int]:
    """Parse ``NAME {json}]``; JSON is decoded properly so brackets inside strings are fine."""
    m = _FUNC_NAME.match(text, start)
    if not m:
        raise BadRequest("[tool: directive needs a function name matching [A-Za-z0-9_-]{1,64}", "messages")
    name, i = m.group(1), m.end()
    args: Any = {}
    if text[i : i + 1] != "]":
        try:
            args, i = _DECODER.raw_decode(text, i)
        except json.JSONDecodeError as exc:
            raise BadRequest(f"bad JSON arguments for tool {name!r}: {exc.msg} (char {exc.pos})", "messages") from None
        if not isinstance(args, dict):
            raise BadRequest(f"arguments for tool {name!r} must be a JSON object", "messages")
        while text[i : i + 1].isspace():
            i += 1
        if text[i : i + 1] != "]":
            raise BadRequest(f"expected ']' after the JSON arguments of tool {name!r}", "messages")
    return name, json.dumps(args, separators=(",", ":"), ensure_ascii=False), i + 1


def _number(name: str, value: str | None, kind: type, low: float, high: float) -> Any:
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise BadRequest(f"[{name}: ...] needs a number, got {value!r}", "messages") from None
    if not low <= number <= high:
        raise BadRequest(f"[{name}: {value}] is out of range {low}..{high}", "messages")
    return number


def _apply(script: Script, name: str, value: str | None) -> None:
    """Record one non-tool directive on ``script``."""
    if name == "reply":
        script.reply = (script.reply or "") + (value or "")
    elif name == "tool-again":
        script.tool_rounds = 2 if value is None else _number(name, value, int, 1, 100)
    elif name in ("delay", "chunk-delay"):
        setattr(script, name.replace("-", "_"), _number(name, value, float, 0, 600))
    elif name in ("error", "error-once"):
        setattr(script, name.replace("-", "_"), _number(name, value, int, 400, 599))
    elif name == "tokens":
        script.tokens = _number(name, value, int, 0, 100_000)
    elif name == "usage":
        parts = _USAGE_PART.findall(value or "")
        if not parts or _USAGE_PART.sub("", value or "").strip(" ,"):
            raise BadRequest(f"[usage: ...] expects 'prompt=N completion=M', got {value!r}", "messages")
        script.usage = {key.lower(): int(n) for key, n in parts}
    elif name == "tool":  # a bare "[tool]"
        raise BadRequest("[tool: NAME {args}] needs a function name", "messages")
    else:
        setattr(script, _FLAGS[name], True)


def _message_tokens(message: Mapping[str, Any]) -> int:
    tokens = 1 + count_words(content_text(message.get("content")))
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            tokens += count_words(str(function.get("name", ""))) + count_words(str(function.get("arguments", "")))
    return tokens


def _validate(body: Any) -> list[dict[str, Any]]:
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    if not isinstance(body.get("model"), str):
        raise BadRequest("you must provide a model parameter", "model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise BadRequest("'messages' must be a non-empty array of message objects", "messages")
    for key in ("max_tokens", "max_completion_tokens"):
        value = body.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise BadRequest(f"'{key}' must be a positive integer", key)
    return messages


def _new_call(name: str, arguments: str) -> ToolCall:
    return ToolCall("call_" + "".join(secrets.choice(_ALNUM) for _ in range(24)), name, arguments)


def _content(body: Mapping[str, Any], script: Script, after_user: Sequence[dict[str, Any]]) -> Reply:
    """Choose what the reply says (before token limits and usage)."""
    tool_results = [content_text(m.get("content")) for m in after_user if m.get("role") == "tool"]
    rounds = sum(1 for m in after_user if m.get("role") == "assistant" and m.get("tool_calls"))
    if script.tools and (not tool_results or rounds < script.tool_rounds):
        calls = [_new_call(name, args) for name, args in script.tools]
        return Reply(text=script.reply, tool_calls=calls, finish_reason="tool_calls")
    if tool_results and script.cite:
        markers = dict.fromkeys(m for r in tool_results for m in _SOURCE_MARKER.findall(r))
        return Reply(text=" ".join(["cited:", *markers]))
    if tool_results:
        return Reply(text="tool results: " + "; ".join(tool_results))
    if script.reply is not None:
        return Reply(text=script.reply)
    if script.tokens is not None:
        return Reply(text=" ".join(["tok"] * script.tokens))
    response_format = body.get("response_format")
    if script.json_mode or (
        isinstance(response_format, dict) and response_format.get("type") in ("json_object", "json_schema")
    ):
        return Reply(text=json.dumps({"echo": script.plain}, ensure_ascii=False))
    return Reply(text=f"echo: {script.plain}")


def _call_tokens(call: ToolCall) -> int:
    return 1 + count_words(call.arguments)


def _completion_tokens(reply: Reply) -> int:
    return count_words(reply.text or "") + sum(map(_call_tokens, reply.tool_calls))


def _apply_limit(reply: Reply, limit: int | None) -> None:
    """Cut the reply to ``limit`` completion tokens like a real model running out of budget."""
    if limit is None or _completion_tokens(reply) <= limit:
        return
    if reply.text is not None:
        reply.text = "".join(_WORD_PIECE.findall(reply.text)[:limit])
        limit -= count_words(reply.text)
    kept = []
    for call in reply.tool_calls:
        if _call_tokens(call) > limit:
            break
        kept.append(call)
        limit -= _call_tokens(call)
    reply.tool_calls, reply.finish_reason = kept, "length"


def plan_reply(body: Any, once: OnceRegistry) -> Reply:
    """Turn a chat-completions request body into a :class:`Reply` plan."""
    messages = _validate(body)
    user_index = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    user_text = content_text(messages[user_index].get("content")) if user_index >= 0 else ""
    script = parse_script(user_text)

    status = script.error
    if status is None and script.error_once is not None and once.first(user_text):
        status = script.error_once
    if status is not None:
        return Reply(error_status=status, delay=script.delay)

    reply = _content(body, script, messages[user_index + 1 :])
    reply.delay, reply.chunk_delay, reply.stream_error = script.delay, script.chunk_delay, script.stream_error
    reply.malformed = script.malformed
    _apply_limit(reply, body.get("max_completion_tokens") or body.get("max_tokens"))
    if script.length:
        reply.finish_reason = "length"
    reply.prompt_tokens = script.usage.get("prompt", sum(map(_message_tokens, messages)))
    reply.completion_tokens = script.usage.get("completion", _completion_tokens(reply))
    return reply


def _text_pieces(text: str) -> list[str]:
    """One piece per word (with its leading whitespace); pieces concatenate to ``text``."""
    pieces = _WORD_PIECE.findall(text)
    rest = text[sum(map(len, pieces)) :]
    if not pieces:
        return [rest]
    pieces[-1] += rest
    return pieces


def _argument_pieces(arguments: str) -> list[str]:
    """Split tool arguments into 2-3 pieces, as real models stream them."""
    if len(arguments) < 3:
        return [arguments[:1], arguments[1:]] if len(arguments) == 2 else [arguments]
    third = len(arguments) // 3
    return [arguments[:third], arguments[third : 2 * third], arguments[2 * third :]]


def stream_cut_at(reply: Reply, deltas: list[dict[str, Any]]) -> int:
    """The index of the chunk before which a ``[stream-error]`` reply's stream breaks: the third, and always
    before the final one, so the client never sees a finish_reason; -1 for a reply streamed whole."""
    return min(2, len(deltas) - 1) if reply.stream_error else -1


def reply_deltas(reply: Reply) -> list[dict[str, Any]]:
    """The chat-completions chunk deltas carrying ``reply``, as a streaming upstream cuts them."""
    deltas: list[dict[str, Any]] = []
    if reply.text or not reply.tool_calls:
        deltas += [{"content": piece} for piece in _text_pieces(reply.text or "")]
    for index, call in enumerate(reply.tool_calls):
        head = {"index": index, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}}
        deltas.append({"tool_calls": [head]})
        deltas += [
            {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
            for piece in _argument_pieces(call.arguments)
        ]
    deltas[0] = {"role": "assistant", **deltas[0]}
    return deltas
