"""Test fixtures: real Postgres, real Redis, a real local feed server, and a network guard."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio

from tests import netguard, services
from tests.feedserver import FeedServer

netguard.install()  # before any test can open a socket

from aggregator.app.embedded import EmbeddedServices  # noqa: E402
from aggregator.runtime import Runtime, open_runtime  # noqa: E402
from aggregator.settings import Settings  # noqa: E402
from aggregator.storage import migrations  # noqa: E402

TABLES = (
    "article_sources",
    "articles",
    "feeds",
    "outbox",
    "subscribers",
    "stories",
    "story_keys",
    "processes",
)


@pytest.fixture(scope="session")
def service_urls() -> Iterator[tuple[str, str]]:
    """(database URL, Redis URL) for the session: see ``tests/services.py`` for where from.

    The database is created for the session and dropped after it; the Redis is the one
    ``AGGREGATOR_TEST_REDIS_URL`` names, else a throwaway server of the session's own."""
    server_db = services.server_database_url()
    redis_url = services.named_redis_url()
    own_redis = None if redis_url else services.ThrowawayRedis().start()
    embedded = None
    try:
        if own_redis is not None:
            redis_url = own_redis.url
        if server_db is None:
            # Not under pytest's private tmp folder: as root, the server runs as another user.
            embedded = EmbeddedServices(
                Path(tempfile.mkdtemp(prefix="aggregator-test-")), redis=False
            )
            embedded.start()
            print(f"\nusing embedded PostgreSQL in {embedded.data_dir}")
            server_db = embedded.database_url
        assert redis_url is not None
        name = f"aggregator_test_{os.getpid()}"
        database_url = asyncio.run(services.create_database(server_db, name))
        try:
            yield database_url, redis_url
        finally:
            asyncio.run(services.drop_database(server_db, name))
    finally:
        if own_redis is not None:
            own_redis.stop()
        if embedded is not None:
            embedded.stop()
            shutil.rmtree(embedded.data_dir, ignore_errors=True)


@pytest.fixture
def database_url(service_urls: tuple[str, str]) -> str:
    return service_urls[0]


@pytest.fixture
def redis_url(service_urls: tuple[str, str]) -> str:
    return service_urls[1]


@pytest.fixture
async def clean_services(database_url: str, redis_url: str) -> AsyncIterator[None]:
    """Empty tables (schema current) and an empty Redis database for this test."""
    conn = await asyncpg.connect(database_url)
    try:
        await migrations.migrate(conn)
        await conn.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()
    client = redis.asyncio.from_url(redis_url)  # the session's own, or the one named for tests
    await client.flushdb()
    await client.aclose()
    yield


@pytest.fixture
def settings(database_url: str, redis_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        allow_private_networks=True,  # the test feed server is on 127.0.0.1
        parse_processes=1,
        poll_delay=0.01,
        min_interval=1,
        host_rate=1000,  # every test feed lives on 127.0.0.1: one host
        host_concurrency=50,
        _env_file=None,  # type: ignore[call-arg]
    )


@pytest.fixture
async def runtime(settings: Settings, clean_services: None) -> AsyncIterator[Runtime]:
    async with open_runtime(settings) as rt:
        yield rt


@pytest.fixture
async def feed_server() -> AsyncIterator[FeedServer]:
    server = FeedServer()
    await server.start()
    yield server
    await server.stop()
