"""GET /v1/assistants/{id} on a live assistd vs a bare Starlette app returning the identical JSON bytes.

Both are served by uvicorn (uvloop, httptools) in the same run and measured in interleaved rounds; the
ratio is what assistd's stack (FastAPI, auth, a database read) costs over the bare framework floor.

    .venv/bin/python -m bench.bench_get_assistant [--database-url postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from pathlib import Path

from bench import harness

ASSISTANT = {
    "model": "gpt-4o-mini",
    "name": "Support triage",
    "description": "Routes customer tickets to the right team.",
    "instructions": "You are a support triage assistant. Read the ticket, classify it as billing, "
                    "technical or account, and answer in two sentences. " * 3,
    "tools": [
        {"type": "code_interpreter"},
        {"type": "function", "function": {
            "name": "lookup_customer", "description": "Find a customer by email.",
            "parameters": {"type": "object", "properties": {"email": {"type": "string"}},
                           "required": ["email"]},
        }},
    ],
    "metadata": {"team": "support", "tier": "gold"},
    "temperature": 0.2,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_get_assistant", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    harness.add_common_args(parser)
    args = parser.parse_args(argv)
    command = shlex.join(["python", "-m", "bench.bench_get_assistant", *(sys.argv[1:] if argv is None else argv)])
    auth = {"Authorization": f"Bearer {harness.TEST_KEY}"}

    print(f"# {command}\n# {harness.describe_setup()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="assistd-bench-") as tmp, \
            harness.database(args.database_url, Path(tmp)) as db_url:
        with harness.assistd_server(db_url, data_dir=Path(tmp), ablate=args.ablate) as assistd:
            path = f"/v1/assistants/{harness.create_assistant(assistd, auth, ASSISTANT)}"
            status, headers, raw = harness.http_request("GET", assistd.url + path, headers=auth)
            if status != 200:
                raise RuntimeError(f"get assistant: {status} {raw!r}")
            json_file = Path(tmp) / "assistant.json"
            json_file.write_bytes(raw)
            with harness.uvicorn_app("bench.bare_app:app", env={"BENCH_BARE_JSON_FILE": str(json_file)},
                                     ready_path=path) as bare:
                _, bare_headers, bare_raw = harness.http_request("GET", bare.url + path)
                assert bare_raw == raw and bare_headers["content-type"] == headers["content-type"], \
                    "the bare app must answer the same bytes"
                print(f"# {len(raw)} JSON bytes; {db_url.split(':')[0]}; {args.connections} connections, "
                      f"{args.rounds} rounds of {args.seconds:g} s each", flush=True)
                a, b = harness.interleave(
                    [harness.Target("assistd", assistd.url + path, auth), harness.Target("bare", bare.url + path)],
                    connections=args.connections, seconds=args.seconds, rounds=args.rounds)

    print("\n| command | assistd | bare Starlette | assistd/bare req/s |\n|---|---|---|---|")
    print(f"| `{command}` | {a.cell()} | {b.cell()} | {a.rps / b.rps:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
