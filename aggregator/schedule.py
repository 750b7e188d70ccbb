"""Schedule: when each feed is polled next, and leases so a feed is polled once per due time.

The decisions (``next_delay``, ``backoff_delay``) are pure. The SQL records a
poll's outcome on the feed's row and leases due feeds with
``FOR UPDATE SKIP LOCKED``: a leased feed's ``next_poll_at`` moves a lease
length ahead, so if its poll job is lost (a crashed daemon, a Redis restart
without persistence) the feed simply becomes due again.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from aggregator.errors import FeedError, HTTPStatusError
from aggregator.settings import Settings

JITTER = 0.1


def next_delay(
    settings: Settings, feed_interval: float | None, *, rng: random.Random | None = None
) -> float:
    """Seconds until the next poll of a healthy feed: its interval, jittered, within bounds."""
    base = feed_interval or settings.poll_interval
    jittered = base * (rng or random).uniform(1 - JITTER, 1 + JITTER)
    return min(max(jittered, settings.min_interval), settings.max_interval)


def backoff_delay(
    settings: Settings,
    feed_interval: float | None,
    failures: int,
    *,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Seconds until retrying a feed that failed ``failures`` times in a row."""
    base = min(
        max(feed_interval or settings.poll_interval, settings.min_interval), settings.max_interval
    )
    delay: float = min(base * 2 ** max(failures - 1, 0), settings.max_backoff)
    delay *= (rng or random).uniform(1, 1 + JITTER)
    if retry_after is not None:
        delay = max(delay, min(retry_after, settings.max_backoff))
    return delay


@dataclass(frozen=True, slots=True)
class Lease:
    feed_id: int
    due_at: datetime


_LEASE_DUE = """
WITH due AS (
    SELECT id, next_poll_at FROM feeds
    WHERE NOT disabled AND next_poll_at <= now()
    ORDER BY next_poll_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE feeds f SET next_poll_at = now() + make_interval(secs => $2)
FROM due WHERE f.id = due.id
RETURNING f.id, due.next_poll_at
"""

_LEASE_ALL = """
WITH active AS (
    SELECT id FROM feeds WHERE NOT disabled ORDER BY id FOR UPDATE SKIP LOCKED
)
UPDATE feeds f SET next_poll_at = now() + make_interval(secs => $1)
FROM active WHERE f.id = active.id
RETURNING f.id, now() AS next_poll_at
"""


async def lease_due(pool: asyncpg.Pool, settings: Settings) -> list[Lease]:
    rows = await pool.fetch(_LEASE_DUE, settings.scheduler_batch, settings.lease_seconds)
    return [Lease(r["id"], r["next_poll_at"]) for r in rows]


async def lease_all(pool: asyncpg.Pool, settings: Settings) -> list[Lease]:
    """Every active feed, due or not (``run --once``)."""
    rows = await pool.fetch(_LEASE_ALL, settings.lease_seconds)
    return [Lease(r["id"], r["next_poll_at"]) for r in rows]


_RECORD_SUCCESS = """
UPDATE feeds SET
    next_poll_at = now() + make_interval(secs => $2),
    last_polled_at = now(),
    last_success_at = now(),
    error_count = 0,
    last_error = NULL,
    last_error_kind = NULL,
    title = COALESCE(title, $3),
    site_url = COALESCE(site_url, $4)
WHERE id = $1
"""

_RECORD_UNCHANGED = """
UPDATE feeds SET
    next_poll_at = now() + make_interval(secs => $2),
    last_polled_at = now(),
    last_success_at = now(),
    error_count = 0,
    last_error = NULL,
    last_error_kind = NULL,
    etag = COALESCE($3, etag),
    last_modified = COALESCE($4, last_modified),
    last_body_hash = COALESCE($5, last_body_hash)
WHERE id = $1
"""

_RECORD_FAILURE = """
UPDATE feeds SET
    error_count = error_count + 1,
    last_polled_at = now(),
    last_error = $2,
    last_error_kind = $3,
    next_poll_at = now() + make_interval(secs => $4 * 1.0)
WHERE id = $1
RETURNING error_count
"""


async def record_success(
    pool: asyncpg.Pool,
    settings: Settings,
    feed_id: int,
    interval: float | None,
    *,
    title: str | None = None,
    site_url: str | None = None,
) -> None:
    """A poll whose articles went to the store queue; validators advance there."""
    await pool.execute(_RECORD_SUCCESS, feed_id, next_delay(settings, interval), title, site_url)


async def record_unchanged(
    pool: asyncpg.Pool,
    settings: Settings,
    feed_id: int,
    interval: float | None,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
    body_hash: str | None = None,
) -> None:
    """A poll with nothing to store: safe to advance validators here."""
    await pool.execute(
        _RECORD_UNCHANGED, feed_id, next_delay(settings, interval), etag, last_modified, body_hash
    )


async def record_failure(
    pool: asyncpg.Pool,
    settings: Settings,
    feed_id: int,
    interval: float | None,
    error: FeedError,
    failures_before: int,
) -> None:
    retry_after = error.retry_after if isinstance(error, HTTPStatusError) else None
    delay = backoff_delay(settings, interval, failures_before + 1, retry_after=retry_after)
    await pool.execute(_RECORD_FAILURE, feed_id, str(error)[:1000], error.kind, delay)
