"""Sustained mixed load against one API-only ``serve`` and two ``assistd worker`` processes on PostgreSQL.

``make load`` (or ``python -m bench.load``): N concurrent clients for D seconds on loopback, each looping over
a weighted mix — CRUD (assistants, threads, messages), streamed runs with a function call and its tool outputs,
file_search runs, vector store searches — against the scripted upstream, on a throwaway database that is
dropped afterwards. It stops by itself and prints (and with ``--json`` writes) throughput, p50/p99 per endpoint,
errors, each process's memory over time, runs that ended in an unexpected state, and streams whose events are
not exactly the hosted sequence; with ``--profile`` it records the serve with py-spy for the run's middle.

Runs per core: completed runs divided by the CPU seconds the assistd processes (serve + workers) used, read
from /proc, so the upstream's own time (a separate process) and the load generator's are not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.harness import ROOT, Server, assistd_server, dev_upstream, percentile
from bench.privatepg import private_postgres

KEY = "sk-load-0123456789abcdef"
CALL = '[tool: get_weather {"city": "Paris"}]'
SEARCH = '[tool: file_search {"query": "otters"}] [cite]'
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
TOOL_LEG = ["thread.run.created", "thread.run.queued", "thread.run.in_progress", "thread.run.step.created",
            "thread.run.step.in_progress", "thread.run.step.delta…", "thread.run.requires_action", "done"]
OUTPUTS_LEG = ["thread.run.step.completed", "thread.run.queued", "thread.run.in_progress",
               "thread.run.step.created", "thread.run.step.in_progress", "thread.message.created",
               "thread.message.in_progress", "thread.message.delta…", "thread.message.completed",
               "thread.run.step.completed", "thread.run.completed", "done"]
MIX = (("crud", 4), ("streamed_tool_run", 3), ("file_search_run", 2), ("search", 1))


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter[str] = field(default_factory=Counter)
    error_samples: list[str] = field(default_factory=list)
    scenarios: Counter[str] = field(default_factory=Counter)
    runs: Counter[str] = field(default_factory=Counter)
    unexpected_runs: list[str] = field(default_factory=list)
    bad_streams: list[str] = field(default_factory=list)
    streams: int = 0

    def error(self, label: str, detail: str) -> None:
        self.errors[label] += 1
        if len(self.error_samples) < 20:
            self.error_samples.append(f"{label}: {detail[:300]}")


class Client:
    """One simulated user: a keep-alive connection pool shared by all, timings recorded per endpoint."""

    def __init__(self, http: httpx.AsyncClient, tally: Tally, fixtures: dict[str, str]) -> None:
        self.http, self.tally, self.fx = http, tally, fixtures

    async def call(self, method: str, path: str, label: str, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            response = await self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            self.tally.error(label, f"{type(exc).__name__}: {exc}")
            return None
        self.tally.latencies[label].append(time.perf_counter() - started)
        if response.status_code != 200:
            self.tally.error(label, f"{response.status_code} {response.text}")
            return None
        return response.json()

    async def stream(self, path: str, label: str, body: dict[str, Any]) -> tuple[list[str], dict[str, Any] | None]:
        """The stream's event names (delta runs collapsed to ``name…``) and the last run object it carried.
        An event of another run than the stream's (a run, step or message object naming a second run id) is
        added to the names as ``name(other run)``, so the stream no longer matches any expected sequence."""
        names: list[str] = []
        run = None
        run_ids: set[str] = set()
        started = time.perf_counter()
        try:
            async with self.http.stream("POST", path, json=body) as response:
                if response.status_code != 200:
                    self.tally.error(label, f"{response.status_code} {(await response.aread())[:300]!r}")
                    return [], None
                event = None
                async for line in response.aiter_lines():
                    if line.startswith("event: "):
                        event = line[7:]
                        name = event + "…" if event.endswith(".delta") else event
                        if not (names and names[-1] == name and name.endswith("…")):
                            names.append(name)
                    elif line.startswith("data: ") and event and event.startswith("thread.") \
                            and not event.endswith(".delta"):
                        data = json.loads(line[6:])
                        is_run = event.startswith("thread.run.") and not event.startswith("thread.run.step")
                        run_id = data.get("id") if is_run else data.get("run_id")
                        if run_id:
                            run_ids.add(run_id)
                            if len(run_ids) > 1:
                                names.append(f"{event}(other run)")
                        if is_run:
                            run = data
        except httpx.HTTPError as exc:
            self.tally.error(label, f"{type(exc).__name__}: {exc}")
            return names, None
        self.tally.latencies[label].append(time.perf_counter() - started)
        self.tally.streams += 1
        return names, run

    def expect_run(self, run: dict[str, Any] | None, status: str, what: str) -> None:
        got = run["status"] if run else "none"
        self.tally.runs[f"{what}: {got}"] += 1
        if got != status:
            self.tally.unexpected_runs.append(f"{what} {run['id'] if run else '?'} ended {got}, expected {status}")

    def expect_events(self, names: list[str], expected: list[str], what: str) -> None:
        if names != expected:
            self.tally.bad_streams.append(f"{what}: {names}")

    async def crud(self) -> None:
        a = await self.call("POST", "/assistants", "POST /assistants", json={"model": "gpt-4o-mini", "name": "load"})
        if a:
            await self.call("GET", f"/assistants/{a['id']}", "GET /assistants/{id}")
            await self.call("POST", f"/assistants/{a['id']}", "POST /assistants/{id}", json={"name": "load2"})
            await self.call("GET", "/assistants", "GET /assistants", params={"limit": 20})
            await self.call("DELETE", f"/assistants/{a['id']}", "DELETE /assistants/{id}")
        t = await self.call("POST", "/threads", "POST /threads", json={"messages": [{"role": "user", "content": "x"}]})
        if t:
            await self.call("POST", f"/threads/{t['id']}/messages", "POST /threads/{id}/messages",
                            json={"role": "user", "content": "more"})
            await self.call("GET", f"/threads/{t['id']}/messages", "GET /threads/{id}/messages")
            await self.call("DELETE", f"/threads/{t['id']}", "DELETE /threads/{id}")

    async def streamed_tool_run(self) -> None:
        t = await self.call("POST", "/threads", "POST /threads", json={"messages": [{"role": "user", "content": CALL}]})
        if not t:
            return
        names, run = await self.stream(f"/threads/{t['id']}/runs", "POST /threads/{id}/runs (stream)",
                                       {"assistant_id": self.fx["tool_assistant"], "stream": True})
        self.expect_events(names, TOOL_LEG, "tool leg")
        self.expect_run(run, "requires_action", "streamed tool run, first leg")
        if not run or run["status"] != "requires_action":
            return
        outputs = [{"tool_call_id": c["id"], "output": "sunny"}
                   for c in run["required_action"]["submit_tool_outputs"]["tool_calls"]]
        names, run = await self.stream(f"/threads/{t['id']}/runs/{run['id']}/submit_tool_outputs",
                                       "POST /threads/{id}/runs/{id}/submit_tool_outputs (stream)",
                                       {"tool_outputs": outputs, "stream": True})
        self.expect_events(names, OUTPUTS_LEG, "tool outputs leg")
        self.expect_run(run, "completed", "streamed tool run")

    async def file_search_run(self) -> None:
        run = await self.call("POST", "/threads/runs", "POST /threads/runs", json={
            "assistant_id": self.fx["search_assistant"],
            "thread": {"messages": [{"role": "user", "content": SEARCH}]}})
        while run and run["status"] in ("queued", "in_progress"):
            await asyncio.sleep(0.2)
            run = await self.call("GET", f"/threads/{run['thread_id']}/runs/{run['id']}",
                                  "GET /threads/{id}/runs/{id}")
        self.expect_run(run, "completed", "file_search run")

    async def search(self) -> None:
        page = await self.call("POST", f"/vector_stores/{self.fx['store']}/search", "POST /vector_stores/{id}/search",
                               json={"query": "otters holding hands"})
        if page is not None and not page["data"]:
            self.tally.error("POST /vector_stores/{id}/search", "no results")

    async def loop(self, until: float, rng: random.Random) -> None:
        names, weights = zip(*MIX, strict=True)
        while time.monotonic() < until:
            scenario = rng.choices(names, weights)[0]
            self.tally.scenarios[scenario] += 1
            await getattr(self, scenario)()


async def setup(http: httpx.AsyncClient) -> dict[str, str]:
    async def post(path: str, **kwargs: Any) -> dict[str, Any]:
        response = await http.post(path, **kwargs)
        response.raise_for_status()
        return response.json()

    file = await post("/files", files={"file": ("otters.txt", b"Otters hold hands while they sleep.")},
                      data={"purpose": "assistants"})
    store = await post("/vector_stores", json={"name": "load", "file_ids": [file["id"]]})
    for _ in range(600):
        if (await http.get(f"/vector_stores/{store['id']}")).json()["file_counts"]["completed"] == 1:
            break
        await asyncio.sleep(0.1)
    tool = await post("/assistants", json={"model": "gpt-4o-mini", "tools": [WEATHER]})
    search = await post("/assistants", json={"model": "gpt-4o-mini", "tools": [{"type": "file_search"}],
                                              "tool_resources": {"file_search": {"vector_store_ids": [store["id"]]}}})
    return {"store": store["id"], "tool_assistant": tool["id"], "search_assistant": search["id"]}


# ------------------------------------------------------------------------------------------------ processes


def rss_mib(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker(database_url: str, data_dir: Path, upstream_url: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "ASSISTD_DATABASE_URL": database_url, "ASSISTD_DATA_DIR": str(data_dir),
           "ASSISTD_API_KEYS": KEY, "ASSISTD_LLM_BASE_URL": f"{upstream_url}/v1", "ASSISTD_LLM_API_KEY": "x",
           "ASSISTD_EMBEDDINGS": "upstream:text-embedding-3-small"}
    log = open(Path(tempfile.gettempdir()) / f"load-worker-{secrets.token_hex(3)}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "assistd.cli", "worker"], env=env, cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while "executing up to" not in Path(log.name).read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"worker did not start:\n{Path(log.name).read_text(errors='replace')[-3000:]}")
        time.sleep(0.1)
    return proc


async def db_sessions(url: str) -> int:
    """Sessions opened on the database so far (PostgreSQL 14+): connections the pools opened and closed
    again under load show here."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
                   or 0)
    finally:
        await conn.close()


