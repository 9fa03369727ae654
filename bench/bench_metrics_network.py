"""The hot step GET over HTTP on two assistd servers side by side, one recording metrics and one not
(issue 14: within 5%), in interleaved rounds: req/s and each server's CPU µs per request.

Both serve the same database, so they answer the same step from the same code; only ``ASSISTD_METRICS``
differs. Comparing two servers in one sitting, round by round, removes most of what makes separate
``bench_get_step`` runs swing (the bare app's own speed, the machine's state between runs); the server's CPU
time per request is the steadier figure of the two.

    .venv/bin/python -m bench.bench_metrics_network [--database-url postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from pathlib import Path

from bench import harness
from bench.bench_get_step import ROUTES, completed_run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_metrics_network", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    harness.add_common_args(parser, rounds=6, seconds=4.0)
    parser.add_argument("--control", action="store_true",
                        help="both servers record metrics: what the two servers differ by with nothing changed")
    args = parser.parse_args(argv)
    command = shlex.join(["python", "-m", "bench.bench_metrics_network", *(sys.argv[1:] if argv is None else argv)])
    auth = {"Authorization": f"Bearer {harness.TEST_KEY}"}

    print(f"# {command}\n# {harness.describe_setup()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="assistd-bench-") as tmp, \
            harness.database(args.database_url, Path(tmp)) as db_url, harness.dev_upstream() as upstream:
        env = {"ASSISTD_LLM_BASE_URL": upstream.url + "/v1"}
        with harness.assistd_server(db_url, data_dir=Path(tmp), env={**env, "ASSISTD_METRICS": "1"}) as on:
            path = ROUTES["step"].format(**completed_run(on.url, auth))
            off_env = {**env, "ASSISTD_METRICS": "1" if args.control else "0"}
            with harness.assistd_server(db_url, data_dir=Path(tmp), env=off_env) as off:
                a, b = harness.interleave(
                    [harness.Target("metrics on", on.url + path, auth, harness.server_pid(on)),
                     harness.Target("metrics off", off.url + path, auth, harness.server_pid(off))],
                    connections=args.connections, seconds=args.seconds, rounds=args.rounds)

    print("\n| command | metrics on | metrics off | req/s on/off | server CPU per request on/off |\n"
          "|---|---|---|---|---|")
    print(f"| `{command}` | {a.cell()}, {a.cpu_us:.1f} µs CPU | {b.cell()}, {b.cpu_us:.1f} µs CPU | "
          f"{a.rps / b.rps:.3f} | {a.cpu_us / b.cpu_us:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
