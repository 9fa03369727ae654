"""OpenAI's document as schemathesis tests against: the file tests/spec.py finds, plus a few written-down fixes.

Each transformation corrects the document where it contradicts itself or the hosted API, never our server's
behaviour; docs/compatibility.md lists them with these same reasons. Keep them minimal."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import yaml

from tests.spec import _nullable, spec_path

Document = dict[str, Any]
METHODS = ("get", "post", "delete", "put", "patch")


def _operations(doc: Document) -> list[dict[str, Any]]:
    return [op for item in doc["paths"].values() for method, op in item.items() if method in METHODS]


def _by_id(doc: Document, operation_id: str) -> dict[str, Any]:
    return next(op for op in _operations(doc) if op.get("operationId") == operation_id)


def documented_errors(doc: Document) -> None:
    """Every operation may answer 400, 401 and 404 with the error envelope.

    The document lists only 200 (and 429) per operation, while its own ``ErrorResponse`` schema and OpenAI's
    error-code guide say bad input is 400, a bad key 401 and an unknown id 404, with that envelope."""
    envelope = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}
    for op in _operations(doc):
        for status, what in (("400", "Invalid request"), ("401", "Invalid API key"), ("404", "Not found")):
            op["responses"].setdefault(status, {"description": what, **copy.deepcopy(envelope)})
        if "429" in op["responses"] and "content" not in op["responses"]["429"]:
            op["responses"]["429"] = {"$ref": "#/components/responses/TooManyRequests"}


def nullable_fields(doc: Document) -> None:
    """OpenAPI 3.0's ``nullable: true`` as ``anyOf [..., null]``.

    The document declares OpenAPI 3.1, where ``nullable`` means nothing, yet still marks fields such as
    ``RunObject.started_at`` that way; its own examples (and the hosted API) send ``null`` there."""
    doc["components"] = _nullable(doc["components"])


def file_download_type(doc: Document) -> None:
    """``GET /files/{file_id}/content`` answers the file's bytes, not JSON.

    The document declares ``application/json`` with ``type: string``; the hosted API and the SDKs
    (``files.content`` returns raw bytes) treat the body as a binary download."""
    _by_id(doc, "downloadFile")["responses"]["200"]["content"] = {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}


def evals_file_purpose(doc: Document) -> None:
    """A file's ``purpose`` may be ``evals``.

    ``CreateFileRequest.purpose`` accepts ``evals`` but ``OpenAIFile.purpose``, the object the upload
    returns, does not list it: the document contradicts itself; the file keeps the purpose it was given."""
    purpose = doc["components"]["schemas"]["OpenAIFile"]["properties"]["purpose"]
    purpose["enum"] = [*purpose["enum"], "evals"]


def empty_list_ids(doc: Document) -> None:
    """A list page's ``first_id`` and ``last_id`` are ``null`` when the page is empty.

    The document types them ``string`` and requires them, which no empty page can satisfy; the hosted
    API sends ``null`` there."""
    for name, schema in doc["components"]["schemas"].items():
        properties = schema.get("properties", {})
        if name.startswith("List") and "first_id" in properties:
            for key in ("first_id", "last_id"):
                properties[key] = {"anyOf": [properties[key], {"type": "null"}]}


TRANSFORMATIONS: list[Callable[[Document], None]] = [
    documented_errors,
    nullable_fields,
    file_download_type,
    evals_file_purpose,
    empty_list_ids,
]


def conformance_document() -> Document:
    doc = yaml.safe_load(spec_path().read_text())
    for transform in TRANSFORMATIONS:
        transform(doc)
    return doc


def operations_by_label(doc: Document) -> dict[str, str]:
    """``{"POST /threads/{thread_id}/runs": "createRun", ...}`` in the document's order."""
    return {f"{method.upper()} {path}": op["operationId"] for path, item in doc["paths"].items()
            for method, op in item.items() if method in METHODS}
