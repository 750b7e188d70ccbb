"""Metrics: Prometheus counters, histograms and gauges, names prefixed ``aggregator_``.

Counters and histograms move where the work happens (a fetch, a store batch);
gauges that describe shared state (queue depths, feeds by state, the database
pool) are refreshed by ``refresh_gauges`` before each scrape. Each process has
its own registry and serves it at ``/metrics`` (the daemon and each standalone
worker); the gauges of shared state come from the daemon only.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from aggregator import queue

if TYPE_CHECKING:
    import asyncpg
    from arq.connections import ArqRedis


class Clients(Protocol):
    """What the gauges read: the process's Postgres pool and Redis (the ``Runtime`` has both)."""

    pool: asyncpg.Pool
    redis: ArqRedis


REGISTRY = CollectorRegistry(auto_describe=True)
# Gauges of state every process sees alike (queues, feeds, the outbox): served by the
# daemon only, so that a dashboard summing the fleet's processes counts them once.
SHARED_REGISTRY = CollectorRegistry(auto_describe=True)

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
    registry=SHARED_REGISTRY,
)
FEEDS = Gauge(
    "aggregator_feeds",
    "Feeds by state (ok, new, failing, disabled).",
    ["state"],
    registry=SHARED_REGISTRY,
)
OUTBOX_PENDING = Gauge(
    "aggregator_outbox_pending",
    "Outbox rows not yet relayed to subscriber queues.",
    registry=SHARED_REGISTRY,
)
OUTBOX_OLDEST_SECONDS = Gauge(
    "aggregator_outbox_oldest_pending_seconds",
    "Age of the oldest outbox row not yet relayed (0 when none is pending).",
    registry=SHARED_REGISTRY,
)
DB_POOL = Gauge(
    "aggregator_db_pool_connections",
    "Postgres pool connections by state.",
    ["state"],
    registry=REGISTRY,
)

_FEED_STATES = """
SELECT count(*) FILTER (WHERE NOT disabled AND last_error IS NULL
                        AND last_polled_at IS NOT NULL) AS ok,
       count(*) FILTER (WHERE NOT disabled AND last_error IS NULL
                        AND last_polled_at IS NULL) AS new,
       count(*) FILTER (WHERE NOT disabled AND last_error IS NOT NULL) AS failing,
       count(*) FILTER (WHERE disabled) AS disabled
FROM feeds
"""

# Both off the partial index of pending rows (outbox_pending_idx).
_OUTBOX_BACKLOG = """
SELECT (SELECT count(*) FROM outbox WHERE sent_at IS NULL) AS pending,
       COALESCE(EXTRACT(epoch FROM now() - (
           SELECT created_at FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT 1)), 0)::float8
           AS oldest_seconds
"""


def observe_freshness(region: str | None, published: list[datetime], stored_at: datetime) -> None:
    histogram = PUBLISH_TO_STORED.labels(region=region or "none")
    for when in published:
        histogram.observe(max(0.0, (stored_at - when).total_seconds()))


async def queue_names(rt: Clients) -> list[str]:
    """Our arq queues: poll, store, and every subscriber's (and dead-letter lists); not the
    health-check keys that workers and consumers keep beside their queue."""
    names = [queue.POLL_QUEUE, queue.STORE_QUEUE]
    async for key in rt.redis.scan_iter(match="aggregator:subscriber:*", count=500):
        name = key.decode() if isinstance(key, bytes) else key
        if ":health-check" not in name:
            names.append(name)
    return sorted(set(names))


async def refresh_gauges(rt: Clients, *, shared: bool = True) -> None:
    """This process's pool; with ``shared``, the state every process sees alike."""
    size, idle = rt.pool.get_size(), rt.pool.get_idle_size()
    DB_POOL.labels(state="in_use").set(size - idle)
    DB_POOL.labels(state="idle").set(idle)
    DB_POOL.labels(state="max").set(rt.pool.get_max_size())
    if not shared:
        return
    for name in await queue_names(rt):
        kind = await rt.redis.type(name)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        if kind == "zset":
            depth = await rt.redis.zcard(name)
        elif kind == "list":
            depth = await rt.redis.llen(name)  # type: ignore[misc]
        elif kind == "none":
            depth = 0  # an empty queue has no key
        else:
            continue  # not a queue: a consumer's key of another kind
        QUEUE_DEPTH.labels(queue=name).set(depth)
    row = await rt.pool.fetchrow(_FEED_STATES)
    for state in ("ok", "new", "failing", "disabled"):
        FEEDS.labels(state=state).set(row[state])
    backlog = await rt.pool.fetchrow(_OUTBOX_BACKLOG)
    OUTBOX_PENDING.set(backlog["pending"])
    OUTBOX_OLDEST_SECONDS.set(backlog["oldest_seconds"])


async def exposition(rt: Clients, *, shared: bool = True) -> bytes:
    await refresh_gauges(rt, shared=shared)
    own = generate_latest(REGISTRY)
    return own + generate_latest(SHARED_REGISTRY) if shared else own
