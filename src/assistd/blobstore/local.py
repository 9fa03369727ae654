"""Blobs as files under a directory: ``root/ab/cd/<key>``, ``abcd`` from a hash of the key.

The shard directories keep any one directory small (file ids share their ``file-`` prefix, so the key's
own first characters would not spread them). Writes go to a temporary file beside the final one, are
fsynced, then renamed into place: a blob is either whole or absent, even across a crash. Directories are
0700 and blobs 0600 (private_files.py). Disk I/O runs in worker threads so a large upload or download never
stalls the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

from assistd.blobstore.base import CHUNK_SIZE, BlobNotFound, BlobStore, TooLarge, check_key
from assistd.private_files import FILE_MODE, private_dir

# Network chunks are small (~64 KiB); gathering them into larger writes halves the thread hops per MB.
WRITE_BUFFER = 1024 * 1024


class LocalBlobStore(BlobStore):
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        digest = hashlib.sha256(check_key(key).encode()).hexdigest()
        return self.root / digest[:2] / digest[2:4] / key

    async def put(self, key: str, chunks: AsyncIterator[bytes], max_bytes: int) -> int:
        final = self._path(key)
        await asyncio.to_thread(private_dir, final.parent)
        # A leading dot and a random part: never a valid key, and never shared by two concurrent puts.
        tmp = final.parent / f".{key}.{secrets.token_hex(8)}.tmp"
        f: BinaryIO = await asyncio.to_thread(_create_private, tmp)
        size = 0
        pending: list[bytes] = []
        pending_bytes = 0
        stored = False
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise TooLarge(max_bytes)
                pending.append(chunk)
                pending_bytes += len(chunk)
                if pending_bytes >= WRITE_BUFFER:
                    data = b"".join(pending)
                    pending.clear()
                    pending_bytes = 0
                    await asyncio.to_thread(f.write, data)
            if pending:
                await asyncio.to_thread(f.write, b"".join(pending))
            await asyncio.to_thread(_commit, f, tmp, final)
            stored = True
            return size
        finally:
            if not stored:
                # Synchronous on purpose: this also runs on cancellation, where awaiting could be cut short.
                f.close()
                tmp.unlink(missing_ok=True)

    async def open(self, key: str) -> AsyncIterator[bytes]:
        path = self._path(key)
        try:
            f: BinaryIO = await asyncio.to_thread(path.open, "rb")
        except FileNotFoundError:
            raise BlobNotFound(key) from None
        return _iterate(f)

    async def read(self, key: str, max_bytes: int) -> bytes:
        return await asyncio.to_thread(self._read, key, max_bytes)

    def _read(self, key: str, max_bytes: int) -> bytes:
        try:
            with self._path(key).open("rb") as f:
                if os.fstat(f.fileno()).st_size > max_bytes:
                    raise TooLarge(max_bytes)
                return f.read()
        except FileNotFoundError:
            raise BlobNotFound(key) from None

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._path(key).unlink, missing_ok=True)

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self._path(key).is_file)

    def local_path(self, key: str) -> Path | None:
        return self._path(key)


def _create_private(path: Path) -> BinaryIO:
    """A new file only the server's user can read (0600, whatever the umask)."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE), "wb")


def _commit(f: BinaryIO, tmp: Path, final: Path) -> None:
    """Make the bytes durable, then the name: fsync the file, rename it, fsync the directory."""
    f.flush()
    os.fsync(f.fileno())
    f.close()
    os.replace(tmp, final)
    fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


async def _iterate(f: BinaryIO) -> AsyncIterator[bytes]:
    # An open file survives its unlink on POSIX: a download under way finishes even if the blob is deleted.
    try:
        while chunk := await asyncio.to_thread(f.read, CHUNK_SIZE):
            yield chunk
    finally:
        f.close()
