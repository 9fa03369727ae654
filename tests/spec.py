"""Validate API payloads against OpenAI's own schemas in ../shared/spec/assistants-openapi.yaml."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

_CANDIDATES = [
    os.environ.get("ASSISTD_SPEC_PATH", ""),
    str(Path(__file__).resolve().parents[2] / "shared" / "spec" / "assistants-openapi.yaml"),
    str(Path(__file__).resolve().parents[1] / "docs" / "spec" / "assistants-openapi.yaml"),
]
_URI = "urn:assistd:spec"


def spec_path() -> Path:
    """The one copy of OpenAI's document the tests use: $ASSISTD_SPEC_PATH, ../shared (CI), else docs/spec."""
    for candidate in _CANDIDATES:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise FileNotFoundError(f"assistants-openapi.yaml not found in {_CANDIDATES}")


@functools.lru_cache(maxsize=1)
def _registry() -> Registry:
    document = yaml.safe_load(spec_path().read_text())
    resource = Resource.from_contents(_nullable(document), default_specification=DRAFT202012)
    return Registry().with_resource(_URI, resource)


def _nullable(node: Any) -> Any:
    """OpenAPI's ``nullable: true`` (which JSON Schema ignores) as an explicit ``anyOf [..., null]``.

    The document still marks many fields that way (``RunObject.started_at``…, and ``allOf: [$ref,
    {nullable: true}]``); the hosted API sends ``null`` for them, as the document's own examples show."""
    if isinstance(node, list):
        return [_nullable(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    nullable = node.pop("nullable", False) is True
    parts = node.get("allOf")
    if isinstance(parts, list) and {"nullable": True} in parts:  # allOf: [$ref, {nullable: true}]
        node["allOf"] = [p for p in parts if p != {"nullable": True}]
        nullable = True
    node = {key: _nullable(value) for key, value in node.items()}
    if not nullable:
        return node
    keep = {k: node.pop(k) for k in ("description", "title", "default", "example") if k in node}
    return {**keep, "anyOf": [node, {"type": "null"}]}


@functools.cache
def _validator(name: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": f"{_URI}#/components/schemas/{name}"}, registry=_registry())


def wire(obj: Any) -> Any:
    """An SDK object as it came over the wire (the SDK's own defaults left out)."""
    if hasattr(obj, "model_dump"):
        return obj.model_dump(exclude_unset=True, mode="json", by_alias=True)
    return obj


def assert_schema(obj: Any, name: str) -> Any:
    """Raise with every violation listed when ``obj`` is not a valid ``name`` from the spec.

    ``obj`` may be a dict or an SDK object; the wire JSON is returned."""
    obj = wire(obj)
    errors = sorted(_validator(name).iter_errors(obj), key=lambda e: list(e.path))
    if errors:
        details = "\n".join(f"- at {list(e.path)}: {e.message[:300]}" for e in errors[:10])
        raise AssertionError(f"payload is not a valid {name}:\n{details}")
    return obj


def assert_list(page: Any, item_schema: str) -> Any:
    """A list envelope (first_id/last_id are null on an empty page, as the hosted API sent)."""
    page = wire(page)
    assert set(page) >= {"object", "data", "first_id", "last_id", "has_more"}, page
    assert page["object"] == "list"
    assert isinstance(page["has_more"], bool)
    if page["data"]:
        assert page["first_id"] == page["data"][0]["id"]
        assert page["last_id"] == page["data"][-1]["id"]
    else:
        assert page["first_id"] is None and page["last_id"] is None
    for item in page["data"]:
        assert_schema(item, item_schema)
    return page
