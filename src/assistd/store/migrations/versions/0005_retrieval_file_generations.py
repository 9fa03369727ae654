"""Retrieval: a generation per indexed file, so a process's in-memory vectors of a store can be refreshed by
the files that changed instead of reloaded whole (assistd.retrieval.index.vectors).

Rows indexed before have generation 0, "unknown": a store holding one is reloaded whole, as before.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("retrieval_files", sa.Column("generation", sa.BigInteger, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("retrieval_files") as batch:
        batch.drop_column("generation")
