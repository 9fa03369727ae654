"""Retrieval, PostgreSQL only: ``retrieval_terms``, how many chunks of each store hold each lexeme, kept by
the index in the same transaction as the chunks (assistd.retrieval.index.term_counts), so the keyword
ranking learns how common a query's words are without reading the chunks. Filled here from the chunks
already indexed. SQLite reads the same from its FTS5 index: nothing to do there.

Revision ID: 0012
Revises: 0011
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("CREATE TABLE retrieval_terms (vector_store_id varchar(64) NOT NULL, term text NOT NULL, "
               "chunks integer NOT NULL, PRIMARY KEY (vector_store_id, term))")
    op.execute("INSERT INTO retrieval_terms (vector_store_id, term, chunks) "
               "SELECT vector_store_id, term, count(*) FROM retrieval_chunks, unnest(tsvector_to_array(tsv)) AS term "
               "GROUP BY vector_store_id, term")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TABLE retrieval_terms")
