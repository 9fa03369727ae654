"""Every field of every JSON request body, generated from the routes' pydantic models, so a field added
later is covered by the adversarial tests without anyone listing it.

``leaves()`` walks a body model down to its scalar fields; each leaf is a path of tokens. ``build()`` makes
a body that is valid except at one leaf (required fields filled with minimal values, union members tagged
with their ``type``), and ``concrete()`` names that leaf the way the API's ``param`` does.
"""

from __future__ import annotations

import importlib
import inspect
import types
from collections.abc import Iterator
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

# A token: ("field", model, key) | ("index",) | ("key",)
Token = tuple[Any, ...]
Path = tuple[Token, ...]


def body_routes() -> list[tuple[str, type[BaseModel]]]:
    """(path with ``x`` for every id, body model) of every JSON POST route."""
    out = []
    for name in ("assistants", "threads", "messages", "runs", "vector_stores"):
        for route in importlib.import_module(f"assistd.api.{name}").router.routes:
            field = getattr(route, "body_field", None)
            if field is None:
                continue
            model = next(a for a in (field.field_info.annotation, *get_args(field.field_info.annotation))
                         if inspect.isclass(a) and issubclass(a, BaseModel))
            path = route.path
            while "{" in path:
                path = path[:path.index("{")] + "x" + path[path.index("}") + 1:]
            out.append((path, model))
    return out


def _meta(items: Any) -> list[Any]:
    out: list[Any] = []
    for item in items:
        out.extend(item.metadata if isinstance(item, FieldInfo) else [item])
    return out


def leaves(model: type[BaseModel], prefix: Path = (), seen: tuple[type, ...] = ()) -> Iterator[tuple[Path, Any, list]]:
    """(path, leaf type: int | str | Any | "literal", constraints) of every scalar field under ``model``."""
    for name, field in model.model_fields.items():
        key = field.alias or name
        yield from _leaves(field.annotation, _meta(field.metadata), (*prefix, ("field", model, key)),
                           (*seen, model))


def _leaves(tp: Any, meta: list[Any], path: Path, seen: tuple[type, ...]) -> Iterator[tuple[Path, Any, list]]:
    origin = get_origin(tp)
    if origin is Annotated:
        base, *extra = get_args(tp)
        yield from _leaves(base, meta + _meta(extra), path, seen)
    elif origin in (Union, types.UnionType):
        for arg in get_args(tp):
            if arg is not type(None):
                yield from _leaves(arg, meta, path, seen)
    elif origin is list:
        yield from _leaves(get_args(tp)[0], [], (*path, ("index",)), seen)
    elif origin is dict:
        yield from _leaves(get_args(tp)[1], [], (*path, ("key",)), seen)
    elif origin is Literal:
        yield path, "literal", meta
    elif inspect.isclass(tp) and issubclass(tp, BaseModel):
        if tp not in seen:
            yield from leaves(tp, path, seen)
    elif tp in (int, str) or tp is Any:
        yield path, tp, meta


def has_upper_bound(meta: list[Any]) -> bool:
    return any(isinstance(m, annotated_types.Le | annotated_types.Lt) for m in meta)


def _sample(tp: Any, meta: list[Any]) -> Any:
    origin = get_origin(tp)
    if origin is Annotated:
        base, *extra = get_args(tp)
        return _sample(base, meta + _meta(extra))
    if origin in (Union, types.UnionType):
        return _sample(next(a for a in get_args(tp) if a is not type(None)), meta)
    if origin is Literal:
        return get_args(tp)[0]
    if origin is list:
        return []
    if origin is dict or tp is Any:
        return {}
    if inspect.isclass(tp) and issubclass(tp, BaseModel):
        return minimal(tp)
    if tp is int or tp is float:
        low = next((m.ge for m in meta if isinstance(m, annotated_types.Ge)), 1)
        return tp(low)
    if tp is bool:
        return False
    return "x"


SAMPLES = {"url": "https://example.com/a.png"}  # strings with a format of their own


def minimal(model: type[BaseModel]) -> dict[str, Any]:
    """The smallest body the model's fields accept: required fields, and ``type`` for union members."""
    out = {}
    for name, field in model.model_fields.items():
        key = field.alias or name
        if field.is_required() or (key == "type" and get_origin(field.annotation) is Literal):
            out[key] = SAMPLES.get(key) or _sample(field.annotation, _meta(field.metadata))
    return out


def build(path: Path, value: Any, key: str = "k") -> Any:
    """A body valid but for ``value`` at ``path`` (``key`` names map entries)."""
    if not path:
        return value
    token, rest = path[0], path[1:]
    if token[0] == "field":
        return {**minimal(token[1]), token[2]: build(rest, value, key)}
    if token[0] == "index":
        return [build(rest, value, key)]
    return {key: build(rest, value, key)}


def concrete(path: Path, key: str = "k") -> str:
    out = ""
    for token in path:
        out += f".{token[2]}" if token[0] == "field" else "[0]" if token[0] == "index" else f".{key}"
    return out.lstrip(".")


def all_leaves() -> list[tuple[str, Path, Any, list]]:
    """(route, path, leaf type, constraints) over every JSON body route."""
    out = []
    for route, model in body_routes():
        out.extend((route, path, kind, meta) for path, kind, meta in leaves(model))
    return out


def model_prefixes() -> list[tuple[str, Path, type[BaseModel]]]:
    """(route, path to a nested object, its model): every object of every body that has fields."""
    found: dict[tuple[str, str], tuple[str, Path, type[BaseModel]]] = {}
    for route, path, _, _ in all_leaves():
        for i, token in enumerate(path):
            if token[0] == "field":
                found.setdefault((route, concrete(path[:i]) + token[1].__name__), (route, path[:i], token[1]))
    return list(found.values())
