"""Metrics: Prometheus counters, histograms and gauges, names prefixed ``aggregator_``.

Counters and histograms move where the work happens (a fetch, a store batch);
gauges that describe shared state (queue depths, feeds by state, the database
pool) are refreshed by ``refresh_gauges`` before each scrape. Each process has
its own registry; the daemon serves it at ``/metrics`` on its HTTP server.
"""

from __future__ import annotations

from datetime import datetime

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from aggregator import queue
from aggregator.runtime import Runtime

REGISTRY = CollectorRegistry(auto_describe=True)

FETCHES = Counter(
    "aggregator_fetches",
    "Feed polls by outcome (queued, not_modified, unchanged, nothing_new, failed, ...) "
    "and error kind (empty unless failed).",
    ["outcome", "error_kind"],
    registry=REGISTRY,
)
FETCH_SECONDS = Histogram(
    "aggregator_fetch_seconds",
    "Time to fetch one feed over HTTP (successful or not).",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
ARTICLES_STORED = Counter("aggregator_articles_stored", "New articles stored.", registry=REGISTRY)
ARTICLES_MERGED = Counter(
    "aggregator_articles_merged",
    "Items that matched an article already stored (a duplicate from another feed or earlier).",
    registry=REGISTRY,
)
ARTICLES_CLUSTERED = Counter(
    "aggregator_articles_clustered",
    "New articles that joined an existing story (near-duplicates).",
    registry=REGISTRY,
)
PUBLISH_TO_STORED = Histogram(
    "aggregator_publish_to_stored_seconds",
    "From an article's published time to its commit in Postgres (freshness), per region.",
    ["region"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400),
    registry=REGISTRY,
)
DELIVERIES_FAILED = Counter(
    "aggregator_deliveries_failed",
    "Subscriber deliveries moved to the dead letters by the delivery watcher (the consumer "
    "failed the job, or it expired or vanished unconsumed).",
    ["subscriber"],
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "aggregator_queue_depth",
    "Jobs queued, deferred or running per arq queue (dead letters included).",
    ["queue"],
    registry=REGISTRY,
)
FEEDS = Gauge("aggregator_feeds", "Feeds by state.", ["state"], registry=REGISTRY)
DB_POOL = Gauge(
    "aggregator_db_pool_connections",
    "Postgres pool connections by state.",
    ["state"],
    registry=REGISTRY,
)

_FEED_STATES = """
SELECT count(*) FILTER (WHERE NOT disabled AND last_error IS NULL) AS ok,
       count(*) FILTER (WHERE NOT disabled AND last_error IS NOT NULL) AS failing,
       count(*) FILTER (WHERE disabled) AS disabled
FROM feeds
"""


def observe_freshness(region: str | None, published: list[datetime], stored_at: datetime) -> None:
    histogram = PUBLISH_TO_STORED.labels(region=region or "none")
    for when in published:
        histogram.observe(max(0.0, (stored_at - when).total_seconds()))


async def queue_names(rt: Runtime) -> list[str]:
    """Our arq queues: poll, store, and every subscriber's (and dead-letter lists)."""
    names = [queue.POLL_QUEUE, queue.STORE_QUEUE]
    async for key in rt.redis.scan_iter(match="aggregator:subscriber:*", count=500):
        names.append(key.decode() if isinstance(key, bytes) else key)
    return sorted(set(names))


async def refresh_gauges(rt: Runtime) -> None:
    for name in await queue_names(rt):
        kind = await rt.redis.type(name)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        if kind == "zset":
            depth = await rt.redis.zcard(name)
        elif kind == "list":
            depth = await rt.redis.llen(name)  # type: ignore[misc]
        else:
            depth = 0
        QUEUE_DEPTH.labels(queue=name).set(depth)
    row = await rt.pool.fetchrow(_FEED_STATES)
    for state in ("ok", "failing", "disabled"):
        FEEDS.labels(state=state).set(row[state])
    size, idle = rt.pool.get_size(), rt.pool.get_idle_size()
    DB_POOL.labels(state="in_use").set(size - idle)
    DB_POOL.labels(state="idle").set(idle)
    DB_POOL.labels(state="max").set(rt.pool.get_max_size())


async def exposition(rt: Runtime) -> bytes:
    await refresh_gauges(rt)
    return generate_latest(REGISTRY)
