"""heap_trim.py: a process that executes runs gives free heap memory back to the OS periodically."""

from __future__ import annotations

import asyncio
import sys

import pytest

from assistd.heap_trim import HeapTrimmer, malloc_trim


def test_the_trimmer_trims_again_and_again_until_stopped() -> None:
    calls: list[int] = []

    async def main() -> None:
        trimmer = HeapTrimmer(every=0.01, trim=lambda: calls.append(1))
        await trimmer.start()
        while trimmer.trims < 3:
            await asyncio.sleep(0.01)
        await trimmer.stop()
        stopped_at = len(calls)
        await asyncio.sleep(0.05)
        assert len(calls) == stopped_at == trimmer.trims

    asyncio.run(asyncio.wait_for(main(), 30))


def test_a_failing_trim_stops_the_loop_without_raising() -> None:
    def broken() -> None:
        raise OSError("no")

    async def main() -> None:
        trimmer = HeapTrimmer(every=0.01, trim=broken)
        await trimmer.start()
        assert trimmer._task is not None
        await asyncio.wait_for(trimmer._task, 10)  # the loop ends by itself
        assert trimmer.trims == 0
        await trimmer.stop()

    asyncio.run(main())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_glibc_malloc_trim_is_found_and_callable() -> None:
    trim = malloc_trim()
    assert trim is not None
    trim()
