"""Storage: what Postgres and Redis hold, one module per table family, each taking a connection."""
