"""Pieces every benchmark uses: live servers, a load generator, interleaved A/B rounds.

- ``Server``: ``assistd serve`` (``assistd_server``) or any uvicorn app by import string (``uvicorn_app``),
  started as a subprocess and returned once a path answers 200.
- ``load``: N keep-alive connections for D seconds against one URL → req/s and p50/p90/p99. Uses ``wrk``
  (cheap C; a Lua ``done`` hook prints exact percentiles) and falls back to a raw-socket asyncio client run
  in its own process (``python -m bench.harness load …``) when wrk is missing or ``BENCH_LOAD=python``.
- ``interleave``: A, B, A, B… rounds and the medians, because this machine is noisy.

With ``taskset`` and at least cores 0 and 1, servers run on core 0 and the load generator on core 1 so the
two don't fight over one core (``BENCH_PIN=0`` turns that off). A database server (PostgreSQL) is not pinned.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

ROOT = Path(__file__).resolve().parents[1]
TEST_KEY = "sk-bench-0123456789abcdef"
SERVER_CPU, LOAD_CPU = 0, 1


# --------------------------------------------------------------------------------------------------- pinning


def pinning() -> bool:
    """Whether servers and load are pinned to different cores."""
    if os.environ.get("BENCH_PIN", "1") == "0" or shutil.which("taskset") is None:
        return False
    return {SERVER_CPU, LOAD_CPU} <= os.sched_getaffinity(0)


def _pinned(cmd: list[str], cpu: int) -> list[str]:
    return ["taskset", "-c", str(cpu), *cmd] if pinning() else cmd


def describe_setup() -> str:
    tool = "wrk" if use_wrk() else "python asyncio raw-socket client (no wrk, or BENCH_LOAD=python)"
    pin = (f"server on core {SERVER_CPU}, load on core {LOAD_CPU} (taskset)" if pinning()
           else "not pinned (no taskset or fewer than 2 cores)")
    load1 = os.getloadavg()[0]  # other work on the machine shows up as noise
    return f"{os.cpu_count()} cores, load average {load1:.1f}; load generator: {tool}; pinning: {pin}"


# --------------------------------------------------------------------------------------------------- servers


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_request(
    method: str, url: str, *, headers: dict[str, str] | None = None, body: bytes | None = None,
    timeout: float = 10.0,
) -> tuple[int, dict[str, str], bytes]:
    """One plain request (stdlib only): status, lower-cased headers, body."""
    m = re.match(r"http://([^/:]+):(\d+)(/.*)?$", url)
    if not m:
        raise ValueError(f"not an http://host:port/ URL: {url}")
    conn = http.client.HTTPConnection(m.group(1), int(m.group(2)), timeout=timeout)
    try:
        conn.request(method, m.group(3) or "/", body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


@dataclass
class Server:
    """A server subprocess with its output in a log file; ``start()`` returns once ``ready_path`` answers 200."""

    name: str
    cmd: list[str]
    port: int
    env: dict[str, str] = field(default_factory=dict)
    ready_path: str = "/healthz"
    timeout: float = 60.0
    cpu: int = SERVER_CPU  # the core it is pinned to, when pinning
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return Path(tempfile.gettempdir()) / f"bench-{self.name}-{self.port}.log"

    def start(self) -> Server:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                _pinned(self.cmd, self.cpu), env={**os.environ, **self.env}, cwd=ROOT,
                stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log()}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                if http_request("GET", self.url + self.ready_path, timeout=1)[0] == 200:
                    return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} not ready in {self.timeout}s:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def create_assistant(server: Server, auth: dict[str, str], params: dict) -> str:
    """POST /v1/assistants on a running assistd; the new assistant's id."""
    status, _, raw = http_request("POST", server.url + "/v1/assistants", body=json.dumps(params).encode(),
                                  headers={**auth, "Content-Type": "application/json"})
    if status != 200:
        raise RuntimeError(f"create assistant: {status} {raw!r}")
    return json.loads(raw)["id"]


