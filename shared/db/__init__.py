"""Database engines and schema migrations."""
