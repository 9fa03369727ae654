"""``tool_resources`` as stored on assistants and threads.

``file_search.vector_stores`` (the helper) creates a vector store from file ids and stores its id in
``vector_store_ids``, as the hosted API did. Every id given must name a file or store of the project
(404 naming the param, as the hosted API answered), so a run never fails later on a bad reference. A
store made for a thread expires 7 days after it was last active (the hosted default for stores made by
thread helpers and message attachments); one made for an assistant does not expire.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from assistd.errors import InvalidRequest
from assistd.schemas.common import ToolResources
from assistd.services import files as file_service

THREAD_STORE_EXPIRY = {"anchor": "last_active_at", "days": 7}


async def tool_resources_dict(
    conn: AsyncConnection, project_id: str, resources: ToolResources | None, *, for_thread: bool = False,
    param: str = "tool_resources",
) -> dict[str, Any]:
    """The stored shape: only the tools given, each with its id list (vector stores created as asked)."""
    if resources is None:
        return {}
    out: dict[str, Any] = {}
    if resources.code_interpreter is not None:
        file_ids = list(resources.code_interpreter.file_ids)
        await file_service.require_files(conn, project_id, file_ids, f"{param}.code_interpreter.file_ids")
        out["code_interpreter"] = {"file_ids": file_ids}
    if resources.file_search is not None:
        fs = resources.file_search
        store_ids = list(fs.vector_store_ids or [])
        if fs.vector_stores:
            if store_ids:
                raise InvalidRequest(
                    "Only one of 'vector_store_ids' or 'vector_stores' may be given: a thread or an assistant "
                    "has at most one vector store.", param=f"{param}.file_search")
            store_ids = [await create_helper_store(conn, project_id, fs.vector_stores[0],
                                                   param=f"{param}.file_search.vector_stores[0]",
                                                   for_thread=for_thread)]
        else:
            from assistd.services import vector_stores

            await vector_stores.require_stores(conn, project_id, store_ids,
                                               f"{param}.file_search.vector_store_ids")
        out["file_search"] = {"vector_store_ids": store_ids}
    return out


async def create_helper_store(conn: AsyncConnection, project_id: str, helper: Any, *, param: str,
                              for_thread: bool) -> str:
    """A vector store from the helper's files (ingested in the background, like any store's); its id."""
    from assistd.services import vector_stores

    await file_service.require_files(conn, project_id, list(helper.file_ids), f"{param}.file_ids")
    chunking = helper.chunking_strategy.model_dump(exclude_none=True) if helper.chunking_strategy else None
    store = await vector_stores.create_store(
        conn, project_id, file_ids=list(helper.file_ids), chunking_strategy=chunking,
        metadata=helper.metadata, expires_after=dict(THREAD_STORE_EXPIRY) if for_thread else None)
    store_id: str = store["id"]
    return store_id


async def merge_tool_resources(
    conn: AsyncConnection, project_id: str, current: dict[str, Any], update: ToolResources, *,
    for_thread: bool = False,
) -> dict[str, Any]:
    """Modify: each tool's resources given replace that tool's, the others stay."""
    return {**current, **await tool_resources_dict(conn, project_id, update, for_thread=for_thread)}