def assistd_server(database_url: str, *, data_dir: Path, api_key: str = TEST_KEY,
                   env: dict[str, str] | None = None, ablate: str | None = None) -> Server:
    """``assistd serve`` (uvicorn, uvloop, httptools, no access log) on ``database_url`` with one static key;
    ``ablate``: optimisations to switch off (``bench/ablate.py``)."""
    port = free_port()
    launcher = ["-m", "bench.ablate", ablate] if ablate else ["-m", "assistd.cli"]
    return Server(
        "assistd", [sys.executable, *launcher, "serve", "--port", str(port)], port,
        # No access log (as before it existed; set ASSISTD_ACCESS_LOG=1 in the environment to measure it).
        env={"ASSISTD_DATABASE_URL": database_url, "ASSISTD_DATA_DIR": str(data_dir),
             "ASSISTD_API_KEYS": api_key, "ASSISTD_ACCESS_LOG": os.environ.get("ASSISTD_ACCESS_LOG", "0"),
             **(env or {})},
    )


def dev_upstream(cpu: int = SERVER_CPU) -> Server:
    """The scripted OpenAI-compatible upstream (``python -m assistd.devupstream``): zero delay unless a
    message asks for one. Benchmarks that measure calls through assistd against direct calls pin it beside
    the load generator (``cpu=LOAD_CPU``), so that assistd alone has the server core in both cases."""
    port = free_port()
    return Server("devupstream", [sys.executable, "-m", "assistd.devupstream", "--port", str(port)], port,
                  ready_path="/v1/models", cpu=cpu)


def pin_self_to_load_cpu() -> None:
    """Run this process's own asyncio load generator on the load core (servers it starts later are pinned by
    ``taskset`` regardless)."""
    if pinning():
        os.sched_setaffinity(0, {LOAD_CPU})


