"""Subscribers end to end: the bundled sample feeds served locally, the real daemon
pipeline, the outbox relay, subscriber queues in Redis and real arq consumer workers
(``aggregator.consumer``), the CLI and ``examples/consumer.py`` as processes."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from aggregator import consumer
from aggregator.app import daemon
from aggregator.app.demo import SampleFeed, sample_feeds
from aggregator.consumer import NewArticle
from aggregator.runtime import Runtime
from aggregator.settings import Settings
from aggregator.storage import feeds, outbox, schedule, subscribers
from tests import processes
from tests.feedserver import FeedServer

ROOT = Path(__file__).resolve().parent.parent


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def register_samples(
    rt: Runtime, server: FeedServer, samples: list[SampleFeed] | None = None
) -> dict[str, int]:
    """Serve sample feeds on the local feed server and add them; return file -> feed id."""
    folder = resources.files("aggregator.samples")
    ids = {}
    async with rt.pool.acquire() as conn:
        for s in samples if samples is not None else sample_feeds():
            url = server.add(
                s.path.lstrip("/"), folder.joinpath(s.file).read_bytes(), s.content_type
            )
            spec = feeds.FeedSpec(url=url, region=s.region, language=s.language, title=s.title)
            feed, _ = await feeds.add(conn, spec)
            ids[s.file] = feed.id
    return ids


async def ingest(rt: Runtime) -> None:
    summary = await daemon.run_once(rt, timeout=120)
    assert summary.feeds_failed == 0, summary.failures


async def ids_where(rt: Runtime, condition: str, *args: Any) -> list[int]:
    """Article ids matching a condition, in arrival (outbox) order."""
    rows = await rt.pool.fetch(
        f"SELECT a.id FROM articles a JOIN outbox o ON o.article_id = a.id "
        f"WHERE {condition} ORDER BY o.id",
        *args,
    )
    return [r["id"] for r in rows]


@dataclass
class Inbox:
    """A consumer's handler that records what it was given."""

    articles: list[NewArticle] = field(default_factory=list)
    fail: bool = False

    async def handle(self, article: NewArticle) -> None:
        if self.fail:
            raise RuntimeError(f"consumer is down (article {article.id})")
        self.articles.append(article)

    @property
    def ids(self) -> list[int]:
        return [a.id for a in self.articles]


@asynccontextmanager
async def consuming(
    settings: Settings, name: str, inbox: Inbox, **options: Any
) -> AsyncIterator[None]:
    """A real arq worker on the subscriber's queue, in this process, until the block ends."""
    stop = asyncio.Event()
    options = {"poll_delay": 0.01, "retry_delay": 0.01} | options
    task = asyncio.create_task(
        consumer.serve(name, inbox.handle, redis_url=settings.redis_url, stop=stop, **options)
    )
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def delivered(rt: Runtime, name: str, inbox: Inbox, count: int) -> None:
    """Wait until the inbox holds ``count`` articles and the queue is empty."""

    async def done() -> bool:
        queued = await rt.redis.zcard(consumer.queue_name(name))
        return len(inbox.articles) >= count and queued == 0

    await eventually(done, f"{count} deliveries to {name}")


async def add_subscriber(rt: Runtime, name: str, **filters: Any) -> None:
    async with rt.pool.acquire() as conn:
        await subscribers.add(conn, name, **filters)


def cli(args: list[str], settings: Settings) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aggregator", *args],
        env=processes.service_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )


# --- filters -----------------------------------------------------------------------------------


