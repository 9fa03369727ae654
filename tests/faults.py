"""Private services the fault tests may stop and restart without touching anyone else's: a PostgreSQL cluster
(bench/privatepg.py), a redis-server, and a watcher that records every status code a
server answers while the fault lasts."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from bench.privatepg import PG_BIN, PrivatePostgres
from bench.privatepg import private_postgres as bench_private_postgres

from tests.servers import free_port


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"no PostgreSQL binaries in {PG_BIN} (ASSISTD_TEST_PG_BIN)")
    with bench_private_postgres() as pg:
        yield pg


class PrivateRedis:
    def __init__(self) -> None:
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server is not installed")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PrivateRedis:
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import socket

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class Watcher:
    """GETs ``urls`` in a loop from a thread and counts the status codes (0 = no answer at all)."""

    def __init__(self, urls: list[str], headers: dict[str, str] | None = None) -> None:
        self.urls, self.headers = urls, headers or {}
        self.codes: Counter[int] = Counter()
        self.bodies: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        with httpx.Client(headers=self.headers, timeout=10) as http:
            while not self._stop.is_set():
                for url in self.urls:
                    self._get(http, url)
                time.sleep(0.05)

    def _get(self, http: httpx.Client, url: str) -> None:
        try:
            response = http.get(url)
        except httpx.TransportError:
            # A reused keep-alive connection may be reset under a request (the SDKs retry that at once):
            # "no answer" is when a fresh connection gets none either.
            try:
                response = httpx.get(url, headers=self.headers, timeout=10)
            except httpx.HTTPError as exc:
                self.codes[0] += 1
                if len(self.bodies) < 5:
                    self.bodies.append(f"{url}: no answer ({type(exc).__name__}: {exc})")
                return
        self.codes[response.status_code] += 1
        if response.status_code >= 500 and len(self.bodies) < 5:
            self.bodies.append(f"{url}: {response.status_code} {response.text[:300]}")

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)
