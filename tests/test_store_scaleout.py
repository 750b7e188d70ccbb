"""Store workers scale out: no lock covers every worker, and the stories do not change.

Each corpus is ingested twice through real processes: by one `aggregator run --once`
daemon alone (one store worker), then by the daemon with two standalone
`arq workers.store.WorkerSettings` processes taking store jobs from the same queue
(three). Story assignment claims only its articles' keys (aggregator.storage.stories),
so the three store copies of one story concurrently; the stories must be exactly the
ones a single worker makes, and consistent (no article left in a merged story; each
story's count, times and representative, kept up join by join, what counting it whole
gives).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio

from aggregator.settings import Settings
from aggregator.storage import migrations
from tests import processes
from tests.conftest import TABLES
from tests.feedserver import FeedServer
from tests.groundtruth import Corpus, corpus_params, pairwise
from tests.services import free_port
from tests.test_faults import eventually
from tests.test_fleet import get, total

Partition = frozenset[frozenset[str]]


async def _empty(database_url: str, redis_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await migrations.migrate(conn)
        await conn.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()
    client = redis.asyncio.from_url(redis_url)
    await client.flushdb()
    await client.aclose()


async def _ingest(
    corpus: Corpus, urls: dict[str, str], settings: Settings, store_processes: int
) -> tuple[dict[str, int], list[float]]:
    """Ingest the corpus with the daemon and ``store_processes - 1`` standalone store
    workers; return item id -> story id and what each standalone worker stored."""
    assert settings.database_url is not None
    conn = await asyncpg.connect(settings.database_url)
    try:
        feed_ids = await corpus.register(conn, urls)
    finally:
        await conn.close()
    ports = [free_port() for _ in range(store_processes - 1)]
    workers = [
        processes.arq_worker(
            "workers.store.WorkerSettings",
            processes.service_env(settings, AGGREGATOR_HTTP_PORT=str(port)),
        )
        for port in ports
    ]
    stored = []
    try:
        for port in ports:

            async def healthy(base: str = f"http://127.0.0.1:{port}") -> bool:
                return (await get(base, "/healthz"))[0] == 200

            await eventually(healthy, 60, f"store worker on port {port}")
        result = await processes.run_cli(["run", "--once"], processes.service_env(settings))
        assert result.returncode == 0, result.stdout + result.stderr
        for port in ports:
            _, text = await get(f"http://127.0.0.1:{port}", "/metrics")
            stored.append(total(text, "aggregator_articles_stored_total"))
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            with contextlib.suppress(TimeoutError):
                await processes.wait_exit(worker, 30)
            log = processes.output(worker)
            assert "Traceback" not in log, log
    conn = await asyncpg.connect(settings.database_url)
    try:
        groups = await corpus.stored_groups(conn, feed_ids)
        story_of = dict(await conn.fetch("SELECT id, story_id FROM articles"))
        in_merged = await conn.fetchval(
            "SELECT count(*) FROM articles a JOIN stories s ON s.id = a.story_id "
            "WHERE s.merged_into IS NOT NULL"
        )
        assert in_merged == 0, "an article was left in a story merged into another"
        # Each story's figures, kept up at every join, are what counting it whole gives.
        miscounted = await conn.fetch(
            """
            SELECT s.id FROM stories s
            JOIN (
                SELECT story_id, count(*) AS articles, min(published_at) AS published_at,
                       min(first_seen_at) AS first_seen_at,
                       (array_agg(id ORDER BY length(content_text) DESC, published_at, id))[1]
                           AS representative
                FROM articles GROUP BY story_id
            ) c ON c.story_id = s.id
            WHERE (s.article_count, s.published_at, s.first_seen_at, s.representative_id)
                  IS DISTINCT FROM (c.articles, c.published_at, c.first_seen_at, c.representative)
            """
        )
        assert miscounted == []
        assert await conn.fetchval("SELECT count(*) FROM story_key_claims") == 0
    finally:
        await conn.close()
    return {item: story_of[article] for item, article in groups.items()}, stored


def _partition(stories: dict[str, int]) -> Partition:
    by_story: dict[int, set[str]] = {}
    for item, story in stories.items():
        by_story.setdefault(story, set()).add(item)
    return frozenset(frozenset(items) for items in by_story.values())


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("root", corpus_params())
async def test_three_store_processes_make_the_stories_one_makes(
    root: Path,
    settings: Settings,
    database_url: str,
    redis_url: str,
    feed_server: FeedServer,
    clean_services: None,
) -> None:
    corpus = Corpus.load(root)
    urls = corpus.serve(feed_server)
    truth = {i["item_id"]: i["story_id"] for i in corpus.items}
    partitions: dict[int, Partition] = {}
    for n in (1, 3):
        await _empty(database_url, redis_url)
        stories, stored = await _ingest(corpus, urls, settings, n)
        assert len(stories) == len(corpus.items)
        partitions[n] = _partition(stories)
        precision, recall = pairwise(stories, truth)
        print(
            f"\n{root.name}: {n} store process(es): {len(partitions[n])} stories, "
            f"precision {precision:.3f}, recall {recall:.3f}, standalone workers stored "
            f"{stored} articles"
        )
        if n > 1:
            # The standalone workers did take store jobs: the daemon did not do it all.
            assert sum(stored) > 0, stored
    assert partitions[3] == partitions[1]
