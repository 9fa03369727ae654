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

import math
from typing import Any

from sqlalchemy import Float, String, and_, bindparam, case, cast, false, func, literal, not_, or_, select, true
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.elements import ColumnElement, Grouping

COMPARISONS = {"eq", "ne", "gt", "gte", "lt", "lte", "in", "nin"}
# Documented limits (README, Security): compound filters nest at most MAX_DEPTH levels, and a filter holds
# at most MAX_TERMS terms, counting every filter object and every value of an ``in``/``nin`` array. A term
# compiles to at most 4 bound parameters, so a filter stays far below SQLite's 32,766 and asyncpg's 32,767
# parameters; compounds compile to balanced trees, so the SQL expression stays about
# MAX_DEPTH × log2(MAX_TERMS) deep, far below SQLite's limit of 1,000.
MAX_DEPTH = 8
MAX_TERMS = 1000
# Numbers are compared as 64-bit floats in SQL; integers beyond 64 bits are refused, as everywhere.
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1


class FilterError(ValueError):
    """An invalid filter: a 400 ``invalid_request_error`` whose param is ``filters`` + ``path``."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.path = path


def _scalar(value: Any) -> bool:
    if isinstance(value, str | bool):
        return True
    if isinstance(value, int):
        return _INT_MIN <= value <= _INT_MAX
    return isinstance(value, float) and math.isfinite(value)


def _check_string(value: str, path: str) -> None:
    if "\x00" in value:  # PostgreSQL cannot compare text holding NUL (and nothing stored holds one)
        raise FilterError("strings may not contain the NUL character (\\u0000)", path)


def _too_many(path: str) -> FilterError:
    return FilterError(f"a filter may hold at most {MAX_TERMS} filters and values in all", path)


def validate_filter(obj: Any) -> dict[str, Any]:
    """Check ``obj`` against the spec and the limits above; returns it unchanged.

    Raises ``FilterError`` naming the problem and where it sits (``.filters[2].value``). Iterative, so a
    filter nested deeper than Python's recursion limit is a 400 too."""
    terms = 0
    stack: list[tuple[Any, str, int]] = [(obj, "", 1)]
    while stack:
        item, path, depth = stack.pop()
        terms += 1
        if terms > MAX_TERMS:
            raise _too_many(path)
        if not isinstance(item, dict):
            raise FilterError("a filter must be an object", path)
        kind = item.get("type")
        if not isinstance(kind, str):
            raise FilterError("'type' is required and must be a string", f"{path}.type")
        if kind in ("and", "or"):
            subs = item.get("filters")
            if set(item) - {"type", "filters"}:
                raise FilterError(f"an '{kind}' filter takes a non-empty 'filters' array and nothing else", path)
            if not isinstance(subs, list) or not subs:
                raise FilterError(f"an '{kind}' filter takes a non-empty 'filters' array", f"{path}.filters")
            if depth >= MAX_DEPTH:
                raise FilterError(f"compound filters may nest at most {MAX_DEPTH} levels deep", path)
            stack.extend((sub, f"{path}.filters[{i}]", depth + 1) for i, sub in enumerate(subs))
            continue
        if kind not in COMPARISONS:
            raise FilterError(f"unknown filter type '{kind[:50]}': use one of "
                              f"{sorted(COMPARISONS | {'and', 'or'})}", f"{path}.type")
        if set(item) - {"type", "key", "value"} or "value" not in item:
            raise FilterError("a comparison filter takes 'type', 'key' and 'value'", path)
        key = item.get("key")
        if not isinstance(key, str) or not key:
            raise FilterError("a comparison filter's 'key' must be a non-empty string", f"{path}.key")
        _check_string(key, f"{path}.key")
        value = item["value"]
        if kind in ("in", "nin"):
            if not isinstance(value, list) or not value or not all(
                    _scalar(v) and not isinstance(v, bool) for v in value):
                raise FilterError(f"'{kind}' takes a non-empty array of strings or numbers", f"{path}.value")
            terms += len(value)
            if terms > MAX_TERMS:
                raise _too_many(f"{path}.value")
            for i, v in enumerate(value):
                if isinstance(v, str):
                    _check_string(v, f"{path}.value[{i}]")
        elif not _scalar(value):
            raise FilterError(f"'{kind}' takes a string, number or boolean value", f"{path}.value")
        elif kind in ("gt", "gte", "lt", "lte") and isinstance(value, bool):
            raise FilterError(f"'{kind}' compares numbers or strings, not booleans", f"{path}.value")
        elif isinstance(value, str):
            _check_string(value, f"{path}.value")
    return obj


