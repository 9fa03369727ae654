"""CPU µs per cached run-step GET through assistd's whole ASGI app, in-process (no sockets, no uvicorn).

The network benchmark (bench_get_step) swings with the machine's load by far more than one change to the
request path is worth; CPU time of the same in-process call moves much less. Run it from each commit's tree
(``git worktree add``) in turn, several times, to see what a commit is worth (docs/benchmarks.md, "GET a
run step"). The step is put in the terminal-step cache, so no database read is measured.

    .venv/bin/python -m bench.bench_hot_path_cpu [--requests 3000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import harness

STEP = b'{"id":"step_1","object":"thread.run.step","status":"completed"}' + b" " * 500
PATH = "/v1/threads/thread_1/runs/run_1/steps/step_1"


def _scope() -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
            "path": PATH, "raw_path": PATH.encode(), "root_path": "", "query_string": b"",
            "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"wrk"),
                        (b"authorization", f"Bearer {harness.TEST_KEY}".encode())],
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000), "state": {}}


async def measure(requests: int, rounds: int) -> list[float]:
    from assistd.app import create_app
    from assistd.config import Settings

    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="assistd-bench-") as tmp:
        settings = Settings(database_url=f"sqlite:///{Path(tmp) / 'a.db'}", data_dir=Path(tmp),
                            api_keys=[harness.TEST_KEY], access_log=False, workers=0,
                            llm_base_url="http://127.0.0.1:9/v1")
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            project = app.state.auth._static_ids[next(iter(app.state.auth._static_ids))]
            cache = app.state.step_cache
            cache.ttl_seconds = 1e9
            cache.put(cache.epoch, project, "thread_1", "run_1", "step_1", STEP)
            statuses: list[int] = []

            async def receive() -> dict[str, Any]:
                return {"type": "http.request", "body": b"", "more_body": False}

            async def send(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    statuses.append(message["status"])

            await app(_scope(), receive, send)
            if statuses != [200]:
                raise RuntimeError(f"the step GET answered {statuses}")
            per_round = []
            for _ in range(rounds):
                start = time.process_time()
                for _ in range(requests):
                    await app(_scope(), receive, send)
                per_round.append((time.process_time() - start) / requests * 1e6)
            return per_round


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_hot_path_cpu", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    harness.add_common_args(parser)  # accepted for scripts/bench; only --rounds is used
    parser.add_argument("--requests", type=int, default=3000, help="per round")
    args = parser.parse_args(argv)
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        per_round = runner.run(measure(args.requests, args.rounds))
    print(f"# {harness.describe_setup()}")
    print(f"cached step GET, in-process: {statistics.median(per_round):.2f} µs CPU/request "
          f"(rounds {min(per_round):.2f}-{max(per_round):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
