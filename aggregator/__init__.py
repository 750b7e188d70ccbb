"""A regional news aggregator: poll feeds, dedupe stories, store articles in PostgreSQL."""

__version__ = "0.1.0"
