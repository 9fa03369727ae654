"""Runs (also the work queue) and run steps.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Seq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _object_columns(*extra: sa.Column) -> list:
    return [
        sa.Column("seq", Seq, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        *extra,
        sa.Column("data", sa.Text, nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "runs",
        *_object_columns(
            sa.Column("thread_id", sa.String(64), nullable=False),
            sa.Column("status", sa.String(32), nullable=False),
            sa.Column("lease_owner", sa.String(128), nullable=True),
            sa.Column("lease_expires_at", sa.Float, nullable=True),
            sa.Column("expires_at", sa.BigInteger, nullable=True),
        ),
    )
    op.create_index("ix_runs_thread", "runs", ["thread_id", "created_at", "seq"])
    op.create_index("ix_runs_status", "runs", ["status", "lease_expires_at"])
    op.create_table(
        "run_steps",
        *_object_columns(
            sa.Column("thread_id", sa.String(64), nullable=False),
            sa.Column("run_id", sa.String(64), nullable=False),
            sa.Column("status", sa.String(32), nullable=False),
        ),
    )
    op.create_index("ix_run_steps_run", "run_steps", ["run_id", "created_at", "seq"])
    op.create_index("ix_run_steps_thread", "run_steps", ["thread_id"])


def downgrade() -> None:
    op.drop_table("run_steps")
    op.drop_table("runs")
