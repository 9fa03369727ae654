"""The bus's channels besides a run's own (``run_channel``): who listens on each, and for what."""

from __future__ import annotations

from assistd.events.base import run_channel

__all__ = ["CACHE", "JOBS_WAKE", "RUNS_WAKE", "THREAD_DELETED", "run_channel"]

RUNS_WAKE = "pool:wake"  # a run became claimable: every worker pool (runner/pool.py) claims now
JOBS_WAKE = "jobs:wake"  # jobs were queued: every job runner (runner/jobs.py) claims now
CACHE = "cache"  # cache invalidations, for every process's caches (terminal steps, code sessions)
THREAD_DELETED = "thread.deleted"  # on CACHE: {"thread_id"}
