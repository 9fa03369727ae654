"""Foundation: projects, API keys, assistants, threads, messages.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
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
        "projects",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(256), nullable=False, unique=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("project_id", sa.String(64), sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("name", sa.String(256), nullable=True),
        sa.Column("secret_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("redacted", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("revoked_at", sa.BigInteger, nullable=True),
    )
    op.create_table("assistants", *_object_columns())
    op.create_index("ix_assistants_project", "assistants", ["project_id", "created_at", "seq"])
    op.create_table("threads", *_object_columns())
    op.create_index("ix_threads_project", "threads", ["project_id", "created_at", "seq"])
    op.create_table(
        "messages",
        *_object_columns(
            sa.Column("thread_id", sa.String(64), nullable=False),
            sa.Column("run_id", sa.String(64), nullable=True),
        ),
    )
    op.create_index("ix_messages_thread", "messages", ["thread_id", "created_at", "seq"])


def downgrade() -> None:
    for name in ("messages", "threads", "assistants", "api_keys", "projects"):
        op.drop_table(name)
