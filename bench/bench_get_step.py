"""GET /v1/threads/{t}/runs/{r}/steps/{step_id} on a live assistd vs a bare Starlette app returning the
identical JSON bytes (issue 4 a): target ≥ 0.5× the bare app's req/s and p99 ≤ 2× the bare p99.

The step is the ``message_creation`` step of a run completed against the scripted upstream, so it is
terminal and served from assistd's terminal-step cache after the first read. ``--object run|message|thread``
measures the other hot retrieves of the same run instead (always read from the database).

    .venv/bin/python -m bench.bench_get_step [--database-url postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

from bench import harness

ROUTES = {
    "step": "/v1/threads/{thread_id}/runs/{run_id}/steps/{step_id}",
    "run": "/v1/threads/{thread_id}/runs/{run_id}",
    "message": "/v1/threads/{thread_id}/messages/{message_id}",
    "thread": "/v1/threads/{thread_id}",
}


def completed_run(url: str, auth: dict[str, str]) -> dict[str, str]:
    """Create an assistant and a thread-and-run answered by the scripted upstream; wait until it completes."""
    headers = {**auth, "Content-Type": "application/json"}

    def post(path: str, body: dict) -> dict:
        status, _, raw = harness.http_request("POST", url + path, body=json.dumps(body).encode(), headers=headers)
        if status != 200:
            raise RuntimeError(f"POST {path}: {status} {raw!r}")
        return json.loads(raw)

    def get(path: str) -> dict:
        status, _, raw = harness.http_request("GET", url + path, headers=auth)
        if status != 200:
            raise RuntimeError(f"GET {path}: {status} {raw!r}")
        return json.loads(raw)

    assistant = post("/v1/assistants", {"model": "gpt-4o-mini", "name": "bench", "instructions": "Be brief."})
    run = post("/v1/threads/runs", {"assistant_id": assistant["id"], "thread": {"messages": [
        {"role": "user", "content": "[reply: The ticket is about billing: a duplicate charge on the last "
                                    "invoice. Refund it and tell the customer within two days.]"}]}})
    deadline = time.monotonic() + 30
    while run["status"] != "completed":
        if time.monotonic() > deadline or run["status"] in ("failed", "cancelled", "expired", "incomplete"):
            raise RuntimeError(f"run did not complete: {run}")
        time.sleep(0.05)
        run = get(f"/v1/threads/{run['thread_id']}/runs/{run['id']}")
    step = get(f"/v1/threads/{run['thread_id']}/runs/{run['id']}/steps")["data"][0]
    return {"thread_id": run["thread_id"], "run_id": run["id"], "step_id": step["id"],
            "message_id": step["step_details"]["message_creation"]["message_id"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_get_step", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    harness.add_common_args(parser)
    parser.add_argument("--object", choices=sorted(ROUTES), default="step", help="which retrieve to measure")
    args = parser.parse_args(argv)
    command = shlex.join(["python", "-m", "bench.bench_get_step", *(sys.argv[1:] if argv is None else argv)])
    auth = {"Authorization": f"Bearer {harness.TEST_KEY}"}

    print(f"# {command}\n# {harness.describe_setup()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="assistd-bench-") as tmp, \
            harness.database(args.database_url, Path(tmp)) as db_url, harness.dev_upstream() as upstream:
        env = {"ASSISTD_LLM_BASE_URL": upstream.url + "/v1"}
        with harness.assistd_server(db_url, data_dir=Path(tmp), env=env, ablate=args.ablate) as assistd:
            ids = completed_run(assistd.url, auth)
            route = ROUTES[args.object]
            a, b, _ = harness.versus_bare(assistd, route.format(**ids), route, auth, Path(tmp),
                                          connections=args.connections, seconds=args.seconds, rounds=args.rounds)

    print("\n| command | assistd | bare Starlette | req/s ratio (≥ 0.5) | p99 ratio (≤ 2) |\n|---|---|---|---|---|")
    print(f"| `{command}` | {a.cell()} | {b.cell()} | {a.rps / b.rps:.2f} | {a.p99_ms / b.p99_ms:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
