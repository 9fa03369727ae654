"""Shaping stored objects for the templates: message text with its citations, timeline geometry, timings.
Pure functions, no I/O."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

from assistd.services.run_objects import ACTIVE_STATUSES
from assistd.services.step_render import FILE_SEARCH_CONTENT, strip_step

_STEP_END = ("completed_at", "failed_at", "cancelled_at", "expired_at")
_RUN_END = ("completed_at", "failed_at", "cancelled_at", "expired_at", "incomplete_at")


def safe_url(url: Any) -> str | None:
    """An http(s) URL to link to, or None (``javascript:``, ``data:`` and the like are shown as text)."""
    if not isinstance(url, str):
        return None
    try:
        scheme = urlsplit(url.strip()).scheme.lower()
    except ValueError:
        return None
    return url.strip() if scheme in ("http", "https") else None


def text_segments(text: dict[str, Any]) -> list[dict[str, Any]]:
    """A text part's value split at its annotations: ``{"text": …}`` or ``{"text": …, "file_id": …,
    "kind": …, "n": …}`` for each annotated span, so the template escapes every piece and links the file."""
    value = str(text.get("value") or "")
    spans = []
    for n, ann in enumerate(text.get("annotations") or [], start=1):
        start, end = ann.get("start_index"), ann.get("end_index")
        if not isinstance(start, int) or not isinstance(end, int) or not 0 <= start <= end <= len(value):
            continue
        kind = ann.get("type", "")
        file_id = (ann.get(kind) or {}).get("file_id") if isinstance(ann.get(kind), dict) else None
        spans.append((start, end, kind, file_id, n))
    spans.sort()
    out: list[dict[str, Any]] = []
    pos = 0
    for start, end, kind, file_id, n in spans:
        if start < pos:
            continue  # overlapping annotations: the first wins
        if start > pos:
            out.append({"text": value[pos:start]})
        out.append({"text": value[start:end], "file_id": file_id, "kind": kind, "n": n})
        pos = end
    if pos < len(value):
        out.append({"text": value[pos:]})
    return out


def step_end(step: dict[str, Any]) -> int | None:
    return next((step[k] for k in _STEP_END if step.get(k)), None)


def run_end(run: dict[str, Any]) -> int | None:
    return next((run[k] for k in _RUN_END if run.get(k)), None)


def shown_step(step: dict[str, Any]) -> dict[str, Any]:
    """The step as the API shows it with file_search results' chunk text included."""
    strip_step(step, [FILE_SEARCH_CONTENT])
    return step


def timeline(run: dict[str, Any], steps: list[dict[str, Any]], now: float | None = None,
             steps_ms: dict[str, tuple] | None = None, run_ms: dict[str, int | None] | None = None) -> dict[str, Any]:
    """Where each step's bar goes: ``left``/``width`` in percent of the run's span (created → done, or now).
    A step recorded with millisecond times (``steps_ms``: id → (created_ms, ended_ms)) is placed by them;
    one from before is placed by its whole-second times, so its bar is at least a sliver wide."""
    now = now if now is not None else time.time()
    steps_ms, run_ms = steps_ms or {}, run_ms or {}
    start = run_queued_ms / 1000 if (run_queued_ms := run_ms.get("queued_ms")) else run.get("created_at") or 0
    done = run_ended_ms / 1000 if (run_ended_ms := run_ms.get("ended_ms")) else run_end(run)
    active = run.get("status") in ACTIVE_STATUSES
    times = []
    for step in steps:
        s = step.get("created_at") or start
        e = step_end(step) or (now if step.get("status") == "in_progress" else s)
        created_ms, ended_ms = steps_ms.get(step.get("id", ""), (None, None))
        if created_ms:
            s = created_ms / 1000
            e = ended_ms / 1000 if ended_ms else (now if step.get("status") == "in_progress" else s)
        times.append((s, e))
    if times:
        start = min(start, min(s for s, _ in times))
    ends = [done or (now if active else start), *(e for _, e in times)]
    end = max(ends)
    span = max(end - start, 1 if all(isinstance(t, int) for t in ends) else 0.001)
    bars = []
    for s, e in times:
        left = min(int(max(s - start, 0) / span * 100), 99)
        width = min(max(round((e - s) / span * 100), 1), 100 - left)
        bars.append({"left": left, "width": width, "duration": max(e - s, 0)})
    shown = span if isinstance(span, int) else round(span, 3)
    return {"span": shown, "bars": bars}


def phases(run: dict[str, Any], steps: list[dict[str, Any]],
           run_ms: dict[str, int | None] | None = None) -> list[dict[str, Any]]:
    """Where the run's time went: queued → started → first token → done, in milliseconds where recorded
    (``run_ms``, see services/runs.timings). A run from before they were has only whole seconds and no
    first-token time: started → its first step (the model's first output, or the answer's step stored
    while the model is called) → done stands in. The last row is the whole: queued → done."""
    run_ms = run_ms or {}
    if run_ms.get("queued_ms"):
        marks = [(run_ms.get(k) or 0) / 1000 or None
                 for k in ("queued_ms", "started_ms", "first_token_ms", "ended_ms")]
        names = ("queued", "started → first token", "first token → done")
    else:
        first = min((s["created_at"] for s in steps if s.get("created_at")), default=None)
        marks = [run.get("created_at"), run.get("started_at"), first, run_end(run)]
        names = ("queued", "started → first step", "first step → done")
    rows = [*zip(names, marks, marks[1:], strict=False), ("total", marks[0], marks[-1])]
    # Never below zero: a worker on another host stamps its marks with its own clock.
    return [{"name": name, "from": a, "to": b, "seconds": max(b - a, 0) if a and b else None} for name, a, b in rows]


def tokens(step: dict[str, Any]) -> int | None:
    usage = step.get("usage") or {}
    return usage.get("total_tokens")