async def test_each_subscriber_gets_exactly_its_articles_once_in_commit_order(
    runtime: Runtime, settings: Settings, feed_server: FeedServer
) -> None:
    feed_ids = await register_samples(runtime, feed_server)
    silk_road = feed_ids["silk-road-monitor.rdf"]
    await add_subscriber(runtime, "west", regions=["gulf", "levant"])
    await add_subscriber(runtime, "farsi-arabic", languages=["fa", "AR"])
    await add_subscriber(runtime, "silk.grain", feeds=[str(silk_road)], query="grain OR bus")
    await ingest(runtime)

    expected = {
        "west": await ids_where(runtime, "a.region IN ('gulf', 'levant')"),
        "farsi-arabic": await ids_where(runtime, "a.language IN ('fa', 'ar')"),
        "silk.grain": await ids_where(
            runtime,
            "EXISTS (SELECT 1 FROM article_sources s WHERE s.article_id = a.id "
            "AND s.feed_id = $1) AND a.search_vector @@ article_search_query('grain OR bus')",
            silk_road,
        ),
    }
    assert all(expected.values()) and len({tuple(v) for v in expected.values()}) == 3
    total = await runtime.pool.fetchval("SELECT count(*) FROM articles")
    assert all(len(v) < total for v in expected.values())

    inboxes = {name: Inbox() for name in expected}
    for name, inbox in inboxes.items():
        async with consuming(settings, name, inbox):
            await delivered(runtime, name, inbox, len(expected[name]))
        # Each matching article once, in commit order, and nothing else.
        assert inbox.ids == expected[name], name

    # A second pass stores nothing new and delivers nothing.
    await ingest(runtime)
    for name in expected:
        assert await runtime.redis.zcard(consumer.queue_name(name)) == 0
    assert await outbox.pending(runtime.pool) == 0


async def test_payload_is_versioned_json_with_the_article_its_story_and_sources(
    runtime: Runtime, feed_server: FeedServer
) -> None:
    feed_ids = await register_samples(runtime, feed_server)
    await add_subscriber(runtime, "everything")
    await ingest(runtime)

    name = "everything"
    job_ids = [j.decode() for j in await runtime.redis.zrange(consumer.queue_name(name), 0, -1)]
    total = await runtime.pool.fetchval("SELECT count(*) FROM articles")
    assert len(job_ids) == total
    outbox_ids = [r["id"] for r in await runtime.pool.fetch("SELECT id FROM outbox ORDER BY id")]
    assert job_ids == [subscribers.delivery_job_id(name, i) for i in outbox_ids]

    # The article the most outlets carried: the Jeddah floods story, 3 feeds.
    shared = await runtime.pool.fetchrow(
        "SELECT o.id AS outbox_id, a.* FROM articles a JOIN outbox o ON o.article_id = a.id "
        "ORDER BY (SELECT count(*) FROM article_sources s WHERE s.article_id = a.id) DESC, a.id "
        "LIMIT 1"
    )
    raw = await runtime.redis.get(
        "arq:job:" + subscribers.delivery_job_id(name, shared["outbox_id"])
    )
    job = json.loads(raw)  # JSON on the wire, never pickle
    assert job["f"] == consumer.NEW_ARTICLE_JOB
    payload = job["a"][0]
    assert payload["schema_version"] == consumer.PAYLOAD_VERSION == 1
    article = NewArticle.model_validate(payload)
    for column in ("id", "content_hash", "story_id", "title", "canonical_url", "region"):
        assert getattr(article, column) == shared[column], column
    assert article.story_id is not None
    assert len(article.sources) == 3
    assert {s.feed_id for s in article.sources} <= set(feed_ids.values())
    assert all(s.feed_url.startswith(feed_server.base_url) for s in article.sources)


# --- crash between the store commit and the enqueue ---------------------------------------------


