"""Exact concurrent-runs limits: each project counts the runs holding one of its slots (``active_runs``),
and a run records whether it holds one (``holds_slot``), so the transaction that ends it gives it back
once (services/run_slots.py). Runs active before this migration hold no slot.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("projects") as batch:
        batch.add_column(sa.Column("active_runs", sa.Integer, nullable=False, server_default="0"))
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("holds_slot", sa.Boolean, nullable=True))
    holding = sa.text("holds_slot IS true")
    op.create_index("ix_runs_holding_slot", "runs", ["project_id"], sqlite_where=holding, postgresql_where=holding)


def downgrade() -> None:
    op.drop_index("ix_runs_holding_slot", "runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("holds_slot")
    with op.batch_alter_table("projects") as batch:
        batch.drop_column("active_runs")
