"""Run steps as the API shows them: what ``include[]`` asks for, and nothing the server keeps for itself.

A file_search tool call is stored with each result's ``content`` (the chunk text) and a private
``_assistd`` part (tools/file_search.py). The API shows ``results[*].content`` only when asked with
``include[]=step_details.tool_calls[*].file_search.results[*].content`` and never shows ``_assistd``.
A code_interpreter call has a private ``_assistd`` part too (tools/code_tool.py), never shown.

Steps without such a call — nearly all of them — are returned as they are, found by a substring test on
the stored JSON (orjson writes ``"type":"file_search"`` exactly so; inside a string, such as a function's
arguments, its quotes would be escaped), without decoding them.
"""

from __future__ import annotations

from typing import Any, TypeVar

import orjson

from assistd.pagination import Page
from assistd.tools.file_search import PRIVATE

FILE_SEARCH_CONTENT = "step_details.tool_calls[*].file_search.results[*].content"
_NEEDLE = '"type":"file_search"'
_NEEDLE_BYTES = _NEEDLE.encode()
_CODE_NEEDLE = '"type":"code_interpreter"'
_CODE_NEEDLE_BYTES = _CODE_NEEDLE.encode()
_PRIVATE_TYPES = ("file_search", "code_interpreter")

Raw = TypeVar("Raw", str, bytes)


def render_step(raw_json: Raw, include: list[str] | tuple[str, ...] | None) -> Raw:
    """The stored step JSON (str or bytes; the same type comes back) as the API shows it."""
    is_bytes = isinstance(raw_json, bytes)
    needle: Any = _NEEDLE_BYTES if is_bytes else _NEEDLE
    code_needle: Any = _CODE_NEEDLE_BYTES if is_bytes else _CODE_NEEDLE
    if needle not in raw_json and code_needle not in raw_json:
        return raw_json
    step = orjson.loads(raw_json)
    if not strip_step(step, include):
        return raw_json
    out = orjson.dumps(step)
    return out if isinstance(raw_json, bytes) else out.decode()


def strip_step(step: dict[str, Any], include: list[str] | tuple[str, ...] | None) -> bool:
    """Remove, in place, what ``include`` does not ask for; True when something was removed."""
    details = step.get("step_details") or {}
    if details.get("type") != "tool_calls":
        return False
    with_content = bool(include) and FILE_SEARCH_CONTENT in include  # type: ignore[operator]
    changed = False
    for call in details.get("tool_calls") or []:
        if call.get("type") not in _PRIVATE_TYPES:
            continue
        if call.pop(PRIVATE, None) is not None:
            changed = True
        if call["type"] == "file_search" and not with_content:
            for result in (call.get("file_search") or {}).get("results") or []:
                if result.pop("content", None) is not None:
                    changed = True
    return changed


def shown(step: dict[str, Any], include: list[str] | tuple[str, ...] | None = None) -> dict[str, Any]:
    """A copy of a step object as shown (for events); the stored dict is left alone."""
    if not any(c.get("type") in _PRIVATE_TYPES for c in (step.get("step_details") or {}).get("tool_calls") or []):
        return step
    copy: dict[str, Any] = orjson.loads(orjson.dumps(step))
    strip_step(copy, include)
    return copy


def render_page(page: Page, include: list[str] | tuple[str, ...] | None) -> Page:
    """A page of stored steps (``list_page``) as shown."""
    items = [render_step(item, include) for item in page.items]
    if all(a is b for a, b in zip(items, page.items, strict=True)):
        return page
    return Page(items=items, first_id=page.first_id, last_id=page.last_id, has_more=page.has_more)
