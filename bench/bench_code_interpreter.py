"""code_interpreter engine latency: cold start (new session -> first ``print(1)`` result), warm ``print(1)``,
and a new session's first ``import numpy, pandas, matplotlib.pyplot``, in the bubblewrap sandbox and, as
the baseline, with ASSISTD_CODE_SANDBOX=none (the same kernel as a bare process), in interleaved rounds.

    .venv/bin/python -m bench.bench_code_interpreter [--rounds 5] [--cold 6] [--warm 10]

No server, no database: the engine is called directly, as the run executor does.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from assistd.tools.code_interpreter import CodeInterpreter, CodeInterpreterSettings, SandboxUnavailable

STACK = "import numpy, pandas, matplotlib.pyplot"


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000


async def timed(engine: CodeInterpreter, thread: str, code: str) -> float:
    start = time.perf_counter()
    result = await engine.execute(thread, code)
    elapsed = time.perf_counter() - start
    if result.error:
        raise RuntimeError(f"{code!r}: {result.error}\n{result.logs}")
    return elapsed


async def round_(engine: CodeInterpreter, n: int, cold: int, warm: int, out: dict[str, list[float]]) -> None:
    for i in range(cold):
        thread = f"cold_{n}_{i}"
        out["cold"].append(await timed(engine, thread, "print(1)"))
        await engine.close(thread, delete_files=True)
    thread = f"stack_{n}"
    await timed(engine, thread, "print(1)")
    out["stack"].append(await timed(engine, thread, STACK))
    await engine.close(thread, delete_files=True)
    await timed(engine, "warm", "print(1)")
    for _ in range(warm):
        out["warm"].append(await timed(engine, "warm", "print(1)"))


async def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="assistd-bench-ci-") as tmp:
        engines = {mode: CodeInterpreter(Path(tmp) / mode, CodeInterpreterSettings(sandbox=mode))
                   for mode in ("bwrap", "none")}
        try:
            engines["bwrap"].check()
        except SandboxUnavailable as exc:
            print(f"# {exc}: measuring the unsandboxed baseline only", file=sys.stderr)
            del engines["bwrap"]
        results = {mode: {"cold": [], "warm": [], "stack": []} for mode in engines}
        try:
            for n in range(args.rounds):
                for mode, engine in engines.items():
                    await round_(engine, n, args.cold, args.warm, results[mode])
        finally:
            for engine in engines.values():
                await engine.aclose()
    print("| sandbox | cold start: new session → `print(1)` p50 / p99 | warm `print(1)` p50 / p99 "
          "| first `import numpy, pandas, matplotlib.pyplot` p50 |")
    print("|---|---|---|---|")
    for mode, r in results.items():
        print(f"| {mode} | {pct(r['cold'], .5):.1f} / {pct(r['cold'], .99):.1f} ms (n={len(r['cold'])}) "
              f"| {pct(r['warm'], .5):.2f} / {pct(r['warm'], .99):.2f} ms (n={len(r['warm'])}) "
              f"| {statistics.median(r['stack']) * 1000:.0f} ms (n={len(r['stack'])}) |")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_code_interpreter", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cold", type=int, default=6, help="new sessions per round and sandbox mode")
    parser.add_argument("--warm", type=int, default=10, help="warm executions per round and sandbox mode")
    for ignored in ("--database-url", "--connections", "--seconds"):  # scripts/bench passes these to all
        parser.add_argument(ignored, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    print(f"# python -m bench.bench_code_interpreter --rounds {args.rounds} --cold {args.cold} "
          f"--warm {args.warm}\n# {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}", flush=True)
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
