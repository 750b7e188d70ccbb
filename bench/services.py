"""Where the bench finds Postgres and Redis, and the throwaway databases it makes there.

Postgres: ``AGGREGATOR_BENCH_DATABASE_URL``, else ``AGGREGATOR_TEST_DATABASE_URL``
(what CI sets), else the local server on 127.0.0.1:5432. The bench creates
databases named ``bench_<pid>_<what>`` and drops each when done; it never
touches another database. Redis: database 14 of the local (or test) server,
claimed the way test sessions claim theirs and flushed before each run; or
exactly ``AGGREGATOR_BENCH_REDIS_URL``.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

import asyncpg

BENCH_REDIS_DB = 14
DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"


def server_database_url() -> str:
    return (
        os.environ.get("AGGREGATOR_BENCH_DATABASE_URL")
        or os.environ.get("AGGREGATOR_TEST_DATABASE_URL")
        or DEFAULT_SERVER
    )


def redis_url() -> str:
    """``AGGREGATOR_BENCH_REDIS_URL`` as given (the smoke test passes its session's own
    database), else database 14 of the test or local Redis server."""
    given = os.environ.get("AGGREGATOR_BENCH_REDIS_URL")
    if given:
        return given
    base = os.environ.get("AGGREGATOR_TEST_REDIS_URL") or DEFAULT_REDIS
    return urlunsplit(urlsplit(base)._replace(path=f"/{BENCH_REDIS_DB}"))


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def database_name(what: str) -> str:
    return f"bench_{os.getpid()}_{what}"


async def create_database(server_url: str, name: str) -> str:
    assert name.startswith("bench_"), name  # never anything but our own
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(server_url, name)


async def drop_database(server_url: str, name: str) -> None:
    assert name.startswith("bench_"), name
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


# The test suite's protocol (tests/services.py): a session claims a database number by
# setting this key with NX and flushes only that database. The bench claims 14 the same way,
# so a test session started meanwhile picks another number instead of flushing ours.
CLAIM_KEY = "aggregator-test-session"
CLAIM_SECONDS = 3600


def _ancestors() -> set[int]:
    import psutil

    return {p.pid for p in psutil.Process().parents()}


async def claim_redis(url: str, *, wait: float = 120.0) -> str:
    """Claim database 14 for this process, waiting while another live session holds it.

    A claim held by an ancestor (the test session that runs ``python -m bench --quick``
    as one of its tests, and flushes nothing while that test runs) is shared, not taken.
    Returns the claim's value, to be kept across flushes."""
    import asyncio

    import psutil
    import redis.asyncio

    client = redis.asyncio.from_url(url)  # type: ignore[no-untyped-call]
    mine = str(os.getpid())
    try:
        deadline = asyncio.get_running_loop().time() + wait
        while True:
            if await client.set(CLAIM_KEY, mine, nx=True, ex=CLAIM_SECONDS):
                return mine
            raw = await client.get(CLAIM_KEY)
            holder = raw.decode() if raw is not None else ""
            if holder == mine or (holder.isdigit() and int(holder) in _ancestors()):
                return holder
            if holder.isdigit() and not psutil.pid_exists(int(holder)):
                await client.delete(CLAIM_KEY)  # its session died without releasing it
                continue
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(
                    f"Redis database {BENCH_REDIS_DB} is claimed by process {holder or '?'} "
                    "(a test session); try again when it ends"
                )
            await asyncio.sleep(1)
    finally:
        await client.aclose()


async def flush_redis(url: str) -> None:
    """Empty database 14, keeping the claim on it."""
    import redis.asyncio

    holder = await claim_redis(url)
    client = redis.asyncio.from_url(url)  # type: ignore[no-untyped-call]
    try:
        await client.flushdb()
        await client.set(CLAIM_KEY, holder, ex=CLAIM_SECONDS)
    finally:
        await client.aclose()


# What a running daemon keeps in Redis between polls: a run of the bench starts with it,
# as a poll cycle of a daemon that has been running does.
DAEMON_STATE = (b"aggregator:window:",)


async def flush_queues(url: str) -> None:
    """Empty database 14 but for the daemon's state between cycles (and the claim)."""
    import redis.asyncio

    holder = await claim_redis(url)
    client = redis.asyncio.from_url(url)  # type: ignore[no-untyped-call]
    try:
        doomed = [
            key
            async for key in client.scan_iter(count=1000)
            if not key.startswith(DAEMON_STATE) and key != CLAIM_KEY.encode()
        ]
        for start in range(0, len(doomed), 1000):
            await client.delete(*doomed[start : start + 1000])
        await client.set(CLAIM_KEY, holder, ex=CLAIM_SECONDS)
    finally:
        await client.aclose()


async def release_redis(url: str) -> None:
    import redis.asyncio

    client = redis.asyncio.from_url(url)  # type: ignore[no-untyped-call]
    try:
        if await client.get(CLAIM_KEY) == str(os.getpid()).encode():
            await client.flushdb()  # leave nothing behind, claim included
        # A claim shared with an ancestor stays its own; our keys are its to flush.
    finally:
        await client.aclose()
