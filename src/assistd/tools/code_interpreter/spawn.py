"""Starting a kernel process with exactly the descriptors it is given, under any event loop.

Why not ``asyncio.create_subprocess_exec``: under uvloop (the server's loop) ``close_fds`` is ignored, and
whatever is inheritable at that moment — copies of the socketpairs uvloop makes for the child's stdio,
another session's pipes being passed to its own bwrap — passes through bwrap into the sandbox (seen: three
extra sockets and a pipe inside). ``subprocess.Popen`` closes
every descriptor but 0, 1, 2 and ``pass_fds`` in the child (``close_fds=True``), whatever the loop; it runs
in a thread since forking a large server takes a while. The pipes are then handed to the loop as streams,
and the exit is awaited on a pidfd (no thread per live kernel; a 0.1 s poll where pidfds are missing).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

STDOUT_LIMIT = 2**16


class KernelProcess:
    """The parts of ``asyncio.subprocess.Process`` the sessions use: ``pid``, ``returncode``, ``stdin``
    (a StreamWriter), ``stdout`` (a StreamReader, stderr merged), ``wait()``; plus ``close()``."""

    def __init__(self, popen: subprocess.Popen[bytes], stdin: asyncio.StreamWriter, stdout: asyncio.StreamReader,
                 transports: list[asyncio.BaseTransport]) -> None:
        self._popen = popen
        self.pid = popen.pid
        self.stdin = stdin
        self.stdout = stdout
        self._transports = transports
        self._exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._watch()

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            pidfd = os.pidfd_open(self.pid)
        except (OSError, AttributeError):
            self._poller: asyncio.Task[None] | None = loop.create_task(self._poll())
            return
        self._poller = None

        def readable() -> None:
            if self._popen.poll() is not None:
                loop.remove_reader(pidfd)
                os.close(pidfd)
                if not self._exited.done():
                    self._exited.set_result(self._popen.returncode)

        loop.add_reader(pidfd, readable)

    async def _poll(self) -> None:
        while self._popen.poll() is None:
            await asyncio.sleep(0.1)
        if not self._exited.done():
            self._exited.set_result(self._popen.returncode)

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)

    def close(self) -> None:
        """Close the pipes now rather than in a finalizer that may run after the loop is closed."""
        for transport in self._transports:
            with contextlib.suppress(Exception):
                transport.close()


async def spawn(argv: Sequence[str], *, pass_fds: Sequence[int], cwd: Path, env: dict[str, str]) -> KernelProcess:
    """Start ``argv`` with stdin and stdout+stderr as pipes, ``pass_fds`` as given, no other descriptor,
    in a new session (its own process group); raises OSError if it cannot be started."""
    loop = asyncio.get_running_loop()
    popen = await asyncio.to_thread(
        subprocess.Popen, list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        pass_fds=tuple(pass_fds), close_fds=True, cwd=cwd, env=env, start_new_session=True)
    assert popen.stdin is not None and popen.stdout is not None
    transports: list[asyncio.BaseTransport] = []
    try:
        w_transport, w_protocol = await loop.connect_write_pipe(
            lambda: asyncio.streams.FlowControlMixin(loop=loop), popen.stdin)
        transports.append(w_transport)
        reader = asyncio.StreamReader(limit=STDOUT_LIMIT, loop=loop)
        r_transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader, loop=loop),
                                                      popen.stdout)
        transports.append(r_transport)
    except BaseException:
        for transport in transports:
            transport.close()
        popen.kill()
        await asyncio.to_thread(popen.wait)
        raise
    writer = asyncio.StreamWriter(w_transport, w_protocol, None, loop)
    return KernelProcess(popen, writer, reader, transports)
