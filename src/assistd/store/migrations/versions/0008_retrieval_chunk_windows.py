"""Retrieval: each chunk's model-window vectors (``retrieval_chunks.window_embeddings``), so vector search
scores a chunk by its best window rather than by the average of its windows.

Existing chunks keep NULL: they are searched by their one ``embedding``, as one window.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("retrieval_chunks", sa.Column("window_embeddings", sa.LargeBinary, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("retrieval_chunks") as batch:
        batch.drop_column("window_embeddings")