@contextlib.contextmanager
def throwaway_database(admin_url: str):
    import asyncpg

    name = "assistd_load_" + secrets.token_hex(5)

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.rsplit("/", 1)[0] + "/" + name
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# ------------------------------------------------------------------------------------------------ the run


async def drive(base_url: str, clients: int, duration: float, pids: dict[str, int], seed: int) -> dict[str, Any]:
    # Idle connections are dropped by the client after 2 s, before uvicorn's 5 s keep-alive timeout closes them
    # under a request just sent (a ReadError that says nothing about the server).
    limits = httpx.Limits(max_connections=clients + 10, max_keepalive_connections=clients + 10,
                          keepalive_expiry=2.0)
    headers = {"Authorization": f"Bearer {KEY}", "OpenAI-Beta": "assistants=v2"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, limits=limits, timeout=60) as http:
        fixtures = await setup(http)
        tally = Tally()
        memory: list[dict[str, float]] = []
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        started = time.monotonic()
        until = started + duration

        async def sample() -> None:
            while time.monotonic() < until + 1:
                memory.append({"t": round(time.monotonic() - started, 1),
                               **{name: round(rss_mib(pid), 1) for name, pid in pids.items()}})
                await asyncio.sleep(max(1.0, duration / 30))

        sampler = asyncio.create_task(sample())
        await asyncio.gather(*(Client(http, tally, fixtures).loop(until, random.Random(seed + i))
                               for i in range(clients)))
        elapsed = time.monotonic() - started
        sampler.cancel()
        cpu = {name: round(cpu_seconds(pid) - cpu_before[name], 1) for name, pid in pids.items()}
    return summarise(tally, elapsed, clients, memory, cpu)


