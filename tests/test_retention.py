"""Retention: prune 200,000 old articles while ingestion keeps running, in short batches."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from aggregator.model import Article
from aggregator.runtime import Runtime
from aggregator.storage import retention
from aggregator.storage.articles import StoreBatch, Validators, store_batch

pytestmark = pytest.mark.slow

OLD = 200_000

_SEED_OLD = """
INSERT INTO articles (content_hash, title, content_text, published_at, first_seen_at)
SELECT md5(g::text) || md5((g + 1)::text), 'old ' || g, repeat('old text ', 20),
       now() - interval '200 days', now() - interval '200 days'
FROM generate_series(1, $1) AS g
"""


def article(n: int) -> Article:
    return Article(
        content_hash=f"{n:064x}",
        canonical_url=f"https://new.example/{n}",
        url=None,
        guid=None,
        title=f"new {n}",
        summary="",
        content_html="",
        content_text=f"fresh story number {n} " * 5,
        author=None,
        language="en",
        region="test",
        published_at=datetime.now(UTC),
    )


async def test_prune_200k_while_ingesting_with_short_locks(runtime: Runtime) -> None:
    pool = runtime.pool
    feed_id = await pool.fetchval(
        "INSERT INTO feeds (url) VALUES ('https://new.example/') RETURNING id"
    )
    await pool.execute(_SEED_OLD, OLD)
    await pool.execute(
        "INSERT INTO article_sources (article_id, feed_id, seen_at) "
        "SELECT id, $1, first_seen_at FROM articles",
        feed_id,
    )
    assert await pool.fetchval("SELECT count(*) FROM articles") == OLD

    latencies: list[float] = []
    stop = asyncio.Event()

    async def ingest() -> int:
        """A writer storing a new article every 20 ms, timing each transaction."""
        n = 0
        while not stop.is_set():
            n += 1
            batch = StoreBatch(
                feed_id=feed_id,
                body_hash=f"{n:064x}",
                validators=Validators(body_hash=f"{n:064x}"),
                articles=[article(n)],
                fetched_at=datetime.now(UTC),
            )
            started = time.monotonic()
            async with pool.acquire() as conn:
                await store_batch(conn, batch)
            latencies.append(time.monotonic() - started)
            await asyncio.sleep(0.02)
        return n

    writer = asyncio.create_task(ingest())
    result = await retention.prune(pool, timedelta(days=90))
    stop.set()
    written = await writer

    assert result.articles == OLD and result.batches == OLD // retention.DEFAULT_BATCH
    print(
        f"\npruned {OLD} articles in {result.batches} batches; longest batch "
        f"{result.longest_batch_seconds:.3f} s; {len(latencies)} concurrent stores, slowest "
        f"{max(latencies):.3f} s"
    )
    assert result.longest_batch_seconds < 1.0
    assert max(latencies) < 1.0, "no store waited a second on the prune"
    assert await pool.fetchval("SELECT count(*) FROM articles") == written
    assert await pool.fetchval("SELECT count(*) FROM article_sources") == written
    assert not await pool.fetchval(
        "SELECT count(*) FROM articles WHERE first_seen_at < now() - interval '90 days'"
    )


async def test_emptied_stories_go_and_ages_parse(runtime: Runtime) -> None:
    pool = runtime.pool
    old = datetime.now(UTC) - timedelta(days=100)
    ids = [
        await pool.fetchval(
            "INSERT INTO articles (content_hash, published_at, first_seen_at) VALUES ($1, $2, $3) "
            "RETURNING id",
            f"{n:064x}",
            old,
            old if n < 3 else datetime.now(UTC),
        )
        for n in range(4)
    ]
    # Story A: two old articles (goes). Story B: one old, one new (stays).
    for story, members in ((ids[0], ids[:2]), (ids[2], ids[2:])):
        await pool.execute(
            "INSERT INTO stories (id, first_seen_at, published_at, updated_at) VALUES ($1, $2, $2, $2)",
            story,
            old,
        )
        await pool.execute("UPDATE articles SET story_id = $1 WHERE id = ANY($2)", story, members)
    result = await retention.prune(pool, retention.parse_age("90d"))
    assert (result.articles, result.stories) == (3, 1)
    assert [r["id"] for r in await pool.fetch("SELECT id FROM stories")] == [ids[2]]
    assert retention.parse_age("36h") == timedelta(hours=36)
    with pytest.raises(ValueError, match="not an age"):
        retention.parse_age("soon")


async def test_stories_that_keep_articles_are_counted_again(runtime: Runtime) -> None:
    """A story that loses some of its articles to retention says how many it has left,
    and its representative is one of them; its updated_at (when an article last
    joined) stays."""
    pool = runtime.pool
    now = datetime.now(UTC).replace(microsecond=0)
    old = now - timedelta(days=100)
    texts = ["the fullest text of all, the wire copy " * 10, "a short copy", "a longer copy " * 3]
    ids = [
        await pool.fetchval(
            "INSERT INTO articles (content_hash, content_text, published_at, first_seen_at) "
            "VALUES ($1, $2, $3, $3) RETURNING id",
            f"{n + 100:064x}",
            text,
            old if n == 0 else now - timedelta(hours=n),
        )
        for n, text in enumerate(texts)
    ]
    joined = now - timedelta(minutes=5)
    await pool.execute(
        "INSERT INTO stories (id, first_seen_at, published_at, updated_at, article_count, "
        "representative_id) VALUES ($1, $2, $2, $3, 3, $1)",
        ids[0],
        old,
        joined,
    )
    await pool.execute("UPDATE articles SET story_id = $1 WHERE id = ANY($2)", ids[0], ids)

    result = await retention.prune(pool, timedelta(days=90))

    assert (result.articles, result.stories) == (1, 0)
    story = await pool.fetchrow("SELECT * FROM stories WHERE id = $1", ids[0])
    left = await pool.fetchval("SELECT count(*) FROM articles WHERE story_id = $1", ids[0])
    assert story["article_count"] == left == 2
    assert story["representative_id"] == ids[2]  # the fullest text left
    assert story["first_seen_at"] == story["published_at"] == now - timedelta(hours=2)
    assert story["updated_at"] == joined
