"""Retrieval, SQLite only: an index of each chunk's store by chunk id, ``(id, vector_store_id)``.

The keyword ranking drives its join from the FTS5 match and checks each matching chunk's store (a search is
scoped to its stores). Read from the chunks' own rows, that check visits a table page per match (rows hold
the text and the vectors: ~2 KB each at 384 dimensions), and the matches of a few common words sweep the
connection's page cache, FTS index pages included; this index answers it from ~30 bytes an entry. Ids only
grow, so each insert appends to it. PostgreSQL's keyword side filters on its own heap rows: nothing to do.

Revision ID: 0014
Revises: 0013
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("CREATE INDEX ix_retrieval_chunks_store_by_id ON retrieval_chunks (id, vector_store_id)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP INDEX ix_retrieval_chunks_store_by_id")