def summarise(tally: Tally, elapsed: float, clients: int, memory: list[dict[str, float]],
              cpu: dict[str, float]) -> dict[str, Any]:
    requests = sum(len(v) for v in tally.latencies.values())
    completed = sum(n for key, n in tally.runs.items() if key.endswith(": completed"))
    assistd_cpu = sum(v for k, v in cpu.items() if k != "upstream")
    return {
        "clients": clients, "seconds": round(elapsed, 1), "load_average_1m": round(os.getloadavg()[0], 1),
        "requests": requests,
        "requests_per_s": round(requests / elapsed, 1), "runs_completed": completed,
        "runs_per_s": round(completed / elapsed, 2),
        "runs_per_assistd_cpu_s": round(completed / assistd_cpu, 2) if assistd_cpu else None,
        "cpu_seconds": cpu, "scenarios": dict(tally.scenarios), "run_outcomes": dict(tally.runs),
        "errors": sum(tally.errors.values()), "errors_by_endpoint": dict(tally.errors),
        "error_samples": tally.error_samples,
        "unexpected_runs": len(tally.unexpected_runs), "unexpected_run_samples": tally.unexpected_runs[:10],
        "streams": tally.streams, "bad_streams": len(tally.bad_streams), "bad_stream_samples": tally.bad_streams[:5],
        "endpoints": {label: {"n": len(v), "p50_ms": round(percentile(v, 50) * 1000, 1),
                              "p99_ms": round(percentile(v, 99) * 1000, 1)}
                      for label, v in sorted(tally.latencies.items())},
        "memory_mib": memory,
        "rss_growth_mib_per_min": rss_growth(memory),
    }


