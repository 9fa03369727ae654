"""Objects as an archive holds them → objects as assistd stores them.

Both sources go through here: an assistd export (already exactly what assistd serves: nothing changes
but unfinished runs) and an export of any Assistants-API server written with the official SDK's
``model_dump()`` (scripts/export-from-api). For the latter:

- a field assistd reads but the object lacks gets the value assistd would have given it (reported);
- a field assistd does not know is kept as it is (served back like the rest) and reported;
- ``None`` for a field assistd always fills with a list or object (``metadata``, ``attachments``…) becomes
  that empty value (``model_dump()`` writes None for what the server left out).

Runs that had not finished when exported are ended, never executed again: ``cancelling`` becomes
``cancelled``, every other open status ``expired``, stamped with the archive's ``exported_at`` (not the
import's clock, so a second import of the same archive produces the same object); their open steps end
the same way and their in-progress messages become ``incomplete``. Everything here is a pure function of
the archive, so checking (pass one) and importing (pass two) see the same objects.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

ACTIVE_RUN = ("queued", "in_progress", "requires_action", "cancelling")
_STAMP = {"cancelled": "cancelled_at", "expired": "expired_at"}

# kind → (object type, fields that must be there, defaults for fields assistd reads)
_SHAPES: dict[str, tuple[str, tuple[str, ...], dict[str, Any]]] = {
    "files": ("file", ("id", "created_at", "filename", "purpose"), {"bytes": 0, "status": "processed"}),
    "vector_stores": ("vector_store", ("id", "created_at"), {
        "name": "", "usage_bytes": 0, "file_counts": {"in_progress": 0, "completed": 0, "failed": 0,
                                                      "cancelled": 0, "total": 0},
        "status": "completed", "expires_at": None, "last_active_at": None, "metadata": {}}),
    "vector_store_files": ("vector_store.file", ("id", "created_at", "vector_store_id"), {
        "usage_bytes": 0, "status": "completed", "last_error": None,
        "chunking_strategy": {"type": "static", "static": {"max_chunk_size_tokens": 800,
                                                           "chunk_overlap_tokens": 400}},
        "attributes": {}}),
    "assistants": ("assistant", ("id", "created_at", "model"), {
        "name": None, "description": None, "instructions": None, "tools": [], "tool_resources": {},
        "metadata": {}, "top_p": 1.0, "temperature": 1.0, "reasoning_effort": None, "response_format": "auto"}),
    "threads": ("thread", ("id", "created_at"), {"metadata": {}, "tool_resources": {}}),
    "runs": ("thread.run", ("id", "created_at", "thread_id", "assistant_id", "status"), {
        "started_at": None, "expires_at": None, "cancelled_at": None, "failed_at": None, "completed_at": None,
        "required_action": None, "last_error": None, "model": "", "instructions": "", "tools": [],
        "tool_resources": {}, "metadata": {}, "temperature": 1.0, "top_p": 1.0, "reasoning_effort": None,
        "max_completion_tokens": None, "max_prompt_tokens": None,
        "truncation_strategy": {"type": "auto", "last_messages": None}, "incomplete_details": None,
        "usage": None, "response_format": "auto", "tool_choice": "auto", "parallel_tool_calls": True}),
    "messages": ("thread.message", ("id", "created_at", "thread_id", "role", "content"), {
        "assistant_id": None, "run_id": None, "attachments": [], "metadata": {}, "status": "completed",
        "incomplete_details": None, "completed_at": None, "incomplete_at": None}),
    "run_steps": ("thread.run.step", ("id", "created_at", "run_id", "thread_id", "type", "step_details"), {
        "assistant_id": None, "status": "completed", "cancelled_at": None, "completed_at": None,
        "expired_at": None, "failed_at": None, "last_error": None, "usage": None, "metadata": {}}),
}
# Fields assistd serves beyond the defaults above (optional ones it writes only sometimes).
_ALSO_KNOWN: dict[str, set[str]] = {
    "files": {"expires_at", "status_details"},
    "vector_stores": {"description", "expires_after"},
    "runs": {"incomplete_at", "expired_at"},
    "vector_store_files": set(), "assistants": set(), "threads": set(), "messages": set(), "run_steps": set(),
}
_EMPTY_FOR_NONE = {"metadata", "attachments", "tools", "tool_resources", "attributes", "file_counts"}


class ObjectError(ValueError):
    """An object the importer cannot take; the caller adds where it was (member and line)."""


@dataclass
class Notes:
    """What normalising changed, counted by (kind, field) so a large archive reports a few lines."""

    filled: Counter = field(default_factory=Counter)
    unknown: Counter = field(default_factory=Counter)
    ended: Counter = field(default_factory=Counter)

    def lines(self) -> list[str]:
        out = [f"kept {n} {kind} field '{name}' that assistd does not know (served back as it is)"
               for (kind, name), n in sorted(self.unknown.items())]
        out += [f"filled missing {kind} field '{name}' with assistd's default in {n} object(s)"
                for (kind, name), n in sorted(self.filled.items())]
        out += [f"{n} unfinished {kind} imported as {status}" for (kind, status), n in sorted(self.ended.items())]
        return out


class Normalizer:
    """One per archive read: remembers how each unfinished run ended, for its steps and messages."""

    def __init__(self, exported_at: int) -> None:
        self.exported_at = exported_at
        self.notes = Notes()
        self.run_endings: dict[str, str] = {}  # run id → the status an unfinished run was given

    def normalize(self, kind: str, obj: Any) -> dict[str, Any]:
        if not isinstance(obj, dict):
            raise ObjectError("expected a JSON object")
        object_type, required, defaults = _SHAPES[kind]
        if obj.get("object") != object_type:
            raise ObjectError(f"expected object '{object_type}', found {obj.get('object')!r}")
        for name in required:
            if obj.get(name) is None:
                raise ObjectError(f"missing required field '{name}'")
        for name in ("id", *(n for n in required if n.endswith("_id"))):
            if not isinstance(obj[name], str) or not 0 < len(obj[name]) <= 64 or "\x00" in obj[name]:
                raise ObjectError(f"'{name}' must be a string of 1 to 64 characters")
        for name in ("created_at", "expires_at"):  # both go to BIGINT columns
            value = obj.get(name)
            if (value is not None or name == "created_at") and (
                    not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**53):
                raise ObjectError(f"'{name}' must be an integer (Unix seconds)")
        for name in ("status", "purpose"):  # VARCHAR(32) columns
            value = obj.get(name)
            if value is not None and (not isinstance(value, str) or not 0 < len(value) <= 32):
                raise ObjectError(f"'{name}' must be a string of 1 to 32 characters")
        for name, default in defaults.items():
            if name not in obj:
                obj[name] = _copy(default)
                self.notes.filled[(kind, name)] += 1
            elif obj[name] is None and name in _EMPTY_FOR_NONE:
                obj[name] = _copy(default)
        known = {"id", "object", *required, *defaults, *_ALSO_KNOWN[kind]}
        for name in obj:
            if name not in known:
                self.notes.unknown[(kind, name)] += 1
        if kind == "files" and "expires_at" in obj and obj["expires_at"] is None:
            del obj["expires_at"]  # assistd leaves it out rather than null (the spec types it an integer)
        return getattr(self, f"_{kind}", _same)(obj)

    def _runs(self, run: dict[str, Any]) -> dict[str, Any]:
        if run["status"] not in ACTIVE_RUN:
            return run
        status = "cancelled" if run["status"] == "cancelling" else "expired"
        self.run_endings[run["id"]] = status
        self.notes.ended[("runs", status)] += 1
        run["status"] = status
        stamp = _STAMP[status]
        if run.get(stamp) is None:
            run[stamp] = self.exported_at
        run["expires_at"] = None
        run["required_action"] = None
        return run

    def _run_steps(self, step: dict[str, Any]) -> dict[str, Any]:
        if step["status"] != "in_progress":
            return step
        status = self.run_endings.get(step["run_id"], "expired")
        self.notes.ended[("run_steps", status)] += 1
        step["status"] = status
        step[_STAMP[status]] = self.exported_at
        return step

    def _messages(self, message: dict[str, Any]) -> dict[str, Any]:
        if message["status"] != "in_progress":
            return message
        ending = self.run_endings.get(message.get("run_id") or "", "expired")
        self.notes.ended[("messages", "incomplete")] += 1
        message["status"] = "incomplete"
        message["incomplete_at"] = self.exported_at
        message["incomplete_details"] = {"reason": f"run_{ending}"}
        return message


def _same(obj: dict[str, Any]) -> dict[str, Any]:
    return obj


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


# Fields the importer's own work changes after insert (a re-index, a search touching the store): an object
# already present that differs only in these is the one an earlier run of the same import wrote.
VOLATILE: dict[str, frozenset[str]] = {
    "vector_stores": frozenset({"status", "file_counts", "usage_bytes", "last_active_at", "expires_at"}),
    "vector_store_files": frozenset({"status", "usage_bytes", "last_error"}),
}


def same_object(kind: str, stored: dict[str, Any], incoming: dict[str, Any]) -> bool:
    volatile = VOLATILE.get(kind, frozenset())
    if not volatile:
        return stored == incoming
    keep = lambda d: {k: v for k, v in d.items() if k not in volatile}  # noqa: E731
    return keep(stored) == keep(incoming)
