"""The hybrid index's tables (on ``assistd.store.tables.metadata``; migration 0004 creates them).

- ``retrieval_stores``: one row per indexed vector store; ``version`` is bumped in the same transaction as
  every write that changes the store's vectors, so any process can tell whether its in-memory vector
  matrix for that store is current with one indexed read; ``usage_bytes`` moves by the same writes.
- ``retrieval_files``: one row per (store, file): its name, ``attributes`` (filters run on these) and the
  ``generation`` of its current chunks.
- ``retrieval_chunks``: chunk text, token count and the embedding as float32 little-endian bytes
  (L2-normalised). Dialect-specific companions, created by the migration and not declared here:
  SQLite ``retrieval_chunks_fts`` (FTS5, external content, kept in sync by triggers) and the index
  ``ix_retrieval_chunks_store_by_id`` (migration 0014: the keyword ranking's store check); PostgreSQL a
  generated ``tsv tsvector`` column with a GIN index, the table ``retrieval_terms`` (chunks of each store
  holding each lexeme, migration 0012, ``index/term_counts.py``), and ``embedding_v vector`` with
  ``windows_v vector[]`` (migration 0013) when pgvector is installed.
"""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Column, Index, Integer, LargeBinary, String, Table, Text
from sqlalchemy.dialects.postgresql import JSONB

from assistd.store.tables import SeqType, metadata

retrieval_stores = Table(
    "retrieval_stores",
    metadata,
    Column("vector_store_id", String(64), primary_key=True),
    Column("version", BigInteger, nullable=False),
    # Sum of its files' ``usage_bytes``, kept by every write (migration 0006): a store's usage is one read.
    Column("usage_bytes", BigInteger, nullable=False, server_default="0"),
)

retrieval_files = Table(
    "retrieval_files",
    metadata,
    Column("vector_store_id", String(64), primary_key=True),
    Column("file_id", String(64), primary_key=True),
    Column("file_name", Text, nullable=False),
    Column("attributes", JSON().with_variant(JSONB(), "postgresql"), nullable=False),
    # Random, new on every indexing of the file (0: indexed before migration 0005, unknown): what tells a
    # process's cached vectors which files changed since it loaded them.
    Column("generation", BigInteger, nullable=False, server_default="0"),
    # Bytes its chunks hold (text characters + vector bytes), counted when indexed (migration 0006).
    Column("usage_bytes", BigInteger, nullable=False, server_default="0"),
)

retrieval_chunks = Table(
    "retrieval_chunks",
    metadata,
    Column("id", SeqType, primary_key=True, autoincrement=True),
    Column("vector_store_id", String(64), nullable=False),
    Column("file_id", String(64), nullable=False),
    Column("chunk_index", Integer, nullable=False),
    Column("text", Text, nullable=False),
    Column("tokens", Integer, nullable=False),
    Column("embedding", LargeBinary, nullable=False),
    # The chunk's model windows' vectors, float32 [windows, dims] back to back (migration 0008); NULL: one
    # window, ``embedding`` (a short chunk, an upstream embedder, a chunk indexed before 0008).
    Column("window_embeddings", LargeBinary, nullable=True),
)
Index("ix_retrieval_chunks_file", retrieval_chunks.c.vector_store_id, retrieval_chunks.c.file_id)
