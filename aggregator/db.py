"""Postgres connections: one asyncpg pool per process, with the schema current.

Commands that write migrate first; commands that only read never do (the read-only
role may not) and refuse a schema older than this version instead."""

from __future__ import annotations

import asyncpg

from aggregator import migrations


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, command_timeout=60)
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
