"""Retrieval: ``usage_bytes`` per indexed file and per store, kept by the index's writes, so a vector store's
``usage_bytes`` is one row read instead of a sum over every chunk of the store on each file's status change.

Existing rows are filled from their chunks once, here.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("retrieval_files", sa.Column("usage_bytes", sa.BigInteger, nullable=False, server_default="0"))
    op.add_column("retrieval_stores", sa.Column("usage_bytes", sa.BigInteger, nullable=False, server_default="0"))
    op.execute("UPDATE retrieval_files SET usage_bytes = "
               "(SELECT COALESCE(SUM(LENGTH(c.text) + LENGTH(c.embedding)), 0) FROM retrieval_chunks c "
               "WHERE c.vector_store_id = retrieval_files.vector_store_id "
               "AND c.file_id = retrieval_files.file_id)")
    op.execute("UPDATE retrieval_stores SET usage_bytes = (SELECT COALESCE(SUM(f.usage_bytes), 0) "
               "FROM retrieval_files f WHERE f.vector_store_id = retrieval_stores.vector_store_id)")


def downgrade() -> None:
    for table in ("retrieval_stores", "retrieval_files"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("usage_bytes")
