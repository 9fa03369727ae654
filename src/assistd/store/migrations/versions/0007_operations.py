"""Operations: per-project rate limits and the counters that enforce them across processes, usage per
project/day/model recorded as runs end, and a run's trace context (one trace across processes).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("projects") as batch:
        batch.add_column(sa.Column("rpm_limit", sa.Integer, nullable=True))
        batch.add_column(sa.Column("tpm_limit", sa.Integer, nullable=True))
        batch.add_column(sa.Column("max_concurrent_runs", sa.Integer, nullable=True))
    op.add_column("runs", sa.Column("trace_context", sa.String(128), nullable=True))
    op.create_table(
        "rate_limit_counters",
        sa.Column("project_id", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("window_start", sa.BigInteger, primary_key=True),
        sa.Column("used", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "usage_daily",
        sa.Column("project_id", sa.String(64), primary_key=True),
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("model", sa.String(256), primary_key=True),
        sa.Column("prompt_tokens", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("completion_tokens", sa.BigInteger, nullable=False, server_default="0"),
        *(sa.Column(f"runs_{status}", sa.BigInteger, nullable=False, server_default="0")
          for status in ("completed", "failed", "cancelled", "expired", "incomplete")),
    )


def downgrade() -> None:
    op.drop_table("usage_daily")
    op.drop_table("rate_limit_counters")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("trace_context")
    with op.batch_alter_table("projects") as batch:
        batch.drop_column("max_concurrent_runs")
        batch.drop_column("tpm_limit")
        batch.drop_column("rpm_limit")