def allow_many_files(needed: int) -> None:
    """Raise the soft open-files limit (children inherit it): a thousand streams need thousands of sockets."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed if hard == resource.RLIM_INFINITY else min(needed, hard),
                                                    hard))


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else float("nan")


def uvicorn_app(import_string: str, *, env: dict[str, str] | None = None, ready_path: str = "/") -> Server:
    """Any ASGI app served the way ``assistd serve`` serves (uvloop, httptools, no access log)."""
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", import_string, "--port", str(port), "--loop", "uvloop",
           "--http", "httptools", "--no-access-log", "--log-level", "warning"]
    return Server(import_string.rpartition(":")[0].rpartition(".")[2] or import_string, cmd, port,
                  env=env or {}, ready_path=ready_path)


@contextlib.contextmanager
def database(url: str | None, workdir: Path) -> Iterator[str]:
    """A database URL for one benchmark run: a fresh SQLite file by default (or ``url`` when it is a SQLite
    URL); for a ``postgresql://`` URL, a throwaway database on that server, dropped afterwards."""
    if not url or url == "sqlite":
        yield f"sqlite:///{workdir / 'assistd.db'}"
        return
    if url.startswith("sqlite"):
        yield url
        return
    import asyncpg
    from sqlalchemy.engine import make_url

    name = "assistd_bench_" + secrets.token_hex(6)
    admin = url.replace("postgresql+asyncpg://", "postgresql://")

    async def admin_sql(sql: str) -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin_sql(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# ------------------------------------------------------------------------------------------------------ load


@dataclass
class LoadResult:
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    requests: int
    errors: int  # socket errors and timeouts
    non_2xx: int

    def brief(self) -> str:
        bad = f", {self.errors} errors, {self.non_2xx} non-2xx" if self.errors or self.non_2xx else ""
        return (f"{self.rps:9,.0f} req/s  p50 {self.p50_ms:6.2f} ms  p90 {self.p90_ms:6.2f} ms  "
                f"p99 {self.p99_ms:6.2f} ms{bad}")


# wrk's --latency output rounds to 2 digits with varying units; this hook prints exact microseconds.
_WRK_LUA = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH %f %f %f %f %f %f %f\\n", summary.requests, summary.duration,
    e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
"""


def use_wrk() -> bool:
    return os.environ.get("BENCH_LOAD", "auto") != "python" and shutil.which("wrk") is not None


def load(url: str, *, headers: dict[str, str] | None = None, connections: int = 32,
         seconds: float = 10.0) -> LoadResult:
    """``connections`` keep-alive connections sending GET ``url`` back to back for ``seconds``."""
    headers = headers or {}
    if use_wrk():
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
            f.write(_WRK_LUA)
        try:
            cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
                   "-s", f.name]
            for name, value in headers.items():
                cmd += ["-H", f"{name}: {value}"]
            out = subprocess.run(_pinned([*cmd, url], LOAD_CPU), stdout=subprocess.PIPE, text=True, check=True).stdout
        finally:
            os.unlink(f.name)
        m = re.search(r"^BENCH (.*)$", out, re.M)
        if not m:
            raise RuntimeError(f"unexpected wrk output:\n{out}")
        reqs, dur_us, errors, non_2xx, p50, p90, p99 = (float(x) for x in m.group(1).split())
        return LoadResult(reqs / (dur_us / 1e6), p50 / 1e3, p90 / 1e3, p99 / 1e3, int(reqs), int(errors),
                          int(non_2xx))
    cmd = [sys.executable, "-m", "bench.harness", "load", url, "--connections", str(connections),
           "--seconds", str(seconds)]
    for name, value in headers.items():
        cmd += ["-H", f"{name}: {value}"]
    out = subprocess.run(_pinned(cmd, LOAD_CPU), stdout=subprocess.PIPE, text=True, check=True, cwd=ROOT).stdout
    return LoadResult(**json.loads(out.strip().splitlines()[-1]))


_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.I)


class _Conn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: send, read one response (Content-Length framed), repeat."""

    def __init__(self, request: bytes, latencies: list[float], statuses: list[int], stop: list[bool],
                 closed: asyncio.Future[None]) -> None:
        self.request, self.latencies, self.statuses, self.stop, self.closed = (
            request, latencies, statuses, stop, closed)
        self.buf = bytearray()
        self.need = -1  # bytes of the whole response once its head is parsed
        self.sent = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports don't subclass it
        self._send()

    def _send(self) -> None:
        self.sent = time.perf_counter()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.need < 0:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            m = _CONTENT_LENGTH.search(self.buf, 0, end + 2)
            if m is None:
                raise RuntimeError("response without Content-Length: the fallback client needs one")
            self.need = end + 4 + int(m.group(1))
        if len(self.buf) < self.need:
            return
        self.latencies.append(time.perf_counter() - self.sent)
        self.statuses.append(int(self.buf[9:12]))
        del self.buf[: self.need]
        self.need = -1
        if self.stop[0]:
            self.transport.close()
        else:
            self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


async def _python_load(url: str, headers: dict[str, str], connections: int, seconds: float) -> LoadResult:
    m = re.match(r"http://([^/:]+):(\d+)(/.*)?$", url)
    if not m:
        raise ValueError(f"not an http://host:port/ URL: {url}")
    host, port, path = m.group(1), int(m.group(2)), m.group(3) or "/"
    head = "".join(f"{k}: {v}\r\n" for k, v in {"Host": f"{host}:{port}", **headers}.items())
    request = f"GET {path} HTTP/1.1\r\n{head}\r\n".encode()
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    statuses: list[int] = []
    stop = [False]
    closed = [loop.create_future() for _ in range(connections)]
    started = time.perf_counter()
    for fut in closed:
        await loop.create_connection(lambda f=fut: _Conn(request, latencies, statuses, stop, f), host, port)
    await asyncio.sleep(seconds)
    stop[0] = True
    elapsed = time.perf_counter() - started
    done = len(latencies)  # responses within the window; in-flight ones finish below but are not counted
    await asyncio.wait_for(asyncio.gather(*closed), 30)
    ordered = sorted(latencies[:done])

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1e3 if ordered else 0.0

    return LoadResult(done / elapsed, pct(50), pct(90), pct(99), done, 0,
                      sum(1 for s in statuses[:done] if not 200 <= s < 400))


# ---------------------------------------------------------------------------------------------- A/B rounds


@dataclass
class Target:
    name: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    pid: int | None = None  # the server's process: its CPU time per request is reported too (Linux)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (all its threads), or None where /proc is missing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Summary:
    """Medians over rounds."""

    name: str
    runs: list[LoadResult]
    cpu_per_request_us: list[float] = field(default_factory=list)  # the server's, one per round (Linux)

    @property
    def cpu_us(self) -> float:
        return statistics.median(self.cpu_per_request_us) if self.cpu_per_request_us else float("nan")

    def _median(self, attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in self.runs)

    @property
    def rps(self) -> float:
        return self._median("rps")

    @property
    def p50_ms(self) -> float:
        return self._median("p50_ms")

    @property
    def p90_ms(self) -> float:
        return self._median("p90_ms")

    @property
    def p99_ms(self) -> float:
        return self._median("p99_ms")

    def cell(self) -> str:
        return f"{self.rps:,.0f} req/s, p50 {self.p50_ms:.2f} ms, p99 {self.p99_ms:.2f} ms"


def interleave(targets: Sequence[Target], *, connections: int, seconds: float, rounds: int,
               warmup: float = 2.0) -> list[Summary]:
    """Warm each target up, then measure them in turn (A, B, A, B…) ``rounds`` times; medians per target."""
    for t in targets:
        if warmup > 0:
            load(t.url, headers=t.headers, connections=connections, seconds=warmup)
    runs: dict[str, list[LoadResult]] = {t.name: [] for t in targets}
    # The server's CPU time per request moves far less with the machine's load than req/s do.
    cpu: dict[str, list[float]] = {t.name: [] for t in targets}
    for i in range(1, rounds + 1):
        for t in targets:
            before = cpu_seconds(t.pid) if t.pid else None
            r = load(t.url, headers=t.headers, connections=connections, seconds=seconds)
            after = cpu_seconds(t.pid) if t.pid else None
            if r.errors or r.non_2xx:
                raise RuntimeError(f"{t.name}: {r.errors} socket errors, {r.non_2xx} non-2xx responses")
            used = ""
            if before is not None and after is not None and r.requests:
                cpu[t.name].append((after - before) / r.requests * 1e6)
                used = f"  server CPU {cpu[t.name][-1]:6.1f} µs/request"
            print(f"  round {i}  {t.name:<10} {r.brief()}{used}", flush=True)
            runs[t.name].append(r)
    summaries = [Summary(t.name, runs[t.name], cpu[t.name]) for t in targets]
    for s in summaries:
        low, high = min(r.rps for r in s.runs), max(r.rps for r in s.runs)
        used = f", server CPU {statistics.median(cpu[s.name]):.1f} µs/request" if cpu[s.name] else ""
        print(f"  median   {s.name:<10} {s.cell()}{used}  (req/s range {low:,.0f}-{high:,.0f})", flush=True)
    return summaries


def server_pid(server: Server) -> int | None:
    return server.proc.pid if server.proc is not None else None  # taskset execs the server: same pid


def versus_bare(assistd: Server, path: str, route: str, headers: dict[str, str], workdir: Path, *,
                connections: int, seconds: float, rounds: int) -> tuple[Summary, Summary, int]:
    """GET ``path`` on ``assistd`` vs the bare Starlette app (``bench/bare_app.py``, one route ``route``)
    answering the identical bytes, in interleaved rounds. Returns (assistd, bare, JSON size)."""
    status, got_headers, raw = http_request("GET", assistd.url + path, headers=headers)
    if status != 200:
        raise RuntimeError(f"GET {path}: {status} {raw!r}")
    json_file = workdir / "bare.json"
    json_file.write_bytes(raw)
    env = {"BENCH_BARE_JSON_FILE": str(json_file), "BENCH_BARE_ROUTE": route}
    with uvicorn_app("bench.bare_app:app", env=env, ready_path=path) as bare:
        _, bare_headers, bare_raw = http_request("GET", bare.url + path)
        assert bare_raw == raw and bare_headers["content-type"] == got_headers["content-type"], \
            "the bare app must answer the same bytes"
        print(f"# GET {route}: {len(raw)} JSON bytes; {connections} connections, {rounds} rounds of "
              f"{seconds:g} s each", flush=True)
        a, b = interleave([Target("assistd", assistd.url + path, headers, server_pid(assistd)),
                           Target("bare", bare.url + path, pid=server_pid(bare))],
                          connections=connections, seconds=seconds, rounds=rounds)
    return a, b, len(raw)


def add_common_args(parser: argparse.ArgumentParser, *, seconds: float = 6.0, rounds: int = 5,
                    connections: int = 32) -> None:
    parser.add_argument("--database-url", help="sqlite:///… file, or a postgresql:// server (a throwaway "
                                               "database is created on it and dropped after); default: a "
                                               "fresh SQLite file")
    parser.add_argument("--connections", type=int, default=connections)
    parser.add_argument("--seconds", type=float, default=seconds, help="per round and target")
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--ablate", help="optimisations to switch off in assistd: comma list of hot, cache, "
                                         "fastread, authdict (bench/ablate.py)")


# ------------------------------------------------------------------------------------- fallback entry point


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.harness")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("load", help="the pure-Python load generator; prints one JSON LoadResult")
    p.add_argument("url")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("-H", "--header", action="append", default=[])
    args = parser.parse_args(argv)
    headers = dict(h.split(": ", 1) for h in args.header)
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        result = runner.run(_python_load(args.url, headers, args.connections, args.seconds))
    print(json.dumps(result.__dict__))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
