"""A process's Redis connections are bounded: callers beyond the bound wait, none fails."""

from __future__ import annotations

import asyncio

import redis.asyncio

from aggregator import queue


async def _clients_named(url: str, name: str) -> int:
    async with redis.asyncio.from_url(url) as admin:
        clients = await admin.client_list()
    return sum(1 for c in clients if c.get("name") == name)


async def test_concurrent_commands_share_a_bounded_pool(
    redis_url: str, clean_services: None
) -> None:
    pool = await queue.connect(redis_url, max_connections=4)
    name = "bounded-pool-test"
    pool.connection_pool.connection_kwargs["client_name"] = name
    try:
        # 200 commands at once, each holding its connection for a moment (BLPOP on an
        # empty list with a short timeout): an unbounded pool opens one for each.
        results = await asyncio.gather(
            *(pool.blpop([f"bounded-pool-test:{i}"], timeout=0.05) for i in range(40)),
            *(pool.incr("bounded-pool-test:count") for _ in range(160)),
        )
        assert results[40:] and sorted(results[40:]) == list(range(1, 161))
        assert results[:40] == [None] * 40
        assert 1 <= await _clients_named(redis_url, name) <= 4
    finally:
        await pool.aclose()
    assert await _clients_named(redis_url, name) == 0


async def test_the_daemons_pool_is_bounded_by_default(redis_url: str) -> None:
    pool = await queue.connect(redis_url)
    try:
        assert isinstance(pool.connection_pool, redis.asyncio.BlockingConnectionPool)
        assert pool.connection_pool.max_connections == queue.REDIS_CONNECTIONS
        assert await pool.ping()
    finally:
        await pool.aclose()
