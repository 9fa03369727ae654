"""Usage per project, recorded as runs end: ``assistd usage --project NAME`` and ``services.usage``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.run_helpers import fresh_database, new_assistant, new_thread, sdk, serve, server_env, wait_run
from tests.servers import ROOT, LiveProcess


def usage_table(database_url: str, project: str) -> list[list[str]]:
    out = subprocess.run([sys.executable, "-m", "assistd.cli", "usage", "--project", project,
                          "--database-url", database_url], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert out.returncode == 0, out.stderr
    lines = [line.split("\t") for line in out.stdout.strip().splitlines()]
    assert lines[0][:4] == ["day", "model", "prompt_tokens", "completion_tokens"]
    return lines[1:]


def test_usage_counts_tokens_by_model_and_runs_by_status(database_url: str, upstream: LiveProcess,
                                                         tmp_path: Path) -> None:
    with fresh_database(database_url, tmp_path) as url:
        with serve(server_env(url, upstream, tmp_path, ASSISTD_API_KEYS="sk-usage-test-0123456789:team-u")) as proc:
            client = sdk(proc)
            client.api_key = "sk-usage-test-0123456789"
            ends = []
            for text, model in (("[reply: one two three]", "gpt-4o-mini"), ("[reply: four five]", "gpt-4o-mini"),
                                ("[error: 400]", "gpt-4o-mini"), ("[reply: six]", "gpt-4o")):
                thread = new_thread(client, text)
                run = client.beta.threads.runs.create(thread.id, assistant_id=new_assistant(client).id, model=model)
                ends.append(wait_run(client, thread.id, run.id, {"completed", "failed"}))
        rows = {row[1]: row for row in usage_table(url, "team-u")}
    mini = [e for e in ends if e["model"] == "gpt-4o-mini"]
    header = ["completed", "failed", "cancelled", "expired", "incomplete"]
    assert set(rows) == {"gpt-4o-mini", "gpt-4o"}
    assert int(rows["gpt-4o-mini"][2]) == sum((e["usage"] or {}).get("prompt_tokens", 0) for e in mini)
    assert int(rows["gpt-4o-mini"][3]) == sum((e["usage"] or {}).get("completion_tokens", 0) for e in mini)
    assert dict(zip(header, map(int, rows["gpt-4o-mini"][4:]), strict=True)) == {
        "completed": 2, "failed": 1, "cancelled": 0, "expired": 0, "incomplete": 0}
    assert int(rows["gpt-4o"][4]) == 1
