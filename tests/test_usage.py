"""Usage per project, recorded as runs end: ``assistd usage --project NAME`` and ``services.usage``."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import Connection, delete

from assistd.store.db import Database
from assistd.store.tables import usage_daily
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


def forget_usage(database_url: str, model: str | None = None) -> None:
    """As if the runs (of ``model``, else all) had ended before usage_daily existed: their rows gone; then the
    backfill migration (0011) runs again, alone (later migrations are already applied and stay so)."""
    async def main() -> None:
        db = Database(database_url)
        try:
            async with db.write() as conn:
                stmt = delete(usage_daily)
                await conn.execute(stmt if model is None else stmt.where(usage_daily.c.model == model))
                await conn.run_sync(_run_backfill)
        finally:
            await db.close()

    asyncio.run(main())


def _run_backfill(connection: Connection) -> None:
    path = next((ROOT / "src/assistd/store/migrations/versions").glob("0011_*.py"))
    spec = importlib.util.spec_from_file_location("backfill_migration", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with Operations.context(MigrationContext.configure(connection)):
        module.upgrade()


def test_migration_0011_adds_the_runs_that_ended_before_usage_was_recorded(
        database_url: str, upstream: LiveProcess, tmp_path: Path) -> None:
    with fresh_database(database_url, tmp_path) as url:
        with serve(server_env(url, upstream, tmp_path, ASSISTD_API_KEYS="sk-usage-test-0123456789:team-u")) as proc:
            client = sdk(proc)
            client.api_key = "sk-usage-test-0123456789"
            for text_, model in (("[reply: one two three]", "gpt-4o-mini"), ("[error: 400]", "gpt-4o-mini"),
                                 ("[reply: six]", "gpt-4o")):
                thread = new_thread(client, text_)
                run = client.beta.threads.runs.create(thread.id, assistant_id=new_assistant(client).id, model=model)
                wait_run(client, thread.id, run.id, {"completed", "failed"})
        recorded = usage_table(url, "team-u")
        assert len(recorded) == 2
        forget_usage(url)  # none recorded: every ended run is added
        assert usage_table(url, "team-u") == recorded
        forget_usage(url, "gpt-4o")  # recorded from today on: today's counts are completed from the runs
        assert usage_table(url, "team-u") == recorded
