"""Polling like a good citizen: intervals, cheap unchanged polls, backoff, politeness, leases."""

from __future__ import annotations

import asyncio
import itertools
import signal
from datetime import UTC, datetime, timedelta

import pytest

from aggregator import polling, queue, refresh
from aggregator.app import daemon
from aggregator.refresh import Outcome
from aggregator.runtime import Runtime, open_runtime
from aggregator.settings import Settings
from aggregator.storage import feeds, schedule
from tests import processes
from tests.feedserver import FeedServer
from tests.test_faults import eventually

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def rss(
    items: int = 1,
    *,
    ttl: int | None = None,
    every: timedelta = timedelta(days=1),
    extra_channel: str = "",
) -> bytes:
    entries = "".join(
        f"<item><title>Story {i}</title><link>https://news.example/{i}</link><guid>g{i}</guid>"
        f"<pubDate>{(NOW - every * i).strftime('%a, %d %b %Y %H:%M:%S +0000')}</pubDate>"
        f"<description>Paragraph number {i} of a story long enough to be hashed on its own "
        f"text alone.</description></item>"
        for i in range(items)
    )
    ttl_tag = f"<ttl>{ttl}</ttl>" if ttl else ""
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>{ttl_tag}'
        f"{extra_channel}{entries}</channel></rss>"
    ).encode()


async def add_feed(rt: Runtime, url: str, **kw: object) -> int:
    async with rt.pool.acquire() as conn:
        feed, _ = await feeds.add(conn, feeds.FeedSpec(url=url, **kw))  # type: ignore[arg-type]
    return feed.id


async def poll(rt: Runtime, feed_id: int) -> Outcome:
    """One poll of one feed, now, as a job holding a fresh lease would run it."""
    token = await rt.pool.fetchval(
        "UPDATE feeds SET lease_token = gen_random_uuid() WHERE id = $1 RETURNING lease_token::text",
        feed_id,
    )
    return await refresh.refresh_feed(rt, feed_id, token)


async def scheduled_delay(rt: Runtime, feed_id: int) -> float:
    return float(
        await rt.pool.fetchval(
            "SELECT extract(epoch FROM next_poll_at - last_polled_at) FROM feeds WHERE id = $1",
            feed_id,
        )
    )


# --- pure decisions ---------------------------------------------------------------------------


