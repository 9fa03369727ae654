"""Streaming runs at scale (issue 5): one ``assistd serve`` holding many concurrent streamed runs against a
zero-delay scripted upstream, and the time to the first token it adds over calling the upstream directly.

1. **Latency** (``--latency-runs``, concurrency 1): time from sending the request to the first
   ``thread.message.delta`` of a streamed create-thread-and-run, against the time from sending a streamed
   chat completion to the upstream directly to its first content chunk; interleaved rounds. Target: added
   p50 ≤ 5 ms.
2. **Scale** (``--streams``, default 1,000): that many streamed create-thread-and-runs sent at once on as
   many connections; every stream must end with ``thread.run.completed`` and ``done``, and the text
   reassembled from its deltas must equal the message stored (read back after). Reports the wall time,
   the peak number of streams open at once, TTFT percentiles (against the same number of direct upstream
   streams at once), and the server's peak RSS (VmRSS sampled every 20 ms). Target: RSS ≤ 300 MB.

assistd runs with ``ASSISTD_WORKERS`` = the stream count (``--workers`` to change it): every run gets a
slot at once; with fewer, the rest wait queued for a free slot and their TTFT grows accordingly.
assistd is pinned to the server core; the upstream and this process's asyncio client share the load core.

    .venv/bin/python -m bench.bench_streams [--database-url postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from bench import harness
from bench.rawhttp import Connection, sse_events

WORDS = ("Thanks for writing in. The duplicate charge on your last invoice has been refunded and should "
         "appear within two business days. Anything else we can help with today?")
INSTRUCTIONS = "Be brief."


@dataclass
class Stream:
    ttft: float = float("nan")  # seconds from send to the first content
    seconds: float = float("nan")
    text: list[str] = field(default_factory=list)
    completed_text: str | None = None
    thread_id: str | None = None
    message_id: str | None = None
    status: str | None = None
    done: bool = False
    error: str | None = None


class Gauge:
    """Streams open right now, and the most at once."""

    def __init__(self) -> None:
        self.now = self.peak = 0

    def __enter__(self) -> Gauge:
        self.now += 1
        self.peak = max(self.peak, self.now)
        return self

    def __exit__(self, *exc: object) -> None:
        self.now -= 1


async def assistd_stream(conn: Connection, assistant_id: str, n: int, gauge: Gauge | None = None) -> Stream:
    s = Stream()
    body = {"assistant_id": assistant_id, "stream": True,
            "thread": {"messages": [{"role": "user", "content": f"[reply: {WORDS} ({n})]"}]}}
    start = time.perf_counter()
    try:
        with gauge or Gauge():
            async for name, data in sse_events(conn.stream("POST", "/v1/threads/runs", body)):
                if name == "thread.message.delta":
                    if s.text == []:
                        s.ttft = time.perf_counter() - start
                    delta = orjson.loads(data)
                    s.text += [part["text"]["value"] for part in delta["delta"]["content"] if part["type"] == "text"]
                elif name == "thread.created":
                    s.thread_id = orjson.loads(data)["id"]
                elif name == "thread.message.created":
                    s.message_id = orjson.loads(data)["id"]
                elif name == "thread.message.completed":
                    s.completed_text = orjson.loads(data)["content"][0]["text"]["value"]
                elif name and name.startswith("thread.run.") and name.rsplit(".", 1)[1] in (
                        "completed", "failed", "cancelled", "expired", "incomplete", "requires_action"):
                    s.status = name.rsplit(".", 1)[1]
                elif name == "error":
                    s.error = data.decode()[:300]
                elif name == "done":
                    s.done = True
    except Exception as exc:  # noqa: BLE001 - recorded and reported
        s.error = f"{type(exc).__name__}: {exc}"
    s.seconds = time.perf_counter() - start
    return s


async def direct_stream(conn: Connection, n: int, gauge: Gauge | None = None) -> Stream:
    s = Stream()
    body = {"model": "gpt-4o-mini", "stream": True, "stream_options": {"include_usage": True},
            "messages": [{"role": "system", "content": INSTRUCTIONS},
                         {"role": "user", "content": f"[reply: {WORDS} ({n})]"}]}
    start = time.perf_counter()
    try:
        with gauge or Gauge():
            async for _name, data in sse_events(conn.stream("POST", "/v1/chat/completions", body)):
                if data == b"[DONE]":
                    s.done = True
                    continue
                for choice in orjson.loads(data).get("choices") or ():
                    piece = (choice.get("delta") or {}).get("content")
                    if piece:
                        if not s.text:
                            s.ttft = time.perf_counter() - start
                        s.text.append(piece)
        s.status = "completed"
    except Exception as exc:  # noqa: BLE001
        s.error = f"{type(exc).__name__}: {exc}"
    s.seconds = time.perf_counter() - start
    return s


def _host_port(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


async def latency_round(assistd_url: str, upstream_url: str, assistant_id: str, auth: dict[str, str],
                        n: int) -> tuple[list[float], list[float]]:
    """``n`` sequential streams each way, alternating; TTFTs in seconds (assistd, direct)."""
    a = await Connection(*_host_port(assistd_url), auth).open()
    d = await Connection(*_host_port(upstream_url)).open()
    ours, theirs = [], []
    try:
        for i in range(n):
            s = await assistd_stream(a, assistant_id, i)
            if s.error or s.status != "completed":
                raise RuntimeError(f"stream failed: {s.status} {s.error}")
            ours.append(s.ttft)
            s = await direct_stream(d, i)
            if s.error:
                raise RuntimeError(f"direct stream failed: {s.error}")
            theirs.append(s.ttft)
    finally:
        await a.close()
        await d.close()
    return ours, theirs


async def many(url: str, count: int, headers: dict[str, str], one) -> tuple[list[Stream], float, int]:  # noqa: ANN001
    """``count`` streams at once, each on its own connection (all connected before any is sent)."""
    host, port = _host_port(url)
    conns = await asyncio.gather(*(Connection(host, port, headers).open() for _ in range(count)))
    gauge = Gauge()
    start = time.perf_counter()
    try:
        streams = await asyncio.gather(*(one(c, i, gauge) for i, c in enumerate(conns)))
    finally:
        await asyncio.gather(*(c.close() for c in conns))
    return list(streams), time.perf_counter() - start, gauge.peak


async def verify(url: str, auth: dict[str, str], streams: list[Stream]) -> list[str]:
    """Problems: streams that failed, or whose text differs from the stored message."""
    problems = []
    conn = await Connection(*_host_port(url), auth).open()
    try:
        for i, s in enumerate(streams):
            if s.error or s.status != "completed" or not s.done:
                problems.append(f"stream {i}: status {s.status}, done {s.done}, error {s.error}")
                continue
            got = await conn.request("GET", f"/v1/threads/{s.thread_id}/messages/{s.message_id}")
            stored = orjson.loads(got.body)["content"][0]["text"]["value"] if got.status == 200 else None
            text = "".join(s.text)
            if got.status != 200 or text != stored or text != s.completed_text:
                problems.append(f"stream {i}: text {text!r} vs stored {stored!r} (HTTP {got.status})")
    finally:
        await conn.close()
    return problems


class RssSampler(threading.Thread):
    def __init__(self, pid: int, every: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.peak_kb = 0
        self._halt = threading.Event()

    @staticmethod
    def rss_kb(pid: int) -> int:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self.peak_kb = max(self.peak_kb, self.rss_kb(self.pid))
            except OSError:
                return
            time.sleep(self.every)

    def stop(self) -> int:
        self._halt.set()
        self.join()
        return self.peak_kb


def ms(values: list[float], p: float) -> float:
    return harness.percentile([v for v in values if v == v], p) * 1e3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_streams", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", help="sqlite:///… file, or a postgresql:// server (a throwaway "
                                               "database is created on it and dropped after); default: a "
                                               "fresh SQLite file")
    parser.add_argument("--streams", type=int, default=1000, help="concurrent streams in the scale test")
    parser.add_argument("--workers", type=int, help="ASSISTD_WORKERS (default: --streams)")
    parser.add_argument("--latency-runs", type=int, default=100, help="sequential streams per round, each way")
    parser.add_argument("--rounds", type=int, default=3, help="latency rounds")
    parser.add_argument("--seconds", type=float, help="(ignored: the common benchmark flag)")
    parser.add_argument("--connections", type=int, help="(ignored: the common benchmark flag)")
    args = parser.parse_args(argv)
    command = shlex.join(["python", "-m", "bench.bench_streams", *(sys.argv[1:] if argv is None else argv)])
    auth = {"Authorization": f"Bearer {harness.TEST_KEY}"}
    workers = args.workers or args.streams

    print(f"# {command}\n# {harness.describe_setup()}", flush=True)
    harness.allow_many_files(4 * args.streams + 1024)
    with tempfile.TemporaryDirectory(prefix="assistd-bench-") as tmp, \
            harness.database(args.database_url, Path(tmp)) as db_url, \
            harness.dev_upstream(cpu=harness.LOAD_CPU) as upstream:
        env = {"ASSISTD_LLM_BASE_URL": upstream.url + "/v1", "ASSISTD_WORKERS": str(workers)}
        with harness.assistd_server(db_url, data_dir=Path(tmp), env=env) as assistd:
            assert assistd.proc is not None
            assistant_id = harness.create_assistant(assistd, auth, {"model": "gpt-4o-mini",
                                                                     "instructions": INSTRUCTIONS})
            harness.pin_self_to_load_cpu()
            print(f"# {db_url.split(':')[0]}; ASSISTD_WORKERS={workers}", flush=True)

            # 1. latency at concurrency 1
            ours: list[list[float]] = []
            theirs: list[list[float]] = []
            asyncio.run(latency_round(assistd.url, upstream.url, assistant_id, auth, 20))  # warm-up
            for i in range(1, args.rounds + 1):
                a, d = asyncio.run(latency_round(assistd.url, upstream.url, assistant_id, auth, args.latency_runs))
                ours.append(a)
                theirs.append(d)
                print(f"  round {i}  TTFT assistd p50 {ms(a, 50):6.2f} ms p99 {ms(a, 99):6.2f} ms | direct "
                      f"p50 {ms(d, 50):6.2f} ms p99 {ms(d, 99):6.2f} ms | added p50 {ms(a, 50) - ms(d, 50):+6.2f} ms",
                      flush=True)
            lat = {k: statistics.median(ms(r, p) for r in rounds) for k, rounds, p in (
                ("a50", ours, 50), ("a99", ours, 99), ("d50", theirs, 50), ("d99", theirs, 99))}

            # 2. scale
            base_rss = RssSampler.rss_kb(assistd.proc.pid)
            sampler = RssSampler(assistd.proc.pid)
            sampler.start()
            streams, wall, peak_open = asyncio.run(many(
                assistd.url, args.streams, auth, lambda c, i, g: assistd_stream(c, assistant_id, i, g)))
            peak_kb = sampler.stop()
            problems = asyncio.run(verify(assistd.url, auth, streams))
            direct, direct_wall, direct_open = asyncio.run(many(upstream.url, args.streams, {}, direct_stream))
            ttft = [s.ttft for s in streams]
            dttft = [s.ttft for s in direct]
            print(f"  scale    {args.streams} streams in {wall:.2f} s (peak {peak_open} open at once); "
                  f"{args.streams - len(problems)} complete and correct; RSS {base_rss / 1024:.0f} MB before, "
                  f"peak {peak_kb / 1024:.0f} MB", flush=True)
            print(f"  scale    TTFT assistd p50 {ms(ttft, 50):.1f} ms p99 {ms(ttft, 99):.1f} ms; direct "
                  f"({direct_wall:.2f} s, peak {direct_open} open) p50 {ms(dttft, 50):.1f} ms "
                  f"p99 {ms(dttft, 99):.1f} ms", flush=True)
            for p in problems[:10]:
                print(f"  PROBLEM  {p}", flush=True)

    print("\n| command | TTFT at concurrency 1: assistd / direct (p50, p99) | added p50 (≤ 5 ms) | "
          f"{args.streams} streams at once | correct | peak RSS (≤ 300 MB) | TTFT p50/p99 at {args.streams}: "
          "assistd / direct |\n|---|---|---|---|---|---|---|")
    print(f"| `{command}` | {lat['a50']:.2f}, {lat['a99']:.2f} ms / {lat['d50']:.2f}, {lat['d99']:.2f} ms | "
          f"{lat['a50'] - lat['d50']:+.2f} ms | {wall:.1f} s, {peak_open} open at once | "
          f"{args.streams - len(problems)}/{args.streams} | {peak_kb / 1024:.0f} MB (idle {base_rss / 1024:.0f}) | "
          f"{ms(ttft, 50):.0f}/{ms(ttft, 99):.0f} ms / {ms(dttft, 50):.0f}/{ms(dttft, 99):.0f} ms |")
    return 0 if not problems else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
