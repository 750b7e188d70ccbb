"""Postgres connections: one asyncpg pool per process, with the schema current."""

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
