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

from aggregator import queue, schedule
from aggregator.errors import FeedError, HTTPStatusError
from aggregator.feeds import Feed
from aggregator.normalize import FeedContext
from aggregator.politeness import HostBusyError
from aggregator.runtime import Runtime
from aggregator.store import StoreBatch, StoreResult, Validators, store_batch

log = logging.getLogger("aggregator.refresh")


class Outcome(StrEnum):
    QUEUED = "queued"  # new articles went to the store queue
    NOTHING_NEW = "nothing_new"  # the body changed but every article was already delivered
    NOT_MODIFIED = "not_modified"  # 304
    UNCHANGED = "unchanged"  # byte-identical body
    FAILED = "failed"
    DEFERRED = "deferred"  # its host was busy; due again shortly
    SKIPPED = "skipped"  # a stale job: polled, re-leased, removed or disabled since


async def refresh_feed(rt: Runtime, feed_id: int, lease_token: str) -> Outcome:
    feed = await schedule.claim(rt.pool, rt.settings, feed_id, lease_token)
    if feed is None:
        return Outcome.SKIPPED  # stale job: already polled, re-leased, removed or disabled
    settings, now = rt.settings, datetime.now(UTC)
    interval = feed.poll_interval or feed.update_interval or settings.poll_interval
    try:
        async with rt.hosts.slot(feed.url):
            response = await rt.fetcher.fetch(
                feed.url, etag=feed.etag, last_modified=feed.last_modified
            )
        if await schedule.record_redirect(rt.pool, settings, feed, response.moved_to):
            log.warning("feed %d moved permanently: %s -> %s", feed.id, feed.url, response.moved_to)
        if response.not_modified or response.body is None:
            await schedule.record_unchanged(rt.pool, settings, feed, interval)
            return Outcome.NOT_MODIFIED
        body_hash = hashlib.sha256(response.body).hexdigest()
        validators = Validators(
            etag=response.etag, last_modified=response.last_modified, body_hash=body_hash
        )
        if body_hash == feed.last_body_hash:
            await schedule.record_unchanged(
                rt.pool, settings, feed, interval, **validators.model_dump()
            )
            return Outcome.UNCHANGED
        document, articles = await rt.parse(
            response.body,
            url=response.url,
            content_type=response.content_type,
            feed=FeedContext(url=response.url, language=feed.language, region=feed.region),
            now=now,
        )
    except HostBusyError:
        await schedule.record_deferred(rt.pool, feed, settings.scheduler_tick * 2)
        return Outcome.DEFERRED
    except FeedError as error:
        return await _failed(rt, feed, error, now)
    if document.warning:
        log.info(
            "feed %d %s: recovered from malformed XML: %s", feed.id, feed.url, document.warning
        )

    interval = schedule.poll_interval(
        settings,
        override=feed.poll_interval,
        hints=schedule.hints_from(
            ttl=document.ttl,
            update_period=document.update_period,
            update_frequency=document.update_frequency,
            cache_control=response.cache_control,
            expires=response.expires,
            now=now,
        ),
        observed=schedule.observed_interval([a.published_at for a in articles]),
    )
    unseen = await rt.seen.unseen(feed.id, [a.content_hash for a in articles])
    fresh = [a for a in articles if a.content_hash in unseen]
    if not fresh:
        await schedule.record_unchanged(
            rt.pool, settings, feed, interval, **validators.model_dump()
        )
        return Outcome.NOTHING_NEW
    batch = StoreBatch(
        feed_id=feed.id, body_hash=body_hash, validators=validators, articles=fresh, fetched_at=now
    )
    await queue.enqueue_store(rt.redis, batch.model_dump(mode="json"))
    await schedule.record_success(
        rt.pool, settings, feed, interval, title=document.title, site_url=document.site_url
    )
    log.debug("feed %d %s: %d of %d articles queued", feed.id, feed.url, len(fresh), len(articles))
    return Outcome.QUEUED


async def _failed(rt: Runtime, feed: Feed, error: FeedError, now: datetime) -> Outcome:
    if isinstance(error, HTTPStatusError) and error.status in (429, 503):
        await rt.hosts.penalize(feed.url)
    disabled = await schedule.record_failure(rt.pool, rt.settings, feed, error, now=now)
    if disabled:
        log.warning("feed %d %s disabled: %s", feed.id, feed.url, disabled)
    elif feed.error_count == 0:  # a failing feed is a warning once, then quieter
        log.warning("feed %d %s failed (%s): %s", feed.id, feed.url, error.kind, error)
    else:
        log.info(
            "feed %d %s failed again (%s, %d in a row): %s",
            feed.id,
            feed.url,
            error.kind,
            feed.error_count + 1,
            error,
        )
    return Outcome.FAILED


async def store_articles(rt: Runtime, batch: StoreBatch) -> StoreResult:
    """Commit a batch, then tell the seen cache (never before: it must not hide unstored work)."""
    async with rt.pool.acquire() as conn:
        result = await store_batch(conn, batch)
    await rt.seen.mark(batch.feed_id, (a.content_hash for a in batch.articles))
    log.debug("feed %d: stored %d new, %d merged", batch.feed_id, result.new, result.merged)
    return result
