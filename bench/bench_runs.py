"""Runs through assistd vs direct chat completions to the same zero-delay scripted upstream (issue 4 b).

Each run is a create-thread-and-run whose user message the scripted upstream answers at once
(``[reply: …]``), taken to completion either

- ``stream``: ``stream: true``, read until ``event: done``; or
- ``poll``: the SDKs' ``create_and_poll``: POST, then GET the run at once and every ``openai-poll-after-ms``
  (the first answer's value, as openai-python does) until it is terminal,

against the same number of direct ``POST /v1/chat/completions`` (streamed, with usage, as assistd calls it)
read to ``[DONE]``. N of each at concurrency C, in interleaved rounds; per target: runs/s, p50/p99 latency
of one run, and the latency assistd adds (its p50/p99 minus the direct calls').

assistd is pinned to the server core; the upstream and this process's asyncio client share the load core,
so in both cases assistd alone has the server core.

    .venv/bin/python -m bench.bench_runs [--database-url postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import orjson

from bench import harness
from bench.rawhttp import Connection, sse_events

TEXT = ("[reply: The ticket is about billing: a duplicate charge on the last invoice. Refund it and tell the "
        "customer within two days.]")
INSTRUCTIONS = "Be brief."
TERMINAL = {"completed", "failed", "cancelled", "expired", "incomplete", "requires_action"}


@dataclass
class Result:
    name: str
    seconds: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds

    def p(self, q: float) -> float:
        return harness.percentile(self.latencies, q) * 1e3


async def assistd_stream(conn: Connection, assistant_id: str) -> float:
    start = time.perf_counter()
    body = {"assistant_id": assistant_id, "stream": True,
            "thread": {"messages": [{"role": "user", "content": TEXT}]}}
    status = None
    async for name, data in sse_events(conn.stream("POST", "/v1/threads/runs", body)):
        if name == "thread.run.completed":
            status = "completed"
        elif name in ("thread.run.failed", "error"):
            raise RuntimeError(f"run failed: {data[:300]!r}")
    # (read to the end of the body, past `event: done`: the connection is reused)
    if status != "completed":
        raise RuntimeError("stream ended without thread.run.completed")
    return time.perf_counter() - start


async def assistd_poll(conn: Connection, assistant_id: str) -> float:
    start = time.perf_counter()
    created = await conn.request("POST", "/v1/threads/runs", {
        "assistant_id": assistant_id, "thread": {"messages": [{"role": "user", "content": TEXT}]}})
    if created.status != 200:
        raise RuntimeError(f"create: {created.status} {created.body[:300]!r}")
    run = orjson.loads(created.body)
    path = f"/v1/threads/{run['thread_id']}/runs/{run['id']}"
    interval = None
    while True:
        got = await conn.request("GET", path)
        run = orjson.loads(got.body)
        if run["status"] in TERMINAL:
            break
        if interval is None:
            interval = int(got.headers.get("openai-poll-after-ms", "1000")) / 1000
        await asyncio.sleep(interval)
    if run["status"] != "completed":
        raise RuntimeError(f"run ended {run['status']}: {run.get('last_error')}")
    return time.perf_counter() - start


async def direct(conn: Connection, _assistant_id: str) -> float:
    start = time.perf_counter()
    body = {"model": "gpt-4o-mini", "stream": True, "stream_options": {"include_usage": True},
            "messages": [{"role": "system", "content": INSTRUCTIONS}, {"role": "user", "content": TEXT}]}
    done = False
    async for _name, data in sse_events(conn.stream("POST", "/v1/chat/completions", body)):
        if data == b"[DONE]":
            done = True
    if not done:
        raise RuntimeError("upstream stream ended without [DONE]")
    return time.perf_counter() - start


async def drive(url: str, n: int, concurrency: int, one: Callable[[Connection, str], Awaitable[float]],
                assistant_id: str, headers: dict[str, str]) -> tuple[float, list[float]]:
    """``n`` calls of ``one`` by ``concurrency`` keep-alive connections; (wall seconds, latencies)."""
    host, port = url.removeprefix("http://").split(":")
    conns = [await Connection(host, int(port), headers).open() for _ in range(concurrency)]
    left = n
    latencies: list[float] = []

    async def worker(conn: Connection) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            latencies.append(await one(conn, assistant_id))

    start = time.perf_counter()
    try:
        await asyncio.gather(*(worker(c) for c in conns))
    finally:
        for c in conns:
            await c.close()
    return time.perf_counter() - start, latencies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_runs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    harness.add_common_args(parser, rounds=3, connections=8)
    parser.add_argument("--runs", type=int, default=200, help="runs (and direct calls) per round and target")
    parser.add_argument("--modes", default="stream,poll", help="comma list of stream, poll")
    args = parser.parse_args(argv)
    command = shlex.join(["python", "-m", "bench.bench_runs", *(sys.argv[1:] if argv is None else argv)])
    auth = {"Authorization": f"Bearer {harness.TEST_KEY}"}
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    concurrency = args.connections

    print(f"# {command}\n# {harness.describe_setup()}", flush=True)
    harness.allow_many_files(4 * concurrency + 1024)
    with tempfile.TemporaryDirectory(prefix="assistd-bench-") as tmp, \
            harness.database(args.database_url, Path(tmp)) as db_url, \
            harness.dev_upstream(cpu=harness.LOAD_CPU) as upstream:
        env = {"ASSISTD_LLM_BASE_URL": upstream.url + "/v1", "ASSISTD_WORKERS": str(max(8, concurrency))}
        with harness.assistd_server(db_url, data_dir=Path(tmp), env=env) as assistd:
            assistant_id = harness.create_assistant(assistd, auth, {"model": "gpt-4o-mini",
                                                                     "instructions": INSTRUCTIONS})
            harness.pin_self_to_load_cpu()
            targets: list[tuple[str, str, Callable[[Connection, str], Awaitable[float]], dict[str, str]]] = [
                (f"assistd {m}", assistd.url, assistd_stream if m == "stream" else assistd_poll, auth)
                for m in modes]
            targets.append(("direct", upstream.url, direct, {}))
            print(f"# {db_url.split(':')[0]}; {args.runs} per round and target at concurrency {concurrency}, "
                  f"{args.rounds} rounds", flush=True)
            results: dict[str, list[Result]] = {name: [] for name, *_ in targets}
            for _name, url, one, headers in targets:  # warm-up
                asyncio.run(drive(url, min(50, args.runs), concurrency, one, assistant_id, headers))
            for i in range(1, args.rounds + 1):
                for name, url, one, headers in targets:
                    seconds, latencies = asyncio.run(drive(url, args.runs, concurrency, one, assistant_id, headers))
                    r = Result(name, seconds, latencies)
                    results[name].append(r)
                    print(f"  round {i}  {name:<15} {r.rate:8,.1f} runs/s  p50 {r.p(50):7.2f} ms  "
                          f"p99 {r.p(99):7.2f} ms", flush=True)

    def med(name: str, f: Callable[[Result], float]) -> float:
        return statistics.median(f(r) for r in results[name])

    base50, base99 = med("direct", lambda r: r.p(50)), med("direct", lambda r: r.p(99))
    print("\n| command | target | runs/s | p50 | p99 | added p50 | added p99 |\n|---|---|---|---|---|---|---|")
    for name, *_ in targets:
        p50, p99 = med(name, lambda r: r.p(50)), med(name, lambda r: r.p(99))
        added = "" if name == "direct" else f"{p50 - base50:+.2f} ms | {p99 - base99:+.2f} ms"
        print(f"| `{command}` | {name} | {med(name, lambda r: r.rate):,.1f} | {p50:.2f} ms | {p99:.2f} ms | "
              f"{added or '– | –'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
