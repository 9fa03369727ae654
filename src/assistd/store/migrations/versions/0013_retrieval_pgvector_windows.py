"""Retrieval with pgvector: ``retrieval_chunks.windows_v vector[]``, each chunk's window vectors (what
``window_embeddings`` holds as bytes), so search in SQL ranks a chunk by its best window as the in-memory
path does. Only where migration 0004 added ``embedding_v`` (pgvector was installed); filled here from the
chunks already indexed with windows.

Revision ID: 0013
Revises: 0012
"""

import numpy as np
import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_BATCH = 1000


def _has_embedding_v(bind: sa.engine.Connection) -> bool:
    return bind.dialect.name == "postgresql" and bool(bind.execute(sa.text(
        "SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() "
        "AND table_name = 'retrieval_chunks' AND column_name = 'embedding_v'")).first())


def upgrade() -> None:
    bind = op.get_bind()
    if not _has_embedding_v(bind):
        return
    op.execute("ALTER TABLE retrieval_chunks ADD COLUMN windows_v vector[]")
    last = 0
    while True:
        rows = bind.execute(sa.text(
            "SELECT id, length(embedding), window_embeddings FROM retrieval_chunks "
            "WHERE id > :last AND window_embeddings IS NOT NULL ORDER BY id LIMIT :n"),
            {"last": last, "n": _BATCH}).all()
        if not rows:
            return
        bind.execute(sa.text("UPDATE retrieval_chunks SET windows_v = CAST(CAST(:w AS text) AS vector[]) "
                             "WHERE id = :id"),
                     [{"id": i, "w": windows_literal(bytes(w), size)} for i, size, w in rows])
        last = rows[-1][0]


def windows_literal(blob: bytes, row_bytes: int) -> str:
    """The text form of a ``vector[]`` of these float32 rows: ``{"[x,y,…]","[…]"}``."""
    matrix = np.frombuffer(blob, "<f4").reshape(-1, row_bytes // 4)
    return "{" + ",".join('"[' + ",".join(repr(float(x)) for x in row) + ']"' for row in matrix) + "}"


def downgrade() -> None:
    if _has_embedding_v(op.get_bind()):
        op.execute("ALTER TABLE retrieval_chunks DROP COLUMN IF EXISTS windows_v")
