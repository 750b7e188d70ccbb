"""Postgres connections: one asyncpg pool per process, with the schema current.

Commands that write migrate first; commands that only read never do (the read-only
role may not) and refuse a schema older than this version instead."""

from __future__ import annotations

import logging

import asyncpg

from aggregator import logs
from aggregator.storage import migrations

log = logging.getLogger("aggregator.db")

_FLOOR_FAILED = "Failed to restore the pool connection floor"


class _PoolFloorOutage(logging.Filter):
    """asyncpg's pool logs "Failed to restore the pool connection floor; retrying" with a
    full traceback at every retry (1, 2, 4 ... 60 s apart) while PostgreSQL is down. Here
    that is one warning when the outage starts and one line when a pool connects again
    (``_connected``), as every other outage in the daemon is (``logs.Outage``)."""

    def __init__(self) -> None:
        super().__init__()
        self.outage = logs.Outage(log, "PostgreSQL pool connection")

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(_FLOOR_FAILED):
            return True
        error = record.exc_info[1] if record.exc_info else None
        self.outage.failed(error or ConnectionError("no detail"), "the pool keeps retrying")
        return False


_FLOOR = _PoolFloorOutage()
logging.getLogger("asyncpg.pool").addFilter(_FLOOR)


async def _connected(conn: asyncpg.Connection) -> None:
    _FLOOR.outage.succeeded()


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, command_timeout=60, init=_connected
    )
    assert pool is not None
    return pool


async def migrate(dsn: str) -> list[migrations.Migration]:
    conn = await asyncpg.connect(dsn)
    try:
        return await migrations.migrate(conn)
    finally:
        await conn.close()


async def connect_current(dsn: str) -> asyncpg.Connection:
    """A connection for a command that only reads: no migration, and the schema must be
    current (``SchemaBehindError`` says which migrations are missing)."""
    conn = await asyncpg.connect(dsn)
    try:
        await migrations.require_current(conn)
    except BaseException:
        await conn.close()
        raise
    return conn
