"""The run view's arithmetic, without a server."""
from assistd.console.views import phases


def test_phases_never_go_below_zero_when_marks_come_from_clocks_that_disagree() -> None:
    # A worker on another host stamps started/first-token/ended with its own clock, a little behind the API's.
    run_ms = {"queued_ms": 1_000_010, "started_ms": 1_000_000, "first_token_ms": 1_000_008, "ended_ms": 1_000_020}
    rows = {row["name"]: row["seconds"] for row in phases({}, [], run_ms)}
    assert rows["queued"] == 0
    assert abs(rows["started → first token"] - 0.008) < 1e-9
    assert all(seconds >= 0 for seconds in rows.values())
