"""Console page render time on big data: a thread with 1,000 messages and a run with 200 steps.

Seeds one ``assistd serve`` (scripted model in-process; its embeddings for the file_search store), signs in
to the console, then fetches each page ``--requests`` times in a row and reports p50/p90 server round-trip
times and page sizes. The pages page their data (50 messages, 100 steps per page), so render time should
not grow with the thread or the run. ``nice -n 10 .venv/bin/python -m bench.bench_console``.
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from bench.harness import TEST_KEY, add_common_args, assistd_server, database, describe_setup

MESSAGES = 1000
STEPS = 200


def _seed(api: httpx.Client) -> dict[str, str]:
    thread = api.post("/threads", json={}).json()["id"]
    for i in range(MESSAGES):
        api.post(f"/threads/{thread}/messages", json={"role": "user" if i % 2 == 0 else "assistant",
                                                      "content": f"message {i}: " + "lorem ipsum " * 20})
    store = api.post("/vector_stores", json={"name": "bench"}).json()["id"]
    file_id = api.post("/files", files={"file": ("doc.txt", b"zorblax reactors hum at night. " * 50)},
                       data={"purpose": "assistants"}).json()["id"]
    api.post(f"/vector_stores/{store}/files", json={"file_id": file_id})
    while api.get(f"/vector_stores/{store}/files/{file_id}").json()["status"] == "in_progress":
        time.sleep(0.1)
    assistant = api.post("/assistants", json={"model": "gpt-4o-mini", "tools": [{"type": "file_search"}],
                                              "tool_resources": {"file_search": {"vector_store_ids": [store]}}}
                         ).json()["id"]
    # Each round is one file_search step; [tool-again: N] asks for N rounds (the scripted model allows 100;
    # the runner may hand a long loop back as requires_action, then it is cancelled). The remaining steps are
    # written beside them (_more_steps).
    run = api.post("/threads/runs", json={"assistant_id": assistant, "thread": {"messages": [
        {"role": "user", "content": '[tool: file_search {"query": "zorblax"}] [tool-again: 99]'}]}}
                   ).json()
    while run["status"] in ("queued", "in_progress", "cancelling"):
        time.sleep(0.2)
        run = api.get(f"/threads/{run['thread_id']}/runs/{run['id']}").json()
        if run["status"] == "requires_action":  # the runner hands a long tool loop back to the client: end it
            run = api.post(f"/threads/{run['thread_id']}/runs/{run['id']}/cancel").json()
    if run["status"] not in ("completed", "cancelled"):
        raise RuntimeError(f"seed run ended {run['status']}: {run.get('last_error')} {run.get('required_action')}")
    return {"thread": thread, "run_thread": run["thread_id"], "run": run["id"]}


def _more_steps(database_url: str, run: dict, count: int) -> None:
    """Completed function-call steps added to a finished run, straight through services/ (the scripted
    model stops at 100 rounds), so the run has STEPS steps in all."""
    import asyncio

    from assistd.services import run_objects
    from assistd.services.auth import DEFAULT_PROJECT
    from assistd.services.runs import insert_step
    from assistd.store.db import Database
    from assistd.store.keys import ensure_project

    async def write() -> None:
        db = Database(database_url)
        try:
            async with db.write() as conn:
                project = await ensure_project(conn, DEFAULT_PROJECT)
                for i in range(count):
                    step = run_objects.new_step(run, "tool_calls", {"type": "tool_calls", "tool_calls": [
                        {"id": f"call_bench{i:05d}", "type": "function", "function": {
                            "name": "lookup", "arguments": f'{{"i": {i}}}', "output": "ok " * 50}}]})
                    run_objects.set_step_status(step, "completed", usage=run_objects.usage(40, 10))
                    await insert_step(conn, project, step)
        finally:
            await db.close()

    asyncio.run(write())


def _time(console: httpx.Client, path: str, n: int) -> tuple[float, float, int]:
    samples = []
    size = 0
    for _ in range(n):
        started = time.perf_counter()
        response = console.get(path)
        samples.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
        size = len(response.content)
    samples.sort()
    return statistics.median(samples), samples[int(0.9 * (len(samples) - 1))], size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_common_args(parser)  # --database-url; the load options scripts/bench passes to every benchmark are unused
    parser.add_argument("--requests", type=int, default=30, help="fetches of each page")
    args = parser.parse_args()
    print(describe_setup())
    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp, database(args.database_url, Path(tmp)) as url:
        server = assistd_server(url, data_dir=Path(tmp), env={"ASSISTD_EMBEDDINGS": "upstream:text-embedding-3-small"})
        with server:
            auth = {"Authorization": f"Bearer {TEST_KEY}"}
            with httpx.Client(base_url=server.url + "/v1", headers=auth, timeout=120) as api:
                seeded = _seed(api)
                run = api.get(f"/threads/{seeded['run_thread']}/runs/{seeded['run']}").json()
                have = len(api.get(f"/threads/{run['thread_id']}/runs/{run['id']}/steps?limit=100").json()["data"])
                _more_steps(url, run, STEPS - have)
            with httpx.Client(base_url=server.url, timeout=60) as console:
                token = re.search(r'name="csrf-token" content="([^"]*)"', console.get("/console/sign-in").text)
                assert token is not None
                console.post("/console/sign-in", data={"api_key": TEST_KEY, "csrf_token": token.group(1)})
                page = console.get(f"/console/threads/{seeded['thread']}").text
                older = re.search(r'href="([^"]*after=msg_[^"]*)"', page)
                run = f"/console/threads/{seeded['run_thread']}/runs/{seeded['run']}"
                pages = {
                    "threads list": "/console/threads",
                    f"thread, {MESSAGES} messages (newest 50)": f"/console/threads/{seeded['thread']}",
                    "thread, an older page": older.group(1).replace("&amp;", "&") if older else "",
                    f"run, {STEPS} steps (first 100)": run,
                    "run timeline fragment (live refresh)": run + "/timeline",
                    "usage": "/console/usage",
                }
                print("\n| page | p50 ms | p90 ms | bytes |\n|---|---|---|---|")
                for name, path in pages.items():
                    if not path:
                        continue
                    p50, p90, size = _time(console, path, args.requests)
                    print(f"| {name} | {p50:.1f} | {p90:.1f} | {size:,} |")


if __name__ == "__main__":
    main()
