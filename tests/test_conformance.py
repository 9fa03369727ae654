"""Schemathesis against the live server with OpenAI's document: every operation, every phase, zero failures.

``make test`` runs the short profile (examples, fuzzing and stateful phases, positive and negative data, a few
examples per operation); ``make conformance`` runs the long one (the coverage phase too, many more examples)
with ASSISTD_CONFORMANCE_PROFILE=long and writes the per-operation table to ASSISTD_CONFORMANCE_OUT."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conformance import OUT_ENV, PROFILE_ENV
from tests.conformance.document import conformance_document
from tests.conformance.objects import make_objects
from tests.conformance.results import per_operation, render_table
from tests.conformance.runner import PROFILES, run_schemathesis
from tests.conftest import KEY_A


def server_errors(log_path: Path, limit: int = 5) -> str:
    """The serve's ERROR records (each with its traceback) and the access lines of its 500s: a 500 seen once
    by schemathesis is diagnosed from them, not from a replay that may not fail again."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    errors = [line for line in lines if '"level":"ERROR"' in line or '"status":500,' in line]
    return "\n".join(errors[:2 * limit])


@pytest.mark.timeout(3600)
def test_every_operation_conforms(server, client, base_url, tmp_path: Path):
    profile = PROFILES[os.environ.get(PROFILE_ENV, "short")]
    objects = make_objects(client)
    headers = {"Authorization": f"Bearer {KEY_A}", "OpenAI-Beta": "assistants=v2"}
    result = run_schemathesis(base_url, objects, headers, tmp_path, profile)
    if not result["report"]:
        pytest.fail(f"schemathesis wrote no report (exit {result['returncode']}):\n{result['output'][-6000:]}")
    assert result["report"]["operations"]["tested"] == 44, result["report"]["operations"]
    rows = per_operation(result["report"], result["output"], conformance_document())
    table = render_table(rows)
    if out := os.environ.get(OUT_ENV):
        Path(out).write_text(table)
    unexpected = [row.operation_id for row in rows if not row.clean]
    assert not unexpected, (f"{unexpected} failed:\n{table}\n{result['output'][-12000:]}\n"
                            f"server errors ({server.log_path}):\n{server_errors(server.log_path)}")
