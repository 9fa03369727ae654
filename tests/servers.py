"""Start ``assistd`` sub-commands as real processes and wait until they answer."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def pg_admin(url: str, sql: str) -> None:
    """Run one statement (CREATE/DROP DATABASE) on a PostgreSQL server, outside any transaction."""
    import asyncio

    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveProcess:
    """``python -m assistd.cli ARGS`` with its output in a log file, ready when ``ready_path`` answers.

    ``timeout`` is only ever waited out by a process that never answers: a cold start takes seconds, but tens
    of them on a busy two-core machine (scripts/test runs two suites side by side)."""

    def __init__(
        self, args: list[str], port: int, *, env: dict[str, str] | None = None,
        ready_path: str = "/healthz", timeout: float = 90.0,
    ) -> None:
        self.args = args
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.env = {**os.environ, **(env or {})}
        self.ready_path = ready_path
        self.timeout = timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"assistd-{args[0]}-{port}.log"

    def start(self) -> LiveProcess:
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "assistd.cli", *self.args],
            env=self.env, stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT,
        )
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.args} exited early:\n{self.log_tail()}")
            try:
                if httpx.get(self.url + self.ready_path, timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.args} not ready in {self.timeout}s:\n{self.log_tail()}")

    def log(self) -> str:
        """The whole log: tests look for start-up lines in it, which access lines soon push out of any tail."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, chars: int = 5000) -> str:
        """The end of the log, for error messages."""
        return self.log()[-chars:]

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if hasattr(self, "_log"):
            self._log.close()

    def __enter__(self) -> LiveProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