@pytest.mark.slow
async def test_crash_between_commit_and_enqueue_loses_nothing_and_duplicates_nothing(
    runtime: Runtime, settings: Settings, feed_server: FeedServer
) -> None:
    await register_samples(runtime, feed_server)
    name = "gulf"
    await add_subscriber(runtime, name, regions=["gulf"])

    # 1. Stores commit, and the process "dies" before any relay runs: only the poll and
    #    store workers ran here. The articles are in Postgres, nothing is queued.
    workers = daemon.Workers(runtime)
    workers.start()
    try:
        await daemon.schedule_pass(runtime, await schedule.lease_all(runtime.pool, settings))
        await daemon.wait_drained(runtime, timeout=60, workers=workers)
    finally:
        await workers.stop()
    expected = await ids_where(runtime, "a.region = 'gulf'")
    assert expected
    assert await outbox.pending(runtime.pool) == await runtime.pool.fetchval(
        "SELECT count(*) FROM articles"
    )
    assert await runtime.redis.zcard(consumer.queue_name(name)) == 0

    # 2. The daemon restarts and its relay queues the jobs, but is SIGKILLed before it
    #    marks the rows sent (a lock holds its UPDATE back until the kill).
    blocker = await asyncpg.connect(runtime.database_url)
    held = blocker.transaction()
    await held.start()
    await blocker.execute("LOCK TABLE outbox IN EXCLUSIVE MODE")
    daemon_process = processes.aggregator(["run"], processes.service_env(settings))
    try:

        async def queued_and_stuck() -> bool:
            queued = await runtime.redis.zcard(consumer.queue_name(name))
            stuck = await runtime.pool.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                "AND query LIKE 'UPDATE outbox SET sent_at%'"
            )
            return queued == len(expected) and stuck > 0

        await eventually(queued_and_stuck, "the relay to queue jobs and wait to mark them")
        processes.sigkill(daemon_process)
    finally:
        if daemon_process.poll() is None:
            processes.sigkill(daemon_process)
        processes.output(daemon_process)
        await held.rollback()
        await blocker.close()

    async def killed_relay_gone() -> bool:
        return not await runtime.pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'UPDATE outbox SET sent_at%' "
            "AND pid <> pg_backend_pid()"
        )

    await eventually(killed_relay_gone, "the killed relay's transaction to end")
    assert await outbox.pending(runtime.pool) > 0, "the rows must still be pending"

    # 3. After the restart the relay runs the same rows again: every job is refused as
    #    already queued, the rows are marked sent, and the consumer gets each article once.
    again = await outbox.relay_once(runtime.pool, runtime.redis)
    assert again is not None
    assert (again.queued, again.already_queued) == (0, len(expected))
    await outbox.drain(runtime.pool, runtime.redis, timeout=30)
    assert await outbox.pending(runtime.pool) == 0

    inbox = Inbox()
    async with consuming(settings, name, inbox):
        await delivered(runtime, name, inbox, len(expected))
    assert inbox.ids == expected


# --- falling behind and catching up -------------------------------------------------------------


async def test_stopped_subscriber_catches_up_and_replay_redelivers_a_window(
    runtime: Runtime, settings: Settings, feed_server: FeedServer
) -> None:
    name = "all"
    await add_subscriber(runtime, name)
    samples = sample_feeds()
    inbox = Inbox()

    # Stage 1 with the consumer running.
    await register_samples(runtime, feed_server, samples[:3])
    async with consuming(settings, name, inbox):
        await ingest(runtime)
        first = await ids_where(runtime, "true")
        await delivered(runtime, name, inbox, len(first))

    # Stage 2 while it is stopped: its jobs wait in Redis.
    boundary = datetime.now(UTC)
    await register_samples(runtime, feed_server, samples[3:])
    await ingest(runtime)
    everything = await ids_where(runtime, "true")
    assert len(everything) > len(first)
    assert await runtime.redis.zcard(consumer.queue_name(name)) == len(everything) - len(first)

    # Back up: it receives everything it missed, once.
    async with consuming(settings, name, inbox):
        await delivered(runtime, name, inbox, len(everything))
        assert inbox.ids == everything

        # Replay the stage-2 window from Postgres, through the CLI.
        window = await ids_where(runtime, "a.first_seen_at >= $1", boundary)
        assert window == everything[len(first) :]
        result = cli(["subscribers", "replay", name, "--since", boundary.isoformat()], settings)
        assert result.returncode == 0, result.stderr
        assert f"queued {len(window)} articles" in result.stdout
        await delivered(runtime, name, inbox, len(everything) + len(window))
    assert inbox.ids == everything + window


