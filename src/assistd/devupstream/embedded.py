"""The scripted model served inside ``assistd serve`` when no upstream is configured.

A newcomer's ``make run`` then reaches a completed run (in the console's Playground or with the SDK)
without starting ``assistd dev-upstream`` in a second terminal. It listens on a free loopback port of
its own (a real HTTP server, so replies stream exactly as from a separate process) and stops with the app.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import uvicorn

from .server import build_app


class _QuietServer(uvicorn.Server):
    """Leaves signals to the outer server: it stops this one on its way out."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class EmbeddedUpstream:
    def __init__(self) -> None:
        self.url = ""
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> str:
        """Start listening; returns the base URL to give the model router (``http://127.0.0.1:PORT/v1``)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        # log_config=None: the outer server's logging stays as configured.
        config = uvicorn.Config(build_app(), log_config=None, access_log=False, lifespan="off",
                                timeout_keep_alive=30)
        server = _QuietServer(config)
        self._server = server
        self._task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            if self._task.done():
                await self._task  # raises what stopped it
            await asyncio.sleep(0.01)
        self.url = f"http://127.0.0.1:{port}/v1"
        return self.url

    async def aclose(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._task, 5)
