"""Storage: SQLAlchemy Core tables and repository functions, on SQLite and PostgreSQL."""
