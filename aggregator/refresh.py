"""Refresh: the whole life of one feed poll, top to bottom, and the store step it hands off to.

fetch (conditional GET) -> skip if unchanged -> parse and normalize (off the
event loop) -> drop what this feed already delivered -> queue a store batch ->
schedule the next poll. Errors of the feed's own making are recorded on its
row; everything else propagates so the job is retried.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from enum import StrEnum

from aggregator import feeds, queue, schedule
from aggregator.errors import FeedError
from aggregator.normalize import FeedContext
from aggregator.runtime import Runtime
from aggregator.store import StoreBatch, StoreResult, Validators, store_batch

log = logging.getLogger("aggregator.refresh")


class Outcome(StrEnum):
    QUEUED = "queued"  # new articles went to the store queue
    NOTHING_NEW = "nothing_new"  # the body changed but every article was already delivered
    NOT_MODIFIED = "not_modified"  # 304
    UNCHANGED = "unchanged"  # byte-identical body
    FAILED = "failed"
    SKIPPED = "skipped"  # removed or disabled since it was queued


async def refresh_feed(rt: Runtime, feed_id: int) -> Outcome:
    feed = await feeds.get(rt.pool, feed_id)
    if feed is None or feed.disabled:
        return Outcome.SKIPPED
    interval = feed.poll_interval
    now = datetime.now(UTC)
    try:
        response = await rt.fetcher.fetch(
            feed.url, etag=feed.etag, last_modified=feed.last_modified
        )
        if response.not_modified or response.body is None:
            await schedule.record_unchanged(rt.pool, rt.settings, feed.id, interval)
            return Outcome.NOT_MODIFIED
        body_hash = hashlib.sha256(response.body).hexdigest()
        validators = Validators(
            etag=response.etag, last_modified=response.last_modified, body_hash=body_hash
        )
        if body_hash == feed.last_body_hash:
            await schedule.record_unchanged(
                rt.pool, rt.settings, feed.id, interval, **validators.model_dump()
            )
            return Outcome.UNCHANGED
        document, articles = await rt.parse(
            response.body,
            url=response.url,
            content_type=response.content_type,
            feed=FeedContext(url=response.url, language=feed.language, region=feed.region),
            now=now,
        )
    except FeedError as error:
        await schedule.record_failure(
            rt.pool, rt.settings, feed.id, interval, error, feed.error_count
        )
        log_failure = log.warning if feed.error_count == 0 else log.info
        log_failure("feed %d %s failed (%s): %s", feed.id, feed.url, error.kind, error)
        return Outcome.FAILED
    if document.warning:
        log.info(
            "feed %d %s: recovered from malformed XML: %s", feed.id, feed.url, document.warning
        )

    unseen = await rt.seen.unseen(feed.id, [a.content_hash for a in articles])
    fresh = [a for a in articles if a.content_hash in unseen]
    if not fresh:
        await schedule.record_unchanged(
            rt.pool, rt.settings, feed.id, interval, **validators.model_dump()
        )
        return Outcome.NOTHING_NEW
    batch = StoreBatch(
        feed_id=feed.id, body_hash=body_hash, validators=validators, articles=fresh, fetched_at=now
    )
    await queue.enqueue_store(rt.redis, batch.model_dump(mode="json"))
    await schedule.record_success(
        rt.pool, rt.settings, feed.id, interval, title=document.title, site_url=document.site_url
    )
    log.debug("feed %d %s: %d of %d articles queued", feed.id, feed.url, len(fresh), len(articles))
    return Outcome.QUEUED


async def store_articles(rt: Runtime, batch: StoreBatch) -> StoreResult:
    """Commit a batch, then tell the seen cache (never before: it must not hide unstored work)."""
    async with rt.pool.acquire() as conn:
        result = await store_batch(conn, batch)
    await rt.seen.mark(batch.feed_id, (a.content_hash for a in batch.articles))
    log.debug("feed %d: stored %d new, %d merged", batch.feed_id, result.new, result.merged)
    return result
