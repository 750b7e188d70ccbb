"""The ingest pipeline end to end: local feed server, real arq workers, Redis and Postgres."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from aggregator import queue
from aggregator.app import daemon
from aggregator.pipeline.normalize import FeedContext, articles_from_document
from aggregator.runtime import Runtime
from tests.feedserver import FeedServer
from tests.groundtruth import Corpus, corpora, corpus_params, ingest, pairwise

CORPORA = corpus_params()


@pytest.mark.parametrize("root", CORPORA)
async def test_exact_duplicates_match_ground_truth(
    root: Path, runtime: Runtime, feed_server: FeedServer
) -> None:
    corpus = Corpus.load(root)
    feed_ids = await ingest(runtime, feed_server, corpus)
    async with runtime.pool.acquire() as conn:
        system = await corpus.stored_groups(conn, feed_ids)
        articles = await conn.fetchval("SELECT count(*) FROM articles")
    truth = {i["item_id"]: i["exact_dup_group"] for i in corpus.items}
    precision, recall = pairwise(system, truth)
    print(f"{root}: exact groups precision={precision:.3f} recall={recall:.3f}")
    assert (precision, recall) == (1.0, 1.0)
    assert articles == len(set(truth.values())), "one stored article per exact group"


@pytest.mark.parametrize("root", CORPORA)
async def test_second_run_is_conditional_and_changes_nothing(
    root: Path, runtime: Runtime, feed_server: FeedServer
) -> None:
    corpus = Corpus.load(root)
    await ingest(runtime, feed_server, corpus)
    snapshot_sql = (
        "SELECT a.*, (SELECT array_agg(s.* ORDER BY s.feed_id) FROM article_sources s "
        "WHERE s.article_id = a.id) AS sightings FROM articles a ORDER BY id"
    )
    before = [dict(r) for r in await runtime.pool.fetch(snapshot_sql)]
    first_requests = len(feed_server.requests)

    summary = await daemon.run_once(runtime, timeout=120)

    after = [dict(r) for r in await runtime.pool.fetch(snapshot_sql)]
    assert after == before
    assert (summary.articles_new, summary.duplicates_merged) == (0, 0)
    second = feed_server.requests[first_requests:]
    assert len(second) == len(corpus.feeds)
    assert all(r.if_none_match and r.if_modified_since for r in second)
    assert {r.status for r in second} == {304}


async def test_seen_cache_skips_known_items_and_new_items_still_arrive(
    runtime: Runtime, feed_server: FeedServer
) -> None:
    """A changed body whose items were all delivered stores nothing; one new item is stored."""
    corpus = Corpus.load(corpora()[0])
    feed = corpus.feeds[0]
    raw = (corpus.root / feed["file"]).read_bytes()
    url = feed_server.add("f.xml", raw, feed["content_type"], validators=False)
    async with runtime.pool.acquire() as conn:
        await conn.execute("INSERT INTO feeds (url) VALUES ($1)", url)
    await daemon.run_once(runtime)
    count = await runtime.pool.fetchval("SELECT count(*) FROM articles")

    # Same items, different bytes (a comment): parsed, but every item is already known.
    feed_server.add("f.xml", raw + b"\n<!-- changed -->\n", feed["content_type"], validators=False)
    summary = await daemon.run_once(runtime)
    assert summary.articles_new == 0
    assert await runtime.pool.fetchval("SELECT count(*) FROM articles") == count
    assert await runtime.redis.zcard(queue.STORE_QUEUE) == 0


async def test_queue_payloads_are_json(runtime: Runtime) -> None:
    leases = [(42, "token-a"), (43, "token-b")]
    assert await queue.enqueue_polls(runtime.redis, leases) is True
    raw = await runtime.redis.get("arq:job:" + queue.poll_job_id(leases))
    payload = json.loads(raw)
    assert payload["f"] == queue.POLL_JOB and payload["a"] == [[[42, "token-a"], [43, "token-b"]]]
    # The same batch queued again (a retried scheduler pass) is refused: it runs once.
    assert await queue.enqueue_polls(runtime.redis, leases) is False
    assert await queue.enqueue_polls(runtime.redis, [(42, "token-c")]) is True  # a new lease


def _rss(items: list[tuple[str, str]]) -> bytes:
    entries = "".join(
        f"<item><guid>{guid}</guid><title>Title {guid}</title><link>https://news.example/{guid}"
        f"</link><description>{text}</description></item>"
        for guid, text in items
    )
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>{entries}</channel></rss>'.encode()


def test_known_entries_are_not_normalized_again() -> None:
    feed = FeedContext(url="https://news.example/feed.xml", language="en", region="gulf")
    now = datetime.now(UTC)
    text = "A paragraph long enough to be hashed on its own text, about story {}."
    first = _rss([(g, text.format(g)) for g in ("a", "b", "c")])
    info, articles = articles_from_document(
        first, url=feed.url, content_type=None, feed=feed, now=now
    )
    assert len(articles) == len(info.entry_keys) == 3

    # One new entry, one edited in place (same guid, corrected text), one dropped.
    second = _rss(
        [("d", text.format("d")), ("a", text.format("a, corrected")), ("b", text.format("b"))]
    )
    info2, fresh = articles_from_document(
        second,
        url=feed.url,
        content_type=None,
        feed=feed,
        now=now,
        known_entries=frozenset(info.entry_keys),
    )
    assert [a.title for a in fresh] == ["Title d", "Title a"], "the new and the edited, not b"
    assert len(info2.entry_keys) == len(info2.published) == 3
    # The same entries under another feed setting are another thing: read again.
    other = feed.model_copy(update={"language": "ar"})
    _, again = articles_from_document(
        first,
        url=feed.url,
        content_type=None,
        feed=other,
        now=now,
        known_entries=frozenset(info.entry_keys),
    )
    assert len(again) == 3


async def test_a_feed_remembers_its_delivered_entries(
    runtime: Runtime, feed_server: FeedServer
) -> None:
    text = "A paragraph long enough to be hashed on its own text, about story {}."
    url = feed_server.add("mem.xml", _rss([(g, text.format(g)) for g in "abc"]), validators=False)
    async with runtime.pool.acquire() as conn:
        feed_id = await conn.fetchval("INSERT INTO feeds (url) VALUES ($1) RETURNING id", url)
    await daemon.run_once(runtime)
    assert len((await runtime.seen.window(feed_id)).known_entries) == 3

    feed_server.add("mem.xml", _rss([(g, text.format(g)) for g in "dabc"]), validators=False)
    summary = await daemon.run_once(runtime)
    assert summary.articles_new == 1
    assert len((await runtime.seen.window(feed_id)).known_entries) == 4
    assert await runtime.pool.fetchval("SELECT count(*) FROM articles") == 4