class _Parens(Grouping[bool]):
    """Parentheses SQLAlchemy keeps: a plain Grouping passes its attributes through, so ``or_`` flattens
    ``(a OR b) OR (c OR d)`` back into one chain."""

    inherit_cache = True

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(name)


def _balanced(op: Any, parts: list[ColumnElement[bool]]) -> ColumnElement[bool]:
    """``a op b op c …`` as a balanced tree: SQLite parses a flat chain one level deeper per term and
    refuses expressions deeper than 1,000 ("Expression tree is too large")."""
    if len(parts) == 1:
        return parts[0]
    mid = len(parts) // 2
    return op(_Parens(_balanced(op, parts[:mid])), _Parens(_balanced(op, parts[mid:])))


def compile_filter(obj: dict[str, Any], attributes: Any, dialect: str) -> ColumnElement[bool]:
    """The SQL predicate for a validated filter over the JSON ``attributes`` column."""
    kind = obj.get("type", "eq")
    if kind in ("and", "or"):
        parts = [compile_filter(f, attributes, dialect) for f in obj["filters"]]
        return _balanced(and_ if kind == "and" else or_, parts)
    attr = _Attr(attributes, obj["key"], dialect)
    value = obj["value"]
    if kind in ("eq", "ne"):
        expr = attr.eq(value)
        return expr if kind == "eq" else not_(func.coalesce(expr, false()))
    if kind in ("in", "nin"):
        expr = attr.one_of(value)
        return expr if kind == "in" else not_(func.coalesce(expr, false()))
    return attr.compare(kind, value)


class _Attr:
    """One attribute's typed accessors in SQL, per dialect."""

    text: ColumnElement[Any]
    kind: ColumnElement[Any]

    def __init__(self, column: Any, key: str, dialect: str) -> None:
        self.pg = dialect == "postgresql"
        if self.pg:
            self.json = column.op("->", return_type=JSONB)(literal(key, String))
            self.text = column.op("->>", return_type=String)(literal(key, String))
            self.kind = func.jsonb_typeof(self.json)
        elif '"' not in key:
            # SQLite JSON path; a key is quoted so dots and spaces in it are not path syntax.
            path = literal('$."' + key + '"', String)
            self.text = func.json_extract(column, path)
            self.kind = func.json_type(column, path)
        else:
            # A path cannot quote a quote: look the key up among the object's members instead.
            each = func.json_each(column).table_valued("key", "value", "type")
            self.text = select(each.c.value).where(each.c.key == key).scalar_subquery()
            self.kind = select(each.c.type).where(each.c.key == key).scalar_subquery()

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

    def one_of(self, values: list[Any]) -> ColumnElement[bool]:
        """``in``: one ``IN`` list per JSON type (one parameter per value, however long the list)."""
        strings = [v for v in values if isinstance(v, str)]
        numbers = [float(v) for v in values if not isinstance(v, str)]
        parts: list[ColumnElement[bool]] = []
        if strings:
            parts.append(and_(self._is(""), self.text.in_(strings)))
        if numbers:
            if self.pg:
                parts.append(case((self._is(0), cast(self.text, Float).in_(numbers)), else_=false()) == true())
            else:
                parts.append(and_(self._is(0), self.text.in_([bindparam(None, n, Float) for n in numbers])))
        return or_(*parts)
