"""The Redis cache of what each feed delivered holds its current window, not its history.

Redis memory must grow with the fleet (feeds x window size), never with the archive:
a feed whose window slides over many polls keeps a bounded number of cached entries,
and still nothing is lost and nothing is delivered to the store twice.
"""

from __future__ import annotations

from typing import Any

import pytest

from aggregator import queue
from aggregator.app import daemon
from aggregator.runtime import Runtime
from aggregator.storage.seen import FeedWindow
from tests.feedserver import FeedServer

TEXT = "A paragraph long enough to be hashed on its own text, about story number {}."


def _rss(numbers: range) -> bytes:
    items = "".join(
        f"<item><guid>g{n}</guid><title>Story {n}</title><link>https://news.example/{n}</link>"
        f"<description>{TEXT.format(n)}</description></item>"
        for n in reversed(numbers)  # newest first, as feeds list them
    )
    return (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>{items}</channel></rss>'
    ).encode()


def test_the_window_keeps_the_body_and_what_just_left_it() -> None:
    h = {k: (f"{i:064x}",) for i, k in enumerate("%064x" % (100 + i) for i in range(6))}
    a, b, c, d, e, f = h
    window = FeedWindow(current={a: h[a], b: h[b], c: h[c]}, previous={d: h[d]})
    # c left, e is new (normalized), a and b were skipped as known, d came back.
    current, previous = window.after([e, a, b, d], {e: h[e]})
    assert current == {e: h[e], a: h[a], b: h[b], d: h[d]}
    assert previous == {c: h[c]}, "what left with this body is the margin; older goes"
    assert FeedWindow(current, previous).delivered == {h[x][0] for x in (a, b, c, d, e)}
    # An entry neither normalized nor known (a cap stopped before it) is not recorded.
    current, _ = window.after([f, a], {})
    assert current == {a: h[a]}


async def test_a_sliding_window_keeps_a_bounded_cache_and_loses_nothing(
    runtime: Runtime, feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    queued: list[int] = []
    enqueue = queue.enqueue_store

    async def counting(redis: Any, payload: dict[str, Any]) -> Any:
        queued.append(len(payload["articles"]))
        return await enqueue(redis, payload)

    monkeypatch.setattr(queue, "enqueue_store", counting)
    window, step, polls = 12, 4, 30
    url = feed_server.add("slide.xml", _rss(range(window)), validators=False)
    feed_id = await runtime.pool.fetchval("INSERT INTO feeds (url) VALUES ($1) RETURNING id", url)
    current_key, previous_key = runtime.seen.keys(feed_id)
    sizes = []
    for poll in range(polls):
        first = poll * step
        feed_server.add("slide.xml", _rss(range(first, first + window)), validators=False)
        summary = await daemon.run_once(runtime)
        assert summary.feeds_failed == 0
        assert summary.articles_new == (window if poll == 0 else step), f"poll {poll}"
        cached = [await runtime.redis.hlen(k) for k in (current_key, previous_key)]  # type: ignore[misc]
        sizes.append(sum(cached))

    total = (polls - 1) * step + window
    assert await runtime.pool.fetchval("SELECT count(*) FROM articles") == total, "nothing lost"
    assert await runtime.pool.fetchval("SELECT count(*) FROM article_sources") == total
    # Nothing delivered twice: each poll queued only the items it had never seen.
    assert queued == [window] + [step] * (polls - 1)
    assert max(sizes) <= window + step, sizes
    assert sizes[-1] == window + step, "the current body plus what just left it"
    assert not [k async for k in runtime.redis.scan_iter(match=f"aggregator:seen:{feed_id}")]


async def test_an_emptied_cache_costs_work_not_duplicates(
    runtime: Runtime, feed_server: FeedServer
) -> None:
    url = feed_server.add("lost.xml", _rss(range(10)), validators=False)
    feed_id = await runtime.pool.fetchval("INSERT INTO feeds (url) VALUES ($1) RETURNING id", url)
    await daemon.run_once(runtime)
    await runtime.redis.delete(*runtime.seen.keys(feed_id))  # Redis restarted empty
    feed_server.add("lost.xml", _rss(range(2, 13)), validators=False)
    summary = await daemon.run_once(runtime)
    assert summary.articles_new == 3
    assert await runtime.pool.fetchval("SELECT count(*) FROM articles") == 13
    assert len((await runtime.seen.window(feed_id)).current) == 11
