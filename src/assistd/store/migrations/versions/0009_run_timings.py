"""Millisecond timings of runs and steps for the console's run view (the API's times are whole seconds).
Columns beside ``data``, never inside it: the hot reads serve ``data`` as stored.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

RUN_COLUMNS = ("queued_ms", "started_ms", "first_token_ms", "ended_ms")
STEP_COLUMNS = ("created_ms", "ended_ms")


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        for name in RUN_COLUMNS:
            batch.add_column(sa.Column(name, sa.BigInteger, nullable=True))
    with op.batch_alter_table("run_steps") as batch:
        for name in STEP_COLUMNS:
            batch.add_column(sa.Column(name, sa.BigInteger, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("run_steps") as batch:
        for name in reversed(STEP_COLUMNS):
            batch.drop_column(name)
    with op.batch_alter_table("runs") as batch:
        for name in reversed(RUN_COLUMNS):
            batch.drop_column(name)
