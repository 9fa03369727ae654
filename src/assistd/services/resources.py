"""``tool_resources`` as stored on assistants and threads."""

from __future__ import annotations

from typing import Any

from assistd.errors import InvalidRequest
from assistd.schemas.common import ToolResources


def tool_resources_dict(resources: ToolResources | None) -> dict[str, Any]:
    """The stored shape: only the tools given, each with its id list."""
    if resources is None:
        return {}
    out: dict[str, Any] = {}
    if resources.code_interpreter is not None:
        out["code_interpreter"] = {"file_ids": list(resources.code_interpreter.file_ids)}
    if resources.file_search is not None:
        fs = resources.file_search
        if fs.vector_stores:
            # Creating a store from file ids needs vector stores (issue 6); refuse rather than drop it.
            raise InvalidRequest(
                "The 'vector_stores' helper is not supported yet: create the vector store first and "
                "pass its id in 'vector_store_ids'.",
                param="tool_resources.file_search.vector_stores",
            )
        out["file_search"] = {"vector_store_ids": list(fs.vector_store_ids or [])}
    return out


def merge_tool_resources(current: dict[str, Any], update: ToolResources) -> dict[str, Any]:
    """Modify: each tool's resources given replace that tool's, the others stay."""
    return {**current, **tool_resources_dict(update)}
