"""Retention: delete old articles in small batches, so ingestion never waits long.

Each batch is its own short transaction: it takes a slice of the oldest
articles (skipping rows another transaction holds), deletes them, and their
sightings, outbox rows and story keys go with them (foreign keys cascade).
Stories left with no article go too; the others are counted again (article count,
representative) in a short transaction of their own. Age counts from when we first saw an
article, not from the date its feed claims.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from aggregator.storage.stories import recount_after_pruning

DEFAULT_BATCH = 1000

_DELETE_BATCH = """
WITH doomed AS (
    SELECT id FROM articles
    WHERE first_seen_at < $1
    ORDER BY first_seen_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
DELETE FROM articles a USING doomed WHERE a.id = doomed.id
RETURNING a.story_id
"""

_DELETE_EMPTY_STORIES = """
DELETE FROM stories s
WHERE s.id = ANY($1::bigint[])
  AND NOT EXISTS (SELECT 1 FROM articles a WHERE a.story_id = s.id)
  AND NOT EXISTS (SELECT 1 FROM stories m WHERE m.merged_into = s.id)
"""


@dataclass
class PruneResult:
    articles: int = 0
    stories: int = 0
    batches: int = 0
    longest_batch_seconds: float = 0.0


def parse_age(text: str) -> timedelta:
    """``90d``, ``36h``, ``45m`` or a bare number of days."""
    text = text.strip().lower()
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    try:
        if text and text[-1] in units:
            seconds = float(text[:-1]) * units[text[-1]]
        else:
            seconds = float(text) * 86400
    except ValueError:
        raise ValueError(f"not an age: {text!r} (use 90d, 36h or 45m)") from None
    if seconds <= 0:
        raise ValueError(f"not an age: {text!r} (must be positive)")
    return timedelta(seconds=seconds)


async def prune(
    pool: asyncpg.Pool,
    older_than: timedelta,
    *,
    batch: int = DEFAULT_BATCH,
    progress: Callable[[int], None] | None = None,
) -> PruneResult:
    """Delete articles first seen before ``now - older_than``, batch by batch."""
    cutoff = datetime.now(UTC) - older_than
    result = PruneResult()
    while True:
        started = time.monotonic()
        async with pool.acquire() as conn:
            async with conn.transaction():
                rows = await conn.fetch(_DELETE_BATCH, cutoff, batch)
                stories = sorted({r["story_id"] for r in rows if r["story_id"] is not None})
                if stories:
                    # A story a concurrent store is just joining keeps its row (FK says so).
                    with contextlib.suppress(asyncpg.ForeignKeyViolationError):
                        async with conn.transaction():
                            status = await conn.execute(_DELETE_EMPTY_STORIES, stories)
                            result.stories += int(status.rsplit(" ", 1)[1])
            if stories:
                # The stories that keep articles: counted again, once the delete committed.
                await recount_after_pruning(conn, stories)
        result.longest_batch_seconds = max(result.longest_batch_seconds, time.monotonic() - started)
        if not rows:
            return result
        result.articles += len(rows)
        result.batches += 1
        if progress is not None:
            progress(result.articles)


log = logging.getLogger("aggregator.retention")
DAILY = 86400


async def run_daily(pool: asyncpg.Pool, older_than: timedelta, stop: asyncio.Event) -> None:
    """Prune once a day while the daemon runs (``AGGREGATOR_RETENTION_DAYS``)."""
    while not stop.is_set():
        try:
            pruned = await prune(pool, older_than)
            if pruned.articles:
                log.info(
                    "pruned %d articles and %d stories older than %s",
                    pruned.articles,
                    pruned.stories,
                    older_than,
                )
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("pruning failed (%s); trying again tomorrow", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), DAILY)
