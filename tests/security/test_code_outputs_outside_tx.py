"""A run's code outputs (up to 20 files of up to the upload limit) are copied into the blob store outside
any transaction: while they are copied, every other write of the server still commits (issue 11, item 9).

SQLite has one writer: a copy made inside the write transaction would hold it, and the write below would
wait for the copy — which waits for that write: the test would hang instead of passing.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from assistd import ids
from assistd.blobstore import LocalBlobStore
from assistd.store import keys, objects
from assistd.store.db import Database
from assistd.store.tables import files, threads
from assistd.tools.code_interpreter.results import CreatedFile, ExecutionResult, Image
from assistd.tools.code_outputs import save_outputs


class HeldCopy(LocalBlobStore):
    """A blob store whose copies start, then wait until the test lets them finish."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.copying = asyncio.Event()
        self.finish = asyncio.Event()

    async def put(self, key: str, chunks: AsyncIterator[bytes], max_bytes: int) -> int:
        self.copying.set()
        await self.finish.wait()
        return await super().put(key, chunks, max_bytes)


def test_another_write_commits_while_code_outputs_are_copied(server, database_url, tmp_path):
    out = tmp_path / "mnt"
    out.mkdir()
    (out / "table.csv").write_bytes(b"a,b\n1,2\n")
    result = ExecutionResult(outputs=[Image(b"\x89PNG fake")],
                             files_created=[CreatedFile(out / "table.csv", "table.csv", 8)])

    async def main() -> None:
        db = Database(database_url, pool_size=2)
        blobs = HeldCopy(tmp_path / "blobs")
        try:
            async with db.write() as conn:
                project = await keys.ensure_project(conn, "code-outputs-" + ids.random_base62(8))
            saving = asyncio.create_task(save_outputs(db, blobs, project, "call_x", result))
            await blobs.copying.wait()
            thread = {"id": ids.new_id("thread"), "object": "thread", "created_at": ids.now(), "metadata": {},
                      "tool_resources": {}}
            async with db.write() as conn:  # another request's write, while the copy is under way
                await objects.insert_object(conn, threads, thread, project_id=project)
            assert not saving.done()
            blobs.finish.set()
            saved = await saving
            assert len(saved.images) == 1 and list(saved.written) == ["table.csv"]
            async with db.read() as conn:
                for file_id in [*saved.images, *saved.written.values()]:
                    row = await objects.get_object(conn, files, file_id, project_id=project)
                    assert row is not None and row["purpose"] == "assistants_output"
                    assert await blobs.exists(file_id)
        finally:
            blobs.finish.set()
            await db.close()

    asyncio.run(asyncio.wait_for(main(), 30))  # a guard against a hang, not a timing: the write never came
