"""Files, vector stores, their files and batches, and the jobs queue (ingestion).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
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
        "files",
        *_object_columns(
            sa.Column("purpose", sa.String(32), nullable=False),
            sa.Column("blob_key", sa.String(128), nullable=False),
            sa.Column("expires_at", sa.BigInteger, nullable=True),
        ),
    )
    op.create_index("ix_files_project", "files", ["project_id", "created_at", "seq"])
    op.create_table("vector_stores", *_object_columns(sa.Column("expires_at", sa.BigInteger, nullable=True)))
    op.create_index("ix_vector_stores_project", "vector_stores", ["project_id", "created_at", "seq"])
    op.create_table(
        "vector_store_files",
        sa.Column("seq", Seq, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("vector_store_id", sa.String(64), nullable=False),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("batch_id", sa.String(64), nullable=True),
        sa.Column("data", sa.Text, nullable=False),
        sa.UniqueConstraint("vector_store_id", "id", name="uq_vector_store_files"),
    )
    op.create_index("ix_vector_store_files_store", "vector_store_files", ["vector_store_id", "created_at", "seq"])
    op.create_index("ix_vector_store_files_file", "vector_store_files", ["id"])
    op.create_index("ix_vector_store_files_batch", "vector_store_files", ["batch_id"])
    op.create_table("file_batches", *_object_columns(sa.Column("vector_store_id", sa.String(64), nullable=False)))
    op.create_index("ix_file_batches_store", "file_batches", ["vector_store_id"])
    op.create_table(
        "jobs",
        sa.Column("seq", Seq, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column("project_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("lease_owner", sa.String(128), nullable=True),
        sa.Column("lease_expires_at", sa.Float, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
    )
    op.create_index("ix_jobs_status", "jobs", ["status", "lease_expires_at"])


def downgrade() -> None:
    for name in ("jobs", "file_batches", "vector_store_files", "vector_stores", "files"):
        op.drop_table(name)