async def test_failing_handler_ends_in_dead_letters_which_replay_retries(
    runtime: Runtime, settings: Settings, feed_server: FeedServer
) -> None:
    name = "fragile"
    await add_subscriber(runtime, name, languages=["en"], regions=["gulf", "levant"])
    await register_samples(runtime, feed_server)
    await ingest(runtime)
    expected = await ids_where(runtime, "a.language = 'en' AND a.region IN ('gulf', 'levant')")
    assert expected

    broken = Inbox(fail=True)
    async with consuming(settings, name, broken, tries=3):

        async def all_dead() -> bool:
            count, _ = await subscribers.dead_letters(runtime.redis, name)
            queued = await runtime.redis.zcard(consumer.queue_name(name))
            return count == len(expected) and queued == 0

        await eventually(all_dead, "every delivery to be dead-lettered")
    _, dead = await subscribers.dead_letters(runtime.redis, name, limit=100)
    assert sorted(d.article_id for d in dead if d.article_id) == sorted(expected)
    assert {d.tries for d in dead} == {3}
    assert all("RuntimeError: consumer is down" in d.error for d in dead)

    listing = cli(["subscribers", "list"], settings)
    assert listing.returncode == 0, listing.stderr
    line = next(ln for ln in listing.stdout.splitlines() if ln.startswith(name))
    assert f"dead {len(expected):>5}" in line and "region=gulf,levant language=en" in line
    assert "after 3 tries" in listing.stdout and "RuntimeError: consumer is down" in listing.stdout

    retried = cli(["subscribers", "replay", name, "--dead-letters"], settings)
    assert retried.returncode == 0, retried.stderr
    assert f"queued {len(expected)} dead-lettered articles again" in retried.stdout
    assert (await subscribers.dead_letters(runtime.redis, name))[0] == 0

    fixed = Inbox()
    async with consuming(settings, name, fixed):
        await delivered(runtime, name, fixed, len(expected))
    assert sorted(fixed.ids) == sorted(expected)


# --- the command line ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a:b", "../x", "", "x" * 65, "-x", "a b", "ünïcode", "a\nb", "*"])
def test_subscriber_names_that_are_not_safe_redis_keys_are_refused(name: str) -> None:
    with pytest.raises(consumer.InvalidSubscriberNameError):
        consumer.queue_name(name)


@pytest.mark.parametrize("name", ["a", "gulf-desk", "team_7.alerts", "X" * 64])
def test_safe_subscriber_names(name: str) -> None:
    assert consumer.queue_name(name) == f"aggregator:subscriber:{name}"