def rss_growth(memory: list[dict[str, float]], warm_up: float = 60.0) -> dict[str, float]:
    """Each process's RSS growth after ``warm_up`` seconds, in MiB a minute (from the first sample past it to
    the last): "flat after warm-up" is about 0."""
    later = [m for m in memory if m["t"] >= warm_up]
    if len(later) < 2 or later[-1]["t"] <= later[0]["t"]:
        return {}
    minutes = (later[-1]["t"] - later[0]["t"]) / 60
    return {name: round((later[-1][name] - later[0][name]) / minutes, 2) for name in later[0] if name != "t"}


def render(result: dict[str, Any]) -> str:
    lines = [f"{result['clients']} clients, {result['seconds']} s: {result['requests']} requests "
             f"({result['requests_per_s']}/s), {result['runs_completed']} runs completed ({result['runs_per_s']}/s, "
             f"{result['runs_per_assistd_cpu_s']} per assistd CPU-second), {result['streams']} streams",
             f"errors {result['errors']}, unexpected run states {result['unexpected_runs']}, "
             f"streams out of sequence {result['bad_streams']}", f"CPU seconds: {result['cpu_seconds']}",
             f"load average (1 min) at the end: {result['load_average_1m']}; "
             f"database sessions opened during the load: {result.get('db_sessions_opened')}", "",
             "| endpoint | n | p50 ms | p99 ms |", "|---|---|---|---|"]
    lines += [f"| `{label}` | {e['n']} | {e['p50_ms']} | {e['p99_ms']} |" for label, e in result["endpoints"].items()]
    names = [k for k in result["memory_mib"][0] if k != "t"] if result["memory_mib"] else []
    lines += ["", "| t (s) | " + " | ".join(f"{n} RSS MiB" for n in names) + " |", "|---" * (len(names) + 1) + "|"]
    lines += [f"| {m['t']} | " + " | ".join(str(m[n]) for n in names) + " |" for m in result["memory_mib"]]
    lines += ["", f"RSS growth after the first minute, MiB a minute: {result['rss_growth_mib_per_min']}"]
    for key in ("error_samples", "unexpected_run_samples", "bad_stream_samples"):
        lines += [f"{key}: {sample}" for sample in result[key]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of load (after setup)")
    parser.add_argument("--database-url", help="a PostgreSQL server on which a throwaway database is created "
                        "and dropped; default: a private cluster (initdb in a temp dir, on a free port), so the "
                        "load neither shares nor exhausts anyone's max_connections")
    parser.add_argument("--workers", type=int, default=2, help="`assistd worker` processes")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the result here")
    parser.add_argument("--profile", type=Path, help="py-spy the serve for the middle of the run into this file")
    args = parser.parse_args(argv)

    with contextlib.ExitStack() as stack:
        admin = args.database_url or stack.enter_context(private_postgres()).url
        url = stack.enter_context(throwaway_database(admin))
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="assistd-load-"))
        workers: list[subprocess.Popen[bytes]] = []
        with dev_upstream() as upstream:
            serve: Server = assistd_server(url, data_dir=Path(tmp), api_key=KEY, env={
                "ASSISTD_WORKERS": "0", "ASSISTD_LLM_BASE_URL": f"{upstream.url}/v1", "ASSISTD_LLM_API_KEY": "x",
                "ASSISTD_EMBEDDINGS": "upstream:text-embedding-3-small"})
            with serve:
                try:
                    workers = [worker(url, Path(tmp), upstream.url) for _ in range(args.workers)]
                    pids = {"serve": serve.proc.pid, **{f"worker{i + 1}": w.pid for i, w in enumerate(workers)},
                            "upstream": upstream.proc.pid}
                    spy = _profile(serve.proc.pid, args) if args.profile else None
                    sessions = asyncio.run(db_sessions(url))
                    result = asyncio.run(drive(f"{serve.url}/v1", args.clients, args.duration, pids, args.seed))
                    time.sleep(1.5)  # backends report their session counts at most once a second
                    result["db_sessions_opened"] = asyncio.run(db_sessions(url)) - sessions - 1
                    if spy:
                        spy.wait(120)
                finally:
                    for w in workers:
                        w.terminate()
                    for w in workers:
                        with contextlib.suppress(subprocess.TimeoutExpired):
                            w.wait(15)
    print(render(result))
    if args.profile and args.profile.exists():
        print(profile_summary(args.profile))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return result


