"""``python -m bench.store``: where a store batch's time goes, statement by statement.

Normalizes ``--feeds`` synthetic farm feeds (20 items each, a share of them wire
copies), then stores them one batch at a time on one connection, as a store
worker does, into a fresh throwaway database, and prints the milliseconds per new
article of each SQL statement ``store_batch`` ran. It is how the store's levers
were found (lz4 TOAST compression, an article inserted already in its story);
``python -m bench``'s growth scenario measures the same step as the archive grows.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg

from aggregator.pipeline.normalize import FeedContext, articles_from_document
from aggregator.storage import db
from aggregator.storage.articles import StoreBatch, Validators, store_batch
from bench import services, synthetic

_TIMED = ("fetch", "fetchval", "fetchrow", "execute", "executemany")


class TimedConnection:
    """An asyncpg connection that adds up the time of each SQL text it runs."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn
        self.seconds: defaultdict[str, float] = defaultdict(float)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._conn, name)
        if name not in _TIMED:
            return method
        return self._timed(method)

    def _timed(self, method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def call(sql: str, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await method(sql, *args, **kwargs)
            finally:
                self.seconds[" ".join(sql.split())] += time.perf_counter() - started

        return call


def fresh_batch(feed_no: int, feed_id: int, now: datetime, *, items: int = 20) -> StoreBatch:
    """Farm feed ``feed_no`` as a store batch of ``feed_id``: its items normalized for real."""
    url = f"https://{synthetic.outlet_host(feed_no)}/feed"
    body = synthetic.render_feed(
        feed_no, 0, items=items, new_per_change=2, published_at={}, epoch=time.time()
    )
    _, articles = articles_from_document(
        body,
        url=url,
        content_type="application/rss+xml",
        feed=FeedContext(url=url, language=synthetic.language_of(feed_no)),
        now=now,
    )
    return StoreBatch(
        feed_id=feed_id,
        feed_url=url,
        body_hash=f"{feed_no:064x}",
        validators=Validators(body_hash=f"{feed_no:064x}"),
        articles=articles,
        fetched_at=now,
    )


async def measure(feeds: int) -> tuple[int, int, float, dict[str, float]]:
    """(items, new articles, seconds, seconds per SQL text) of storing ``feeds`` batches."""
    server = services.server_database_url()
    name = services.database_name("store")
    url = await services.create_database(server, name)
    try:
        await db.migrate(url)
        conn = await asyncpg.connect(url)
        try:
            feed_ids = [
                await conn.fetchval(
                    "INSERT INTO feeds (url) VALUES ($1) RETURNING id",
                    f"https://{synthetic.outlet_host(n)}/feed",
                )
                for n in range(feeds)
            ]
            now = datetime.now(UTC)
            batches = [fresh_batch(n, feed_id, now) for n, feed_id in enumerate(feed_ids)]
            timed = TimedConnection(conn)
            new = 0
            started = time.perf_counter()
            for batch in batches:
                new += (await store_batch(timed, batch)).new
            seconds = time.perf_counter() - started
        finally:
            await conn.close()
    finally:
        await services.drop_database(server, name)
    return sum(len(b.articles) for b in batches), new, seconds, timed.seconds


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.store", description=__doc__)
    parser.add_argument("--feeds", type=int, default=200, help="batches to store (default 200)")
    args = parser.parse_args()
    items, new, seconds, by_sql = asyncio.run(measure(args.feeds))
    per = 1_000 / max(new, 1)
    print(f"{args.feeds} batches, {items} items, {new} new articles")
    print(f"store_batch: {seconds * per:.3f} ms per new article, statements below")
    for sql, spent in sorted(by_sql.items(), key=lambda item: -item[1]):
        print(f"{spent * per:8.3f} ms  {sql[:90]}")


if __name__ == "__main__":
    main()
