"""Attribute filters — the spec's ``ComparisonFilter`` / ``CompoundFilter`` — validated, then compiled to SQL.

A comparison is ``{"type": eq|ne|gt|gte|lt|lte|in|nin, "key": str, "value": str|number|bool|[str|number]}``;
a compound is ``{"type": and|or, "filters": [...]}``, nested freely. Semantics (identical on both backends):

- types are strict: ``"5"`` never equals ``5``, ``true`` never equals ``1``;
- ``gt/gte/lt/lte`` take a number or a string (strings compare by code point); a boolean value is rejected;
- ``in``/``nin`` take a non-empty array of strings/numbers; ``in`` matches when ``eq`` matches one of them;
- ``ne`` is exactly ``not eq`` and ``nin`` exactly ``not in``: a file *without* the key matches them
  (every other operator needs the key, with a value of the compared type).

``compile_filter`` returns a boolean SQLAlchemy expression over a ``retrieval_files.attributes`` column.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Float, String, and_, bindparam, case, cast, false, func, literal, not_, or_, true
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.elements import ColumnElement

COMPARISONS = {"eq", "ne", "gt", "gte", "lt", "lte", "in", "nin"}
MAX_DEPTH = 16


class FilterError(ValueError):
    """An invalid filter (maps to a 400 ``invalid_request_error`` on ``filters``)."""


def _scalar(value: Any) -> bool:
    return isinstance(value, str | bool) or (isinstance(value, int | float) and value == value)


def validate_filter(obj: Any, *, _depth: int = 0) -> dict[str, Any]:
    """Check ``obj`` against the spec (raises ``FilterError`` naming the problem); returns it unchanged."""
    if _depth > MAX_DEPTH:
        raise FilterError(f"filters are nested more than {MAX_DEPTH} levels deep")
    if not isinstance(obj, dict):
        raise FilterError("a filter must be an object")
    kind = obj.get("type", "eq")
    if kind in ("and", "or"):
        if set(obj) - {"type", "filters"} or not isinstance(obj.get("filters"), list) or not obj["filters"]:
            raise FilterError(f"an '{kind}' filter takes a non-empty 'filters' array and nothing else")
        for sub in obj["filters"]:
            validate_filter(sub, _depth=_depth + 1)
        return obj
    if kind not in COMPARISONS:
        raise FilterError(f"unknown filter type {kind!r}: use one of {sorted(COMPARISONS | {'and', 'or'})}")
    if set(obj) - {"type", "key", "value"} or "value" not in obj:
        raise FilterError("a comparison filter takes 'type', 'key' and 'value'")
    if not isinstance(obj.get("key"), str) or not obj["key"]:
        raise FilterError("a comparison filter's 'key' must be a non-empty string")
    value = obj["value"]
    if kind in ("in", "nin"):
        if not isinstance(value, list) or not value or not all(
                _scalar(v) and not isinstance(v, bool) for v in value):
            raise FilterError(f"'{kind}' takes a non-empty array of strings or numbers")
    elif not _scalar(value):
        raise FilterError(f"'{kind}' takes a string, number or boolean value")
    elif kind in ("gt", "gte", "lt", "lte") and isinstance(value, bool):
        raise FilterError(f"'{kind}' compares numbers or strings, not booleans")
    return obj


def compile_filter(obj: dict[str, Any], attributes: Any, dialect: str) -> ColumnElement[bool]:
    """The SQL predicate for a validated filter over the JSON ``attributes`` column."""
    kind = obj.get("type", "eq")
    if kind in ("and", "or"):
        parts = [compile_filter(f, attributes, dialect) for f in obj["filters"]]
        return and_(*parts) if kind == "and" else or_(*parts)
    attr = _Attr(attributes, obj["key"], dialect)
    value = obj["value"]
    if kind in ("eq", "ne"):
        expr = attr.eq(value)
        return expr if kind == "eq" else not_(func.coalesce(expr, false()))
    if kind in ("in", "nin"):
        expr = or_(*(attr.eq(v) for v in value))
        return expr if kind == "in" else not_(func.coalesce(expr, false()))
    return attr.compare(kind, value)


class _Attr:
    """One attribute's typed accessors in SQL, per dialect."""

    def __init__(self, column: Any, key: str, dialect: str) -> None:
        self.pg = dialect == "postgresql"
        if self.pg:
            self.json = column.op("->", return_type=JSONB)(literal(key, String))
            self.text = column.op("->>", return_type=String)(literal(key, String))
            self.kind = func.jsonb_typeof(self.json)
        else:
            # SQLite JSON path; a key is quoted so dots and spaces in it are not path syntax.
            path = literal('$."' + key + '"', String)
            self.text = func.json_extract(column, path)
            self.kind = func.json_type(column, path)

    def _is(self, value: Any) -> ColumnElement[bool]:
        if isinstance(value, bool):
            want = ("true" if value else "false") if not self.pg else "boolean"
            return self.kind == want
        if isinstance(value, str):
            return self.kind == ("string" if self.pg else "text")
        return self.kind == "number" if self.pg else self.kind.in_(["integer", "real"])

    def eq(self, value: Any) -> ColumnElement[bool]:
        if isinstance(value, bool):
            if self.pg:
                return and_(self._is(value), self.text == ("true" if value else "false"))
            return self._is(value)
        return self.compare("eq", value)

    def compare(self, op: str, value: Any) -> ColumnElement[bool]:
        if isinstance(value, str):
            left: Any = self.text.collate("C") if self.pg else self.text
            right: Any = bindparam(None, value, String)
        else:
            # On PostgreSQL the cast is guarded by CASE: AND does not promise to test the type first.
            left = cast(self.text, Float) if self.pg else self.text
            right = bindparam(None, float(value), Float)
        cmp = {"eq": left == right, "gt": left > right, "gte": left >= right, "lt": left < right,
               "lte": left <= right}[op]
        if self.pg:
            return case((self._is(value), cmp), else_=false()) == true()
        return and_(self._is(value), cmp)
