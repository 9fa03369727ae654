"""Table definitions (SQLAlchemy Core). Alembic migrations under ``migrations/`` create them.

Every API object is stored as its serialised JSON (``data``) beside the columns we query by. Reads hand
the stored bytes straight to the client; writes rewrite ``data`` whole, inside one transaction.
``seq`` is a monotonic key that orders objects created within the same second.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

# SQLite only auto-increments an INTEGER PRIMARY KEY; Postgres wants BIGINT identity.
SeqType = BigInteger().with_variant(Integer(), "sqlite")

projects = Table(
    "projects",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(256), nullable=False, unique=True),
    Column("created_at", BigInteger, nullable=False),
    # Rate limits (services/rate_limits.py); NULL = the ASSISTD_RATE_LIMIT_* default, 0 = unlimited.
    Column("rpm_limit", Integer, nullable=True),
    Column("tpm_limit", Integer, nullable=True),
    Column("max_concurrent_runs", Integer, nullable=True),
    # Runs holding one of the project's concurrent-run slots (services/run_slots.py).
    Column("active_runs", Integer, nullable=False, server_default="0"),
)

# Requests and tokens used per project and one-minute window, shared by every process (PostgreSQL backend).
rate_limit_counters = Table(
    "rate_limit_counters",
    metadata,
    Column("project_id", String(64), primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("window_start", BigInteger, primary_key=True),
    Column("used", BigInteger, nullable=False),
)

# Usage per project, UTC day and model, updated in the transaction that ends each run.
USAGE_STATUSES = ("completed", "failed", "cancelled", "expired", "incomplete")
usage_daily = Table(
    "usage_daily",
    metadata,
    Column("project_id", String(64), primary_key=True),
    Column("day", String(10), primary_key=True),
    Column("model", String(256), primary_key=True),
    Column("prompt_tokens", BigInteger, nullable=False, server_default="0"),
    Column("completion_tokens", BigInteger, nullable=False, server_default="0"),
    *(Column(f"runs_{status}", BigInteger, nullable=False, server_default="0") for status in USAGE_STATUSES),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("project_id", String(64), ForeignKey("projects.id"), nullable=False),
    Column("name", String(256), nullable=True),
    Column("secret_hash", String(64), nullable=False, unique=True),
    Column("redacted", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("revoked_at", BigInteger, nullable=True),
)


def _object_table(name: str, *extra: Column) -> Table:
    return Table(
        name,
        metadata,
        Column("seq", SeqType, primary_key=True, autoincrement=True),
        Column("id", String(64), nullable=False, unique=True),
        Column("project_id", String(64), nullable=False),
        Column("created_at", BigInteger, nullable=False),
        *extra,
        Column("data", Text, nullable=False),
    )


assistants = _object_table("assistants")
Index("ix_assistants_project", assistants.c.project_id, assistants.c.created_at, assistants.c.seq)

threads = _object_table("threads")
Index("ix_threads_project", threads.c.project_id, threads.c.created_at, threads.c.seq)

messages = _object_table(
    "messages",
    Column("thread_id", String(64), nullable=False),
    Column("run_id", String(64), nullable=True),
)
Index("ix_messages_thread", messages.c.thread_id, messages.c.created_at, messages.c.seq)

# The runs table is also the work queue: ``status`` + lease columns are what workers claim by.
runs = _object_table(
    "runs",
    Column("thread_id", String(64), nullable=False),
    Column("status", String(32), nullable=False),
    Column("lease_owner", String(128), nullable=True),
    Column("lease_expires_at", Float, nullable=True),
    Column("expires_at", BigInteger, nullable=True),
    Column("trace_context", String(128), nullable=True),  # W3C traceparent of the request that created it
    # Milliseconds since the epoch, for the console's run view (``data``'s times are whole seconds).
    Column("queued_ms", BigInteger, nullable=True),
    Column("started_ms", BigInteger, nullable=True),
    Column("first_token_ms", BigInteger, nullable=True),
    Column("ended_ms", BigInteger, nullable=True),
    # True while the run holds a slot of its project's concurrent-runs limit (services/run_slots.py).
    Column("holds_slot", Boolean, nullable=True),
)
Index("ix_runs_thread", runs.c.thread_id, runs.c.created_at, runs.c.seq)
Index("ix_runs_status", runs.c.status, runs.c.lease_expires_at)
# The few runs holding a slot (services/run_slots.py reclaims those of ended runs).
Index("ix_runs_holding_slot", runs.c.project_id, sqlite_where=runs.c.holds_slot.is_(True),
      postgresql_where=runs.c.holds_slot.is_(True))

run_steps = _object_table(
    "run_steps",
    Column("thread_id", String(64), nullable=False),
    Column("run_id", String(64), nullable=False),
    Column("status", String(32), nullable=False),
    Column("created_ms", BigInteger, nullable=True),  # milliseconds, as on runs
    Column("ended_ms", BigInteger, nullable=True),
)
Index("ix_run_steps_run", run_steps.c.run_id, run_steps.c.created_at, run_steps.c.seq)
Index("ix_run_steps_thread", run_steps.c.thread_id)

# --- files and vector stores (file_search issue) ---------------------------------------------------

files = _object_table(
    "files",
    Column("purpose", String(32), nullable=False),
    Column("blob_key", String(128), nullable=False),  # opaque key in the blob store, never a user path
    Column("expires_at", BigInteger, nullable=True),
)
Index("ix_files_project", files.c.project_id, files.c.created_at, files.c.seq)

vector_stores = _object_table(
    "vector_stores",
    Column("expires_at", BigInteger, nullable=True),
)
Index("ix_vector_stores_project", vector_stores.c.project_id, vector_stores.c.created_at, vector_stores.c.seq)

# One row per (store, file): ``id`` is the file id, so it is unique only together with the store.
vector_store_files = Table(
    "vector_store_files",
    metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False),
    Column("vector_store_id", String(64), nullable=False),
    Column("project_id", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("status", String(32), nullable=False),
    Column("batch_id", String(64), nullable=True),
    Column("data", Text, nullable=False),
    UniqueConstraint("vector_store_id", "id", name="uq_vector_store_files"),
)
Index("ix_vector_store_files_store", vector_store_files.c.vector_store_id, vector_store_files.c.created_at,
      vector_store_files.c.seq)
Index("ix_vector_store_files_file", vector_store_files.c.id)
Index("ix_vector_store_files_batch", vector_store_files.c.batch_id)

file_batches = _object_table(
    "file_batches",
    Column("vector_store_id", String(64), nullable=False),
)
Index("ix_file_batches_store", file_batches.c.vector_store_id)

# Background work other than runs (file ingestion), claimed by the same worker pools under a lease.
jobs = Table(
    "jobs",
    metadata,
    Column("seq", SeqType, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("project_id", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("payload", Text, nullable=False),
    Column("status", String(32), nullable=False),  # queued | running | done | failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("created_at", BigInteger, nullable=False),
    Column("lease_owner", String(128), nullable=True),
    Column("lease_expires_at", Float, nullable=True),
    Column("last_error", Text, nullable=True),
)
Index("ix_jobs_status", jobs.c.status, jobs.c.lease_expires_at)
