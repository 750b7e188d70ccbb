"""Refresh: the whole life of one feed poll, top to bottom, and the store step it hands off to.

fetch (conditional GET) -> skip if unchanged -> parse and normalize (off the
event loop) -> drop what this feed already delivered -> queue a store batch ->
schedule the next poll. A poll job carries a batch of feeds: they are claimed
in one statement, polled side by side, and their outcomes written in one
transaction. Errors of the feed's own making are recorded on its row; a
service error (Redis or Postgres away) gives the lease back, so the feed is
polled again as soon as the service answers (see ``recovery``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from aggregator import fulltext, logs, metrics, queue, schedule, websub
from aggregator.errors import FeedError, HTTPStatusError
from aggregator.feeds import Feed
from aggregator.normalize import Article, FeedContext
from aggregator.politeness import HostBusyError
from aggregator.runtime import SERVICE_ERRORS, Runtime
from aggregator.store import StoreBatch, StoreResult, Validators, store_batch

log = logging.getLogger("aggregator.refresh")
# A service outage interrupts every poll in flight: one warning when they start, one line
# when polls complete again, not a line per feed.
_interruptions = logs.Outage(log, "polls")


class Outcome(StrEnum):
    QUEUED = "queued"  # new articles went to the store queue
    NOTHING_NEW = "nothing_new"  # the body changed but every article was already delivered
    NOT_MODIFIED = "not_modified"  # 304
    UNCHANGED = "unchanged"  # byte-identical body
    FAILED = "failed"
    DEFERRED = "deferred"  # its host was busy; due again shortly
    SKIPPED = "skipped"  # a stale job: polled, re-leased, removed or disabled since
    INTERRUPTED = "interrupted"  # a service error mid-poll; the lease is given back


async def refresh_feeds(rt: Runtime, leases: Sequence[tuple[int, str]]) -> list[Outcome]:
    """Poll a batch of leased feeds at once: one claim, the polls side by side, one write
    of their outcomes. A feed whose poll hit a service error (Redis or Postgres away) is
    given back: due again at once, or as soon as Postgres answers."""
    settings = rt.settings
    claimed = await schedule.claim(rt.pool, settings, leases, owner=rt.holder.id)
    feeds = {feed.id: feed for feed, _ in claimed}
    tokens = {feed.id: token for feed, token in claimed}
    recorder = schedule.Recorder(settings, tokens)
    results = await asyncio.gather(
        *(_refresh(rt, feed, recorder) for feed in feeds.values()), return_exceptions=True
    )
    by_feed: dict[int, Outcome] = {}
    for feed, result in zip(feeds.values(), results, strict=True):
        if isinstance(result, Outcome):
            by_feed[feed.id] = result
        elif isinstance(result, Exception):
            _interruptions.failed(result, "their feeds are given back and polled again")
            by_feed[feed.id] = Outcome.INTERRUPTED
        else:
            raise result  # cancelled: the job is being stopped
    try:
        await recorder.flush(rt.pool)
    except SERVICE_ERRORS as exc:  # nothing recorded: every poll of the batch is owed back
        _interruptions.failed(exc, "their feeds are given back and polled again")
        by_feed = dict.fromkeys(by_feed, Outcome.INTERRUPTED)
    interrupted = [(f, tokens[f]) for f, out in by_feed.items() if out is Outcome.INTERRUPTED]
    if interrupted:
        await rt.holder.give_back(rt.pool, interrupted)
    else:
        _interruptions.succeeded()
    for outcome in by_feed.values():
        if outcome not in (Outcome.FAILED, Outcome.INTERRUPTED):  # failures: see _failed
            metrics.FETCHES.labels(outcome=outcome.value, error_kind="").inc()
    return [by_feed.get(feed_id, Outcome.SKIPPED) for feed_id, _ in leases]


async def refresh_feed(rt: Runtime, feed_id: int, lease_token: str) -> Outcome:
    """One leased feed's poll (see ``refresh_feeds``)."""
    (outcome,) = await refresh_feeds(rt, [(feed_id, lease_token)])
    return outcome


