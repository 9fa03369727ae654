"""File citations: source markers the model copied from file_search results → ``file_citation`` annotations.

The file_search tool shows the model each result under a marker ``【{source}:{result}†{file_name}】``
(tools/file_search.py). A marker in the model's answer that names a result of this run becomes the spec's
MessageContentTextAnnotationsFileCitationObject; the marker stays in the text, as the hosted API left it
(``text`` is the marker, ``start_index``/``end_index`` its span, in characters, end exclusive). Markers
naming no result of the run (a typo, an invented one) are left as plain text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from assistd.tools import file_search

# 【0:1†report.pdf】, also 【0:1】 and 【0:1†source】 (the hosted models' habit); the name is not trusted.
MARKER = re.compile(r"【(\d{1,6}):(\d{1,6})(?:†[^】\n]{0,512})?】")

Sources = dict[tuple[int, int], str]  # (source, result) → file_id


def sources_of(steps: Iterable[dict[str, Any]]) -> Sources:
    """Every citable result of a run, from its steps' file_search entries."""
    sources: Sources = {}
    for call in file_search.entries_of(steps):
        source = (call.get(file_search.PRIVATE) or {}).get("source")
        if source is None:
            continue
        for i, result in enumerate(call["file_search"].get("results") or []):
            sources[(source, i)] = result["file_id"]
    return sources


def annotate(text: str, sources: Sources) -> list[dict[str, Any]]:
    """The file_citation annotations of ``text``, in order of appearance."""
    if not sources or "【" not in text:
        return []
    out = []
    for m in MARKER.finditer(text):
        file_id = sources.get((int(m.group(1)), int(m.group(2))))
        if file_id is not None:
            out.append({"type": "file_citation", "text": m.group(0), "file_citation": {"file_id": file_id},
                        "start_index": m.start(), "end_index": m.end()})
    return out


def apply(message: dict[str, Any], annotate: Callable[[str], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Set the annotations of the message's text parts (``annotate``: a text's annotations in order of
    appearance — citations, code_interpreter's file links); returns them as message-delta annotations
    (``index`` numbered within each part), ready for a final ``thread.message.delta``."""
    delta_parts = []
    for index, part in enumerate(message.get("content") or []):
        if part.get("type") != "text":
            continue
        annotations = annotate(part["text"]["value"])
        part["text"]["annotations"] = annotations
        if annotations:
            delta_parts.append({"index": index, "type": "text", "text": {
                "value": "", "annotations": [{"index": i, **a} for i, a in enumerate(annotations)]}})
    return delta_parts


def annotations_delta(message_id: str, parts: list[dict[str, Any]]) -> dict[str, Any]:
    """A ``thread.message.delta`` carrying only annotations (and an empty ``value``, for clients that
    concatenate every delta's value)."""
    return {"id": message_id, "object": "thread.message.delta", "delta": {"content": parts}}
