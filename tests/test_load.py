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
    if result["bad_streams"]:
        # Issue 13: run events published by a worker can overtake the API's own (fixed on branch `engine`).
        pytest.xfail(f"{result['bad_streams']}/{result['streams']} streams out of the hosted order (issue 13): "
                     f"{result['bad_stream_samples'][:2]}")
