"""`aggregator run --once` polls every active feed once, however long politeness makes
it wait for each host's turn, and names any feed it could not poll in time."""

from __future__ import annotations

import json

import pytest

from aggregator.runtime import Runtime
from aggregator.settings import Settings
from tests import processes
from tests.feedserver import FeedServer
from tests.test_polling import add_feed, rss

pytestmark = pytest.mark.slow

FEEDS = 60


def one_host(settings: Settings, rate: float) -> dict[str, str]:
    """Every test feed is on 127.0.0.1: one host, at ``rate`` requests a second, and a
    poll waits at most a second for its turn before it is deferred."""
    return processes.service_env(
        settings,
        AGGREGATOR_HOST_RATE=str(rate),
        AGGREGATOR_HOST_CONCURRENCY="2",
        AGGREGATOR_HOST_WAIT="1",
    )


async def many_feeds(runtime: Runtime, server: FeedServer) -> list[str]:
    urls = [server.add(f"section-{i}.xml", rss(1)) for i in range(FEEDS)]
    for url in urls:
        await add_feed(runtime, url)
    return urls


async def test_run_once_waits_for_each_hosts_turn_and_polls_every_feed(
    runtime: Runtime, settings: Settings, feed_server: FeedServer
) -> None:
    urls = await many_feeds(runtime, feed_server)
    # 60 feeds at 20 a second: 3 s of turns, but a poll waits only 1 s for one, so most
    # are deferred at least once and must be queued again.
    result = await processes.run_cli(["run", "--once"], one_host(settings, 20))
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(r.path for r in feed_server.requests) == sorted(
        "/" + url.rsplit("/", 1)[1] for url in urls
    ), "every feed fetched, once"
    assert f"feeds ok: {FEEDS}, failed: 0" in result.stdout
    assert "not polled" not in result.stdout
    progress = [
        json.loads(line)["event"] for line in result.stderr.splitlines() if '"polling: ' in line
    ]
    assert any("wait for their host's turn" in line for line in progress), result.stderr[-3000:]
    assert progress[-1].startswith(f"polling: {FEEDS}/{FEEDS} feeds polled")


async def test_run_once_names_the_feeds_it_could_not_poll_in_time(
    runtime: Runtime, settings: Settings, feed_server: FeedServer
) -> None:
    urls = await many_feeds(runtime, feed_server)
    # 60 feeds at 4 a second need 15 s of turns; the run may take 4.
    result = await processes.run_cli(["run", "--once", "--timeout", "4"], one_host(settings, 4))
    assert result.returncode == 3, (result.stdout, result.stderr[-3000:])
    fetched = {"/" + url.rsplit("/", 1)[1]: url for url in urls}
    polled = {fetched[r.path] for r in feed_server.requests}
    named = {
        line.removeprefix("  not polled: ")
        for line in result.stdout.splitlines()
        if line.startswith("  not polled: ")
    }
    assert 0 < len(polled) < FEEDS
    assert named == set(urls) - polled, "each feed not polled is named, and only those"
    assert f"not polled in time: {len(named)} feeds" in result.stdout
    # What it did not poll is left due, not leased away for a lease length.
    leased = await runtime.pool.fetchval(
        "SELECT count(*) FROM feeds WHERE lease_token IS NOT NULL AND NOT lease_claimed"
    )
    assert leased == 0
