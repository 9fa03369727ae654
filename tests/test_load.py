"""The short profile of ``make load`` (bench/load.py): 20 clients for 30 s against one API-only serve and two
workers on PostgreSQL, mixing CRUD, streamed tool runs, file_search runs and searches. No errors, every run in
its expected state, every stream exactly the hosted sequence."""

from __future__ import annotations

import pytest
from bench.load import main as load


@pytest.mark.timeout(600)
def test_mixed_load_across_processes(is_postgres, tmp_path):
    if not is_postgres:
        pytest.skip("`assistd worker` processes need PostgreSQL")
    # On a private cluster (bench/privatepg.py), once, in the PostgreSQL pass of `make test`.
    result = load(["--clients", "20", "--duration", "30", "--json", str(tmp_path / "load.json")])
    assert result["runs_completed"] > 0 and result["streams"] > 0, result
    assert result["errors"] == 0, result["error_samples"]
    assert result["unexpected_runs"] == 0, result["unexpected_run_samples"]
    # Both legs of every streamed tool run: exactly the hosted events, in order, once each, all of one run.
    assert result["streams"] == 2 * result["scenarios"].get("streamed_tool_run", 0), result
    assert result["bad_streams"] == 0, (f"{result['bad_streams']}/{result['streams']} streams not exactly the "
                                        f"hosted sequence: {result['bad_stream_samples']}")
