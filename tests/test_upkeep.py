"""The daemon vacuums the story key claims itself: the table stays small however many
articles are stored, on a server whose autovacuum is off or behind."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import asyncpg
import pytest

from aggregator.model import Article
from aggregator.runtime import Runtime
from aggregator.storage import upkeep
from aggregator.storage.articles import StoreBatch, Validators, store_batch

WORDS = [
    "minister",
    "port",
    "oil",
    "talks",
    "border",
    "court",
    "council",
    "grain",
    "tanker",
    "river",
    "election",
    "market",
    "drought",
    "protest",
    "budget",
    "airline",
    "railway",
    "bank",
    "hospital",
    "harbour",
    "refinery",
    "shipment",
    "ceasefire",
    "parliament",
]

_CLAIMS_BYTES = """
SELECT pg_relation_size('story_key_claims') + pg_relation_size('story_key_claims_pkey')
"""
_STATS = """
SELECT n_dead_tup, vacuum_count FROM pg_stat_user_tables
WHERE relid = 'story_key_claims'::regclass
"""


def article(rng: random.Random, n: int) -> Article:
    """A story long enough to have story keys (about 33 claims when stored)."""
    text = " ".join(rng.choice(WORDS) for _ in range(120)) + f" {n}."
    return Article(
        content_hash=f"{rng.getrandbits(256):064x}",
        canonical_url=f"https://upkeep.example/{n}",
        url=None,
        guid=None,
        title=f"story {n} " + " ".join(rng.choice(WORDS) for _ in range(6)),
        summary="",
        content_html="",
        content_text=text,
        author=None,
        language="en",
        region="test",
        published_at=datetime.now(UTC),
    )


async def store(pool: asyncpg.Pool, feed_id: int, rng: random.Random, batches: int) -> None:
    for b in range(batches):
        batch = StoreBatch(
            feed_id=feed_id,
            body_hash=f"{rng.getrandbits(256):064x}",
            validators=Validators(body_hash=f"{b:064x}"),
            articles=[article(rng, rng.getrandbits(40)) for _ in range(20)],
            fetched_at=datetime.now(UTC),
        )
        async with pool.acquire() as conn:
            await store_batch(conn, batch)


async def stats(
    pool: asyncpg.Pool, until: Callable[[int, int], bool], timeout: float = 30.0
) -> tuple[int, int]:
    """(dead rows, vacuums) once ``until(dead, vacuums)``: the statistics are flushed by
    each backend about once a second, or ten when idle."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        dead, vacuums = await pool.fetchrow(_STATS)
        if until(dead, vacuums):
            return dead, vacuums
        assert asyncio.get_running_loop().time() < deadline, (dead, vacuums)
        await asyncio.sleep(0.5)


@pytest.fixture
async def feed_id(runtime: Runtime) -> AsyncIterator[int]:
    """A feed to store under, with autovacuum kept off the claims, as on a server where it
    is off: the test decides when they are vacuumed."""
    pool = runtime.pool
    await pool.execute("ALTER TABLE story_key_claims SET (autovacuum_enabled = false)")
    try:
        yield await pool.fetchval(
            "INSERT INTO feeds (url) VALUES ('https://upkeep.example/feed') RETURNING id"
        )
    finally:
        await pool.execute("ALTER TABLE story_key_claims RESET (autovacuum_enabled)")


async def test_claims_are_vacuumed_past_the_threshold_and_stay_small(
    runtime: Runtime, feed_id: int
) -> None:
    pool = runtime.pool
    rng = random.Random(14)
    await store(pool, feed_id, rng, 10)  # 200 articles, about 6,600 claims
    assert await pool.fetchval("SELECT count(*) FROM story_key_claims") == 0
    dead, vacuums = await stats(pool, lambda dead, _: dead > 5000)
    unvacuumed = await pool.fetchval(_CLAIMS_BYTES)

    # Under the threshold: nothing happens.
    assert not await upkeep.vacuum_claims(pool, dead_rows=dead + 1)
    # Over it: vacuumed, and the dead rows are gone.
    assert await upkeep.vacuum_claims(pool, dead_rows=dead - 1)
    await stats(pool, lambda dead, count: dead == 0 and count == vacuums + 1)

    # Four more rounds, each vacuumed: the space of the first is reused every time.
    for _ in range(4):
        await store(pool, feed_id, rng, 10)
        assert await upkeep.vacuum_claims(pool, dead_rows=-1)
    kept = await pool.fetchval(_CLAIMS_BYTES)
    assert kept <= unvacuumed, (kept, unvacuumed)

    # Unvacuumed, the same forty batches grow it: the bound above is the vacuum's doing,
    # not the table's. (By how much varies: Postgres prunes some dead rows of a heap page
    # when it visits a full one.)
    await store(pool, feed_id, rng, 40)
    grown = await pool.fetchval(_CLAIMS_BYTES)
    assert grown > kept, (grown, kept, unvacuumed)


async def test_the_daemon_task_vacuums_on_its_interval(
    runtime: Runtime, feed_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = runtime.pool
    await store(pool, feed_id, random.Random(16), 5)
    _, vacuums = await stats(pool, lambda dead, _: dead > 1000)
    monkeypatch.setattr(upkeep, "INTERVAL", 0.2)
    monkeypatch.setattr(upkeep, "DEAD_ROWS", 1000)
    stop = asyncio.Event()
    task = asyncio.create_task(upkeep.run_forever(pool, stop))
    try:
        await stats(pool, lambda dead, count: dead == 0 and count > vacuums)
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
