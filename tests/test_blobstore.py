"""One contract for every blob store backend, without the HTTP server.

A backend joins by adding a ``Backend`` factory to ``BACKENDS``: the store plus a way to list every
object it holds (temporary ones included), so "nothing left behind" can be checked the same way
everywhere. An S3 backend would list its bucket prefix there, and skip when no server answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from assistd.blobstore import BadKey, BlobNotFound, BlobStore, LocalBlobStore, TooLarge
from assistd.blobstore.base import CHUNK_SIZE

ALL_BYTES = bytes(range(256)) * 4


@dataclass
class Backend:
    store: BlobStore
    leftovers: Callable[[], list[str]]  # every stored object, complete or not


def local_backend(tmp_path: Path) -> Backend:
    root = tmp_path / "blobs"
    return Backend(LocalBlobStore(root),
                   lambda: sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()))


BACKENDS: dict[str, Callable[[Path], Backend]] = {"local": local_backend}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    yield BACKENDS[request.param](tmp_path)


def run(coro: Coroutine[Any, Any, Any], timeout: float = 20) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def chunks_of(data: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


async def collect(it: AsyncIterator[bytes]) -> list[bytes]:
    return [chunk async for chunk in it]


def test_put_open_read_round_trip(backend: Backend) -> None:
    store = backend.store

    async def main() -> None:
        assert not await store.exists("file-abc")
        assert await store.put("file-abc", chunks_of(ALL_BYTES, 7), max_bytes=len(ALL_BYTES)) == len(ALL_BYTES)
        assert await store.exists("file-abc")
        assert b"".join(await collect(await store.open("file-abc"))) == ALL_BYTES
        assert await store.read("file-abc", max_bytes=len(ALL_BYTES)) == ALL_BYTES
        assert await store.put("empty", chunks_of(b""), max_bytes=0) == 0
        assert await store.read("empty", max_bytes=0) == b""
        assert await collect(await store.open("empty")) == []

    run(main())
    assert len(backend.leftovers()) == 2


def test_open_streams_in_chunks(backend: Backend) -> None:
    data = bytes(range(256)) * 1024  # 256 KiB
    store = backend.store

    async def main() -> list[bytes]:
        await store.put("big", chunks_of(data, 100_000), max_bytes=len(data))
        return await collect(await store.open("big"))

    chunks = run(main())
    assert b"".join(chunks) == data
    assert len(chunks) > 1 and max(map(len, chunks)) <= CHUNK_SIZE


def test_put_replaces(backend: Backend) -> None:
    async def main() -> bytes:
        await backend.store.put("k", chunks_of(b"old"), max_bytes=10)
        await backend.store.put("k", chunks_of(b"new!"), max_bytes=10)
        return await backend.store.read("k", max_bytes=10)

    assert run(main()) == b"new!"
    assert len(backend.leftovers()) == 1


def test_missing_and_delete(backend: Backend) -> None:
    store = backend.store

    async def main() -> None:
        with pytest.raises(BlobNotFound):
            await store.open("nope")
        with pytest.raises(BlobNotFound):
            await store.read("nope", max_bytes=10)
        await store.delete("nope")  # idempotent
        await store.put("k", chunks_of(b"x"), max_bytes=1)
        await store.delete("k")
        await store.delete("k")
        assert not await store.exists("k")
        with pytest.raises(BlobNotFound):
            await store.open("k")

    run(main())
    assert backend.leftovers() == []


def test_too_large_leaves_nothing(backend: Backend) -> None:
    store = backend.store

    async def main() -> None:
        assert await store.put("exact", chunks_of(b"x" * 100), max_bytes=100) == 100
        with pytest.raises(TooLarge) as err:
            await store.put("over", chunks_of(b"x" * 101), max_bytes=100)
        assert err.value.limit == 100
        assert not await store.exists("over")
        with pytest.raises(TooLarge):
            await store.read("exact", max_bytes=99)

    run(main())
    assert len(backend.leftovers()) == 1


@pytest.mark.parametrize("key", ["../etc/passwd", "a/b", "", "a.b", ".hidden", "x" * 129, "nul\x00", "é", "a b"])
def test_bad_keys_refused_everywhere(backend: Backend, key: str) -> None:
    store = backend.store

    async def main() -> None:
        for call in (
            lambda: store.put(key, chunks_of(b"x"), max_bytes=10),
            lambda: store.open(key),
            lambda: store.read(key, max_bytes=10),
            lambda: store.delete(key),
            lambda: store.exists(key),
        ):
            with pytest.raises(BadKey):
                await call()

    run(main())
    with pytest.raises(BadKey):
        store.local_path(key)
    assert backend.leftovers() == []


def test_failed_source_leaves_nothing(backend: Backend) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"a" * 5000
        raise ConnectionResetError("client went away")

    async def main() -> None:
        with pytest.raises(ConnectionResetError):
            await backend.store.put("k", broken(), max_bytes=10_000)
        assert not await backend.store.exists("k")

    run(main())
    assert backend.leftovers() == []


def test_put_is_atomic_and_cancellable(backend: Backend) -> None:
    """Until put returns, readers see no blob (not a partial one); a cancelled put leaves nothing."""
    store = backend.store

    async def main() -> None:
        half_written = asyncio.Event()
        release = asyncio.Event()

        async def slow() -> AsyncIterator[bytes]:
            yield b"a" * 2_000_000  # past any write buffer: bytes really reach the backend
            half_written.set()
            await release.wait()
            yield b"b"

        task = asyncio.create_task(store.put("k", slow(), max_bytes=10_000_000))
        await half_written.wait()
        await asyncio.sleep(0.05)
        assert not await store.exists("k")
        with pytest.raises(BlobNotFound):
            await store.open("k")
        release.set()
        assert await task == 2_000_001
        assert len(await store.read("k", max_bytes=10_000_000)) == 2_000_001

        hang = asyncio.Event()

        async def stuck() -> AsyncIterator[bytes]:
            yield b"c" * 2_000_000
            await hang.wait()
            yield b"never"

        task = asyncio.create_task(store.put("cancelled", stuck(), max_bytes=10_000_000))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not await store.exists("cancelled")

    run(main())
    assert len(backend.leftovers()) == 1


def test_local_layout(tmp_path: Path) -> None:
    """Keys are sharded under the root and never used as anything but the last path segment."""
    store = LocalBlobStore(tmp_path)
    path = store.local_path("file-abc")
    assert path is not None and path.name == "file-abc"
    assert path.parent.parent.parent == tmp_path and len(path.parent.name) == 2
    run(store.put("file-abc", chunks_of(b"hi"), max_bytes=2))
    assert path.read_bytes() == b"hi"