def profile_summary(raw: Path, top: int = 15) -> str:
    """py-spy's collapsed stacks (``frame;frame;... count``) → where the serve's samples went: the leaf
    functions (self time) and the assistd modules on the stack (inclusive), as shares of all samples."""
    leaves: Counter[str] = Counter()
    modules: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        leaves[frames[-1]] += n
        for module in {f.split("(")[1].split(":")[0] for f in frames if "(assistd/" in f or "/assistd/" in f}:
            modules[module.rsplit("assistd/", 1)[-1]] += n
    if not total:
        return "no samples"
    lines = [f"{total} samples; self time by function:"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in leaves.most_common(top)]
    lines += ["inclusive, by assistd module on the stack:"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in modules.most_common(top)]
    return "\n".join(lines)


def _profile(pid: int, args: argparse.Namespace) -> subprocess.Popen[bytes] | None:
    """py-spy (from the test extra) samples the serve for the middle half of the run, rates by function."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        print("py-spy not found: no profile", file=sys.stderr)
        return None
    cmd = ["sh", "-c", f"sleep {args.duration / 4 + 5}; exec {spy} record -p {pid} -d {int(args.duration / 2)} "
           f"-r 50 -f raw -o {args.profile} --nonblocking"]
    return subprocess.Popen(cmd)


if __name__ == "__main__":
    main()
