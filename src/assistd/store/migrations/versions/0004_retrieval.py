"""Retrieval index: stores (versions), files (name, attributes), chunks (text, embedding) + full-text search.

SQLite: an FTS5 table over ``retrieval_chunks.text`` (external content, porter stemming) kept in sync by
triggers. PostgreSQL: a generated ``tsv`` column (english) with a GIN index; when the pgvector extension is
already installed in the database, an ``embedding_v vector`` column too (see assistd.retrieval.index).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

Seq = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

_SQLITE_FTS = [
    "CREATE VIRTUAL TABLE retrieval_chunks_fts USING fts5(text, content='retrieval_chunks', content_rowid='id', "
    "tokenize='porter unicode61 remove_diacritics 2')",
    "CREATE TRIGGER retrieval_chunks_ai AFTER INSERT ON retrieval_chunks BEGIN "
    "INSERT INTO retrieval_chunks_fts(rowid, text) VALUES (new.id, new.text); END",
    "CREATE TRIGGER retrieval_chunks_ad AFTER DELETE ON retrieval_chunks BEGIN "
    "INSERT INTO retrieval_chunks_fts(retrieval_chunks_fts, rowid, text) VALUES ('delete', old.id, old.text); END",
    "CREATE TRIGGER retrieval_chunks_au AFTER UPDATE OF text ON retrieval_chunks BEGIN "
    "INSERT INTO retrieval_chunks_fts(retrieval_chunks_fts, rowid, text) VALUES ('delete', old.id, old.text); "
    "INSERT INTO retrieval_chunks_fts(rowid, text) VALUES (new.id, new.text); END",
]


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.create_table(
        "retrieval_stores",
        sa.Column("vector_store_id", sa.String(64), primary_key=True),
        sa.Column("version", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "retrieval_files",
        sa.Column("vector_store_id", sa.String(64), primary_key=True),
        sa.Column("file_id", sa.String(64), primary_key=True),
        sa.Column("file_name", sa.Text, nullable=False),
        sa.Column("attributes", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=False),
    )
    op.create_table(
        "retrieval_chunks",
        sa.Column("id", Seq, primary_key=True, autoincrement=True),
        sa.Column("vector_store_id", sa.String(64), nullable=False),
        sa.Column("file_id", sa.String(64), nullable=False),
        sa.Column("chunk_index", sa.Integer, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("tokens", sa.Integer, nullable=False),
        sa.Column("embedding", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_retrieval_chunks_file", "retrieval_chunks", ["vector_store_id", "file_id"])
    if dialect == "sqlite":
        for statement in _SQLITE_FTS:
            op.execute(statement)
    elif dialect == "postgresql":
        op.execute("ALTER TABLE retrieval_chunks ADD COLUMN tsv tsvector "
                   "GENERATED ALWAYS AS (to_tsvector('english', text)) STORED")
        op.execute("CREATE INDEX ix_retrieval_chunks_tsv ON retrieval_chunks USING gin (tsv)")
        has_vector = op.get_bind().execute(sa.text("SELECT 1 FROM pg_extension WHERE extname = 'vector'")).first()
        if has_vector:
            # No fixed dimension: the local model gives 384, upstream models others. Search is exact.
            op.execute("ALTER TABLE retrieval_chunks ADD COLUMN embedding_v vector")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE IF EXISTS retrieval_chunks_fts")
    op.drop_table("retrieval_chunks")
    op.drop_table("retrieval_files")
    op.drop_table("retrieval_stores")