def test_publisher_hints_are_read() -> None:
    hints = polling.hints_from(
        ttl="60", update_period="hourly", update_frequency="2", cache_control="public, max-age=300"
    )
    assert (hints.ttl, hints.syndication, hints.cache) == (3600, 1800, 300)
    assert hints.slowest == 3600
    expires = (NOW + timedelta(minutes=10)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert polling.hints_from(expires=expires, now=NOW).cache == pytest.approx(600)
    assert polling.hints_from(ttl="soon", update_period="fortnightly").slowest is None


def test_interval_follows_publishing_rate_within_bounds(settings: Settings) -> None:
    bounded = settings.model_copy(update={"min_interval": 30, "max_interval": 86400})
    minute = polling.observed_interval([NOW - timedelta(minutes=i) for i in range(10)])
    weekly = polling.observed_interval([NOW - timedelta(weeks=i) for i in range(10)])
    fast = polling.poll_interval(bounded, override=None, hints=polling.Hints(), observed=minute)
    slow = polling.poll_interval(bounded, override=None, hints=polling.Hints(), observed=weekly)
    assert fast == 60 and slow == 86400
    hinted = polling.poll_interval(
        bounded, override=None, hints=polling.Hints(ttl=3600), observed=minute
    )
    assert hinted == 3600, "never more often than the publisher asks"
    assert polling.poll_interval(bounded, override=5, hints=polling.Hints(), observed=None) == 30


def test_backoff_grows_is_capped_and_honours_retry_after(settings: Settings) -> None:
    capped = settings.model_copy(update={"max_backoff": 100})
    delays = [polling.backoff_delay(capped, 10, n) for n in range(1, 8)]
    assert all(b > a for a, b in itertools.pairwise(delays[:5]))
    assert max(delays) <= 110
    assert polling.backoff_delay(capped, 10, 1, retry_after=90) >= 90


def test_one_interval_rule_the_operators_override_wins(settings: Settings) -> None:
    """The poll and the backoff after a failure start from the same interval (they used
    to disagree: the poll put the override first, the failure path the computed one)."""
    rule = polling.current_interval
    assert rule(settings, override=600, computed=60) == 600
    assert rule(settings, override=None, computed=60) == 60
    assert rule(settings, override=None, computed=None) == settings.poll_interval


def test_decide_after_a_poll(settings: Settings) -> None:
    from aggregator.errors import FetchTimeoutError, HTTPStatusError

    bounded = settings.model_copy(update={"min_interval": 10, "max_backoff": 3600})
    healthy = polling.decide(bounded, interval=100)
    assert 100 <= healthy.delay <= 101 and healthy.disable is None
    failed = polling.decide(
        bounded, interval=100, failures=3, now=NOW, error=FetchTimeoutError("slow")
    )
    assert 400 <= failed.delay <= 440 and failed.disable is None
    limited = HTTPStatusError("429", status=429, retry_after=1000)
    assert polling.decide(bounded, interval=100, failures=1, now=NOW, error=limited).delay >= 1000
    gone = polling.decide(
        bounded, interval=100, failures=1, now=NOW, error=HTTPStatusError("410", status=410)
    )
    assert gone.disable is not None and "410" in gone.disable
    given_up = polling.decide(
        bounded,
        interval=100,
        failures=bounded.disable_after_failures,
        failing_since=NOW - timedelta(seconds=bounded.disable_after_seconds),
        now=NOW,
        error=FetchTimeoutError("slow"),
    )
    assert given_up.disable is not None and "failed" in given_up.disable


# --- through the real poll path ---------------------------------------------------------------


async def test_ttl_feed_is_not_polled_more_often_than_its_ttl(
    runtime: Runtime, feed_server: FeedServer
) -> None:
    # Items every 10 s, but ttl (minutes) says 60 s.
    url = feed_server.add("ttl.xml", rss(5, ttl=1, every=timedelta(seconds=10)))
    feed_id = await add_feed(runtime, url)
    assert await poll(runtime, feed_id) == Outcome.QUEUED
    row = await runtime.pool.fetchrow("SELECT update_interval FROM feeds WHERE id = $1", feed_id)
    assert row["update_interval"] == 60
    assert await scheduled_delay(runtime, feed_id) >= 60
    # The scheduler finds nothing due in the next minute.
    assert await schedule.lease_due(runtime.pool, runtime.settings) == []


async def test_fast_feed_is_polled_more_often_than_slow_feed(
    runtime: Runtime, feed_server: FeedServer
) -> None:
    fast = await add_feed(runtime, feed_server.add("fast.xml", rss(10, every=timedelta(minutes=1))))
    slow = await add_feed(runtime, feed_server.add("slow.xml", rss(10, every=timedelta(weeks=1))))
    await poll(runtime, fast)
    await poll(runtime, slow)
    assert await scheduled_delay(runtime, fast) < 70
    assert await scheduled_delay(runtime, slow) >= 86400 * 0.99  # clamped at max_interval


async def test_304_and_identical_body_cost_no_parse_and_no_article_write(
    runtime: Runtime, feed_server: FeedServer
) -> None:
    conditional = await add_feed(runtime, feed_server.add("c.xml", rss(3)))
    ignorant = await add_feed(
        runtime,
        feed_server.add("i.xml", rss(3, ttl=0).replace(b"Story", b"Item"), validators=False),
    )
    await daemon.run_once(runtime)
    snapshot = "SELECT id, xmin::text FROM articles ORDER BY id"
    before = await runtime.pool.fetch(snapshot)
    parses = runtime.parses

    assert await poll(runtime, conditional) == Outcome.NOT_MODIFIED
    assert await poll(runtime, ignorant) == Outcome.UNCHANGED
    assert runtime.parses == parses, "no parse"
    assert await runtime.pool.fetch(snapshot) == before, "no article written"
    assert await queue.depth(runtime.redis, queue.STORE_QUEUE) == 0, "no store job"


async def test_failing_feed_backs_off_honours_retry_after_and_is_disabled(
    settings: Settings, clean_services: None, feed_server: FeedServer
) -> None:
    settings = settings.model_copy(
        update={
            "poll_interval": 10,
            "min_interval": 1,
            "max_backoff": 10_000,
            "disable_after_failures": 4,
            "disable_after_seconds": 0,
        }
    )
    async with open_runtime(settings) as rt:
        url = feed_server.add("down.xml", b"oops", "text/plain", status=500)
        feed_id = await add_feed(rt, url)
        delays = []
        for _ in range(3):
            assert await poll(rt, feed_id) == Outcome.FAILED
            delays.append(await scheduled_delay(rt, feed_id))
        assert delays[0] < delays[1] < delays[2]
        row = await rt.pool.fetchrow("SELECT * FROM feeds WHERE id = $1", feed_id)
        assert (row["error_count"], row["last_error_kind"]) == (3, "server_error")
        assert row["last_error"] == "HTTP 500 Internal Server Error" and not row["disabled"]

        feed_server.add(
            "down.xml", b"busy", "text/plain", status=503, headers={"Retry-After": "900"}
        )
        await poll(rt, feed_id)
        row = await rt.pool.fetchrow("SELECT * FROM feeds WHERE id = $1", feed_id)
        assert row["disabled"], "4 failures in a row over the (zero) minimum span"
        assert row["disabled_reason"].startswith("failed 4 times in a row since ")
        assert "HTTP 503" in row["disabled_reason"]
        assert await scheduled_delay(rt, feed_id) >= 900, "Retry-After honoured"
        assert await schedule.lease_due(rt.pool, rt.settings) == []

        feed_server.add("down.xml", rss(2))
        async with rt.pool.acquire() as conn:
            await feeds.enable(conn, str(feed_id))
        assert [lease.feed_id for lease in await schedule.lease_due(rt.pool, rt.settings)] == [
            feed_id
        ]
        assert await poll(rt, feed_id) == Outcome.QUEUED
        row = await rt.pool.fetchrow("SELECT * FROM feeds WHERE id = $1", feed_id)
        assert (row["error_count"], row["last_error"], row["disabled"]) == (0, None, False)


async def test_gone_disables_at_once(runtime: Runtime, feed_server: FeedServer) -> None:
    feed_id = await add_feed(runtime, feed_server.add("gone.xml", b"", "text/plain", status=410))
    assert await poll(runtime, feed_id) == Outcome.FAILED
    row = await runtime.pool.fetchrow(
        "SELECT disabled, disabled_reason FROM feeds WHERE id = $1", feed_id
    )
    assert row["disabled"] and "410" in row["disabled_reason"]


async def test_permanent_redirect_moves_the_url_after_consistent_sightings(
    runtime: Runtime, feed_server: FeedServer
) -> None:
    new_url = feed_server.add("new.xml", rss(2))
    old_url = feed_server.add("old.xml", b"", headers={"Location": new_url}, status=301)
    feed_id = await add_feed(runtime, old_url)
    for expected in (old_url, old_url, new_url):
        await poll(runtime, feed_id)
        assert (
            await runtime.pool.fetchval("SELECT url FROM feeds WHERE id = $1", feed_id) == expected
        )
    temporary = feed_server.add("tmp.xml", b"", headers={"Location": new_url}, status=302)
    other = await add_feed(runtime, temporary)
    for _ in range(4):
        await poll(runtime, other)
    assert await runtime.pool.fetchval("SELECT url FROM feeds WHERE id = $1", other) == temporary


async def test_stale_poll_job_does_nothing(runtime: Runtime, feed_server: FeedServer) -> None:
    feed_id = await add_feed(runtime, feed_server.add("s.xml", rss(1)))
    (lease,) = await schedule.lease_all(runtime.pool, runtime.settings)
    assert await refresh.refresh_feed(runtime, feed_id, lease.token) == Outcome.QUEUED
    assert await refresh.refresh_feed(runtime, feed_id, lease.token) == Outcome.SKIPPED
    assert len(feed_server.hits("s.xml")) == 1


# --- fleet-wide limits and many schedulers (real processes) -----------------------------------


@pytest.mark.slow
async def test_host_limit_holds_across_two_worker_processes(
    runtime: Runtime, settings: Settings, feed_server: FeedServer
) -> None:
    for i in range(50):
        await add_feed(runtime, feed_server.add(f"h{i}.xml", rss(1), delay=0.05))
    env = processes.service_env(
        settings, AGGREGATOR_HOST_CONCURRENCY="2", AGGREGATOR_HOST_RATE="1000"
    )
    workers = [processes.arq_worker("workers.poll.WorkerSettings", env) for _ in range(2)]
    try:
        await daemon.schedule_pass(
            runtime, await schedule.lease_all(runtime.pool, runtime.settings)
        )

        async def all_polled() -> bool:
            return not await runtime.pool.fetchval(
                "SELECT count(*) FROM feeds WHERE last_polled_at IS NULL"
            )

        await eventually(all_polled, 90, "every feed polled")
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            await processes.wait_exit(worker, 30)
            processes.output(worker)
    assert len(feed_server.requests) == 50
    assert feed_server.max_in_flight == 2


async def test_status_shows_health_and_region_totals(
    runtime: Runtime, settings: Settings, feed_server: FeedServer
) -> None:
    import json
    import subprocess
    import sys

    ok = await add_feed(runtime, feed_server.add("ok.xml", rss(2)), region="gulf")
    bad = await add_feed(runtime, feed_server.add("bad.xml", b"x", status=500), region="gulf")
    gone = await add_feed(runtime, feed_server.add("gone.xml", b"", status=410), region="iran")
    await daemon.run_once(runtime)
    env = processes.service_env(settings)
    run = [sys.executable, "-m", "aggregator", "status"]
    table = await asyncio.to_thread(subprocess.run, run, env=env, capture_output=True, text=True)
    report = await asyncio.to_thread(
        subprocess.run, [*run, "--json"], env=env, capture_output=True, text=True
    )
    states = {f["id"]: f for f in json.loads(report.stdout)["feeds"]}
    assert (states[ok]["state"], states[ok]["articles_24h"]) == ("ok", 2)
    assert (states[bad]["state"], states[bad]["last_error_kind"]) == ("failing", "server_error")
    assert states[gone]["state"] == "disabled" and "410" in states[gone]["disabled_reason"]
    regions = {r["region"]: r for r in json.loads(report.stdout)["regions"]}
    assert (regions["gulf"]["ok"], regions["gulf"]["failing"], regions["iran"]["disabled"]) == (
        1,
        1,
        1,
    )
    assert "HTTP 500" in table.stdout and "disabled" in table.stdout


async def test_a_lost_store_batch_is_rebuilt_by_the_next_poll(
    runtime: Runtime, feed_server: FeedServer
) -> None:
    """Until a batch commits, nothing marks its body as seen: if Redis loses the queued
    batch, the next poll fetches in full, parses again and queues the same batch."""
    feed_id = await add_feed(runtime, feed_server.add("lost.xml", rss(3)))
    assert await poll(runtime, feed_id) == Outcome.QUEUED
    (job_id,) = await runtime.redis.zrange(queue.STORE_QUEUE, 0, -1)
    await runtime.redis.delete(queue.STORE_QUEUE, b"arq:job:" + job_id)  # lost

    assert await poll(runtime, feed_id) == Outcome.QUEUED
    assert await runtime.redis.zrange(queue.STORE_QUEUE, 0, -1) == [job_id]
    assert feed_server.hits("lost.xml")[-1].status == 200, "no validators until it commits"
    await daemon.run_once(runtime, timeout=60)
    assert await runtime.pool.fetchval("SELECT count(*) FROM articles") == 3


async def test_a_batch_of_polls_is_claimed_and_recorded_together(
    runtime: Runtime, feed_server: FeedServer
) -> None:
    ok = await add_feed(runtime, feed_server.add("b-ok.xml", rss(2)))
    broken = await add_feed(runtime, feed_server.add("b-500.xml", b"", status=500))
    stale = await add_feed(runtime, feed_server.add("b-stale.xml", rss(1)))
    tokens = {
        lease.feed_id: lease.token
        for lease in await schedule.lease_all(runtime.pool, runtime.settings)
    }
    other_token = "00000000-0000-0000-0000-000000000000"

    outcomes = await refresh.refresh_feeds(
        runtime, [(ok, tokens[ok]), (broken, tokens[broken]), (stale, other_token)]
    )

    assert outcomes == [Outcome.QUEUED, Outcome.FAILED, Outcome.SKIPPED]
    rows = {
        r["id"]: r
        for r in await runtime.pool.fetch(
            "SELECT id, error_count, last_error_kind, last_success_at, lease_token FROM feeds"
        )
    }
    assert rows[ok]["last_success_at"] is not None and rows[ok]["error_count"] == 0
    assert (rows[broken]["error_count"], rows[broken]["last_error_kind"]) == (1, "server_error")
    assert rows[ok]["lease_token"] is None and rows[broken]["lease_token"] is None
    assert rows[stale]["lease_token"] is not None, "a stale token claims nothing"
    assert feed_server.hits("b-stale.xml") == []