async def test_subscribers_cli_add_list_remove(
    runtime: Runtime, settings: Settings, feed_server: FeedServer
) -> None:
    feed_ids = await register_samples(runtime, feed_server, sample_feeds()[:1])
    feed_url = await runtime.pool.fetchval(
        "SELECT url FROM feeds WHERE id = $1", next(iter(feed_ids.values()))
    )

    bad = cli(["subscribers", "add", "--", "a:b"], settings)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.startswith("error: invalid subscriber name 'a:b'")
    assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    unknown = cli(["subscribers", "add", "x", "--feed", "https://nowhere.example/rss"], settings)
    assert unknown.returncode == 1 and "no feed" in unknown.stderr

    added = cli(
        ["subscribers", "add", "desk-1", "--region", "gulf", "--feed", feed_url, "--query", "oil"],
        settings,
    )
    assert added.returncode == 0, added.stderr
    assert "added subscriber desk-1" in added.stdout
    assert "queue aggregator:subscriber:desk-1" in added.stdout
    updated = cli(["subscribers", "add", "desk-1", "--language", "ar"], settings)
    assert "updated subscriber desk-1: language=ar" in updated.stdout

    listing = cli(["subscribers", "list"], settings)
    assert (
        listing.returncode == 0 and "desk-1" in listing.stdout and "language=ar" in listing.stdout
    )

    await runtime.redis.enqueue_job(
        consumer.NEW_ARTICLE_JOB, {}, _job_id="leftover", _queue_name="aggregator:subscriber:desk-1"
    )
    removed = cli(["subscribers", "remove", "desk-1"], settings)
    assert removed.returncode == 0 and "removed subscriber desk-1" in removed.stdout
    assert not await runtime.redis.exists("aggregator:subscriber:desk-1", "arq:job:leftover")
    again = cli(["subscribers", "remove", "desk-1"], settings)
    assert again.returncode == 1 and "no subscriber 'desk-1'" in again.stderr
    empty = cli(["subscribers", "list"], settings)
    assert "no subscribers" in empty.stdout

    usage = cli(["subscribers", "replay", "desk-1"], settings)
    assert usage.returncode == 2 and "--since" in usage.stderr
    bad_time = cli(["subscribers", "replay", "desk-1", "--since", "yesterday"], settings)
    assert bad_time.returncode == 2 and "30m, 2h, 7d" in bad_time.stderr


# --- processes: the example consumer and tail --------------------------------------------------


async def _read_lines(stream: asyncio.StreamReader, count: int, timeout: float = 60) -> list[str]:
    lines = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(lines) < count:
        line = await asyncio.wait_for(stream.readline(), max(0.1, deadline - loop.time()))
        if not line:
            break
        lines.append(line.decode().rstrip("\n"))
    return lines


async def test_example_consumer_and_tail_print_new_articles(
    runtime: Runtime, settings: Settings, feed_server: FeedServer
) -> None:
    await add_subscriber(runtime, "example")
    await register_samples(runtime, feed_server)
    env = processes.service_env(settings)
    example = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "examples" / "consumer.py"),
        "example",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    tail = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aggregator",
        "tail",
        "--region",
        "gulf",
        "-n",
        "0",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert tail.stderr is not None and tail.stdout is not None
        assert example.stdout is not None
        ready = await asyncio.wait_for(tail.stderr.readline(), 60)
        assert b"following new articles in gulf" in ready

        await ingest(runtime)
        rows = await runtime.pool.fetch(
            "SELECT a.title, a.region FROM articles a JOIN outbox o ON o.article_id = a.id "
            "ORDER BY o.id"
        )
        printed = await _read_lines(example.stdout, len(rows))
        assert [line.split("] ", 1)[1] for line in printed] == [r["title"] for r in rows]
        gulf = [r["title"] for r in rows if r["region"] == "gulf"]
        followed = await _read_lines(tail.stdout, len(gulf))
        assert len(followed) == len(gulf)
        for line, title in zip(followed, gulf, strict=True):
            assert " gulf/" in line and title in line, line
    finally:
        for process in (example, tail):
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        codes = [await asyncio.wait_for(p.wait(), 30) for p in (example, tail)]
    assert codes == [0, 0]


async def test_tail_shows_the_last_articles_first(
    runtime: Runtime, settings: Settings, feed_server: FeedServer
) -> None:
    await register_samples(runtime, feed_server)
    await ingest(runtime)
    last = await runtime.pool.fetch(
        "SELECT a.title FROM articles a JOIN outbox o ON o.article_id = a.id "
        "ORDER BY o.id DESC LIMIT 3"
    )
    stop = asyncio.Event()
    seen = []
    async with (
        runtime.pool.acquire() as conn,
        aclosing(outbox.follow(conn, stop, backlog=3, recheck=0.05)) as arrivals,
    ):
        async for arrival in arrivals:
            seen.append(arrival.title)
            if len(seen) == 3:
                stop.set()
    assert seen == [r["title"] for r in reversed(last)]