async def _refresh(rt: Runtime, feed: Feed, record: schedule.Recorder) -> Outcome:
    flog = logs.for_feed(log, feed.id, feed.url)
    settings, now = rt.settings, datetime.now(UTC)
    interval = feed.poll_interval or feed.update_interval or settings.poll_interval
    try:
        async with rt.hosts.slot(feed.url):
            with metrics.FETCH_SECONDS.time():
                response = await rt.fetcher.fetch(
                    feed.url, etag=feed.etag, last_modified=feed.last_modified
                )
        if await schedule.record_redirect(rt.pool, settings, feed, response.moved_to):
            flog.warning("moved permanently to %s", response.moved_to)
        if response.not_modified or response.body is None:
            await websub.renew_if_due(rt, feed, hub=None, topic=None, now=now)
            record.unchanged(feed, interval)
            return Outcome.NOT_MODIFIED
        body_hash = hashlib.sha256(response.body).hexdigest()
        validators = Validators(
            etag=response.etag, last_modified=response.last_modified, body_hash=body_hash
        )
        if body_hash == feed.last_body_hash:
            await websub.renew_if_due(rt, feed, hub=None, topic=None, now=now)
            record.unchanged(feed, interval, **validators.model_dump())
            return Outcome.UNCHANGED
        document, articles = await rt.parse(
            response.body,
            url=response.url,
            content_type=response.content_type,
            feed=FeedContext(url=response.url, language=feed.language, region=feed.region),
            now=now,
            known_entries=await rt.seen.known_entries(feed.id),
        )
    except HostBusyError:
        record.deferred(feed, settings.scheduler_tick * 2)
        return Outcome.DEFERRED
    except FeedError as error:
        return await _failed(rt, feed, error, record, now)
    if document.warning:
        flog.info("recovered from malformed XML: %s", document.warning)

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
        observed=schedule.observed_interval(document.published),
    )
    await websub.renew_if_due(rt, feed, hub=document.hub, topic=document.self_url, now=now)
    queued = await deliver(
        rt,
        feed,
        articles,
        body_hash=body_hash,
        validators=validators,
        entry_keys=document.entry_keys,
        now=now,
    )
    if not queued:
        record.unchanged(feed, interval, **validators.model_dump())
        return Outcome.NOTHING_NEW
    record.success(
        feed,
        interval,
        title=document.title,
        site_url=document.site_url,
        queued_body_hash=body_hash,
    )
    flog.debug("%d of %d articles queued", queued, len(articles))
    return Outcome.QUEUED


async def deliver(
    rt: Runtime,
    feed: Feed,
    articles: list[Article],
    *,
    body_hash: str,
    validators: Validators | None,
    entry_keys: list[str] | None,
    now: datetime,
) -> int:
    """Queue a store batch with the articles this feed has not delivered yet; return how many.

    For a --full-text feed, those articles first get their pages' full text. With
    ``entry_keys`` (a poll's whole body, not a push), the feed's known entries become
    those keys once nothing of the body is left to store."""
    unseen = await rt.seen.unseen(feed.id, [a.content_hash for a in articles])
    fresh = [a for a in articles if a.content_hash in unseen]
    if fresh and feed.full_text:
        fresh = await fulltext.complete(rt, feed, fresh)
    if fresh:
        batch = StoreBatch(
            feed_id=feed.id,
            feed_url=feed.url,
            body_hash=body_hash,
            validators=validators,
            articles=fresh,
            fetched_at=now,
            entry_keys=entry_keys or [],
        )
        await queue.enqueue_store(rt.redis, batch.model_dump(mode="json"))
    elif entry_keys:
        await rt.seen.mark(feed.id, (), entries=entry_keys)  # all delivered before
    return len(fresh)


async def ingest_push(rt: Runtime, feed: Feed, body: bytes, content_type: str | None) -> int:
    """Content a WebSub hub pushed: parsed, deduped and stored like a poll's.

    The feed's validators stay as they are: a push says nothing about what the next
    poll will see. A body that is not a feed raises ``FeedError``."""
    now = datetime.now(UTC)
    _, articles = await rt.parse(
        body,
        url=feed.url,
        content_type=content_type,
        feed=FeedContext(url=feed.url, language=feed.language, region=feed.region),
        now=now,
    )
    body_hash = hashlib.sha256(body).hexdigest()
    return await deliver(
        rt, feed, articles, body_hash=body_hash, validators=None, entry_keys=None, now=now
    )


async def _failed(
    rt: Runtime, feed: Feed, error: FeedError, record: schedule.Recorder, now: datetime
) -> Outcome:
    flog = logs.for_feed(log, feed.id, feed.url)
    if isinstance(error, HTTPStatusError) and error.status in (429, 503):
        await rt.hosts.penalize(feed.url)
    metrics.FETCHES.labels(outcome=Outcome.FAILED.value, error_kind=error.kind).inc()
    disabled = record.failure(feed, error, now=now)
    if disabled:
        flog.warning("disabled: %s", disabled)
    elif feed.error_count == 0:  # a failing feed is a warning once, then quieter
        flog.warning("failed (%s): %s", error.kind, error)
    else:
        flog.info(
            "failed again (%s, %d in a row): %s",
            error.kind,
            feed.error_count + 1,
            error,
        )
    return Outcome.FAILED


async def store_articles(rt: Runtime, batch: StoreBatch) -> StoreResult:
    """Commit a batch, then tell the seen cache (never before: it must not hide unstored work)."""
    async with rt.pool.acquire() as conn:
        result = await store_batch(
            conn, batch, story_window=timedelta(days=rt.settings.story_window_days)
        )
    delivered = [a.content_hash for a in batch.articles]
    delivered += [a.feed_hash for a in batch.articles if a.feed_hash]  # see fulltext
    await rt.seen.mark(batch.feed_id, delivered, entries=batch.entry_keys or None)
    metrics.ARTICLES_STORED.inc(result.new)
    metrics.ARTICLES_MERGED.inc(result.merged)
    metrics.ARTICLES_CLUSTERED.inc(result.joined_stories)
    new = [a for a in batch.articles if a.content_hash in result.new_hashes]
    if new:
        metrics.observe_freshness(new[0].region, [a.published_at for a in new], datetime.now(UTC))
    logs.for_feed(log, batch.feed_id, batch.feed_url).debug(
        "stored %d new, %d merged", result.new, result.merged
    )
    return result
