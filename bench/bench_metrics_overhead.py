"""CPU per hot GET with metrics recording on vs off, in one process, interleaved (issue 14: within 5%).

The network benchmarks (bench_get_step) swing by far more than 5% on a shared machine; this one calls the
ASGI app directly (no sockets, no uvicorn), so it measures what the observability layer adds to assistd's
own work per request: the request id, the route template, the counter and histogram (``metrics.ENABLED``
toggled between rounds of the same app), with the access log off as in the other benchmarks. It reports
the median CPU µs per request of each and their ratio; ``--access-log`` measures the JSON access line too.

    .venv/bin/python -m bench.bench_metrics_overhead [--requests 5000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import TEST_KEY


async def _call(app: Any, path: str) -> int:
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
             "headers": [(b"host", b"127.0.0.1:8000"), (b"authorization", f"Bearer {TEST_KEY}".encode())],
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000)}
    await app(scope, receive, send)
    return status


async def main(requests: int, rounds: int, access_log: bool) -> None:
    from assistd.app import create_app
    from assistd.config import Settings
    from assistd.observability import logging_setup, metrics

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(database_url=f"sqlite:///{Path(tmp) / 'a.db'}", data_dir=Path(tmp),
                            api_keys=[TEST_KEY], access_log=access_log, workers=0)
        logging_setup.configure("info", "json")
        logging.getLogger().handlers[0].stream = open(os.devnull, "w")  # noqa: SIM115 - formatted, then dropped
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            from assistd.store.tables import assistants
            async with app.state.db.write() as conn:
                project = app.state.auth._static_ids[next(iter(app.state.auth._static_ids))]
                await conn.execute(assistants.insert().values(
                    id="asst_bench", project_id=project, created_at=0,
                    data='{"id":"asst_bench","object":"assistant","created_at":0,"name":"bench","model":"gpt-4o"}'))
            path = "/v1/assistants/asst_bench"
            assert await _call(app, path) == 200
            per: dict[bool, list[float]] = {True: [], False: []}
            for _ in range(rounds):
                for enabled in (True, False):
                    metrics.ENABLED = enabled
                    start = time.process_time()
                    for _ in range(requests):
                        await _call(app, path)
                    per[enabled].append((time.process_time() - start) / requests * 1e6)
            on, off = statistics.median(per[True]), statistics.median(per[False])
            print(f"hot GET {path}, {requests} requests x {rounds} rounds, access log {'on' if access_log else 'off'}")
            print(f"  metrics on : {on:.1f} µs CPU/request (rounds {min(per[True]):.1f}-{max(per[True]):.1f})")
            print(f"  metrics off: {off:.1f} µs CPU/request (rounds {min(per[False]):.1f}-{max(per[False]):.1f})")
            print(f"  on/off: {on / off:.3f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--access-log", action="store_true")
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.rounds, args.access_log))
