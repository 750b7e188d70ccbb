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

import asyncpg

from aggregator import logs, metrics, polling, queue
from aggregator.errors import FeedError, HostBusyError, HTTPStatusError
from aggregator.http import fulltext, websub
from aggregator.http.fetch import FetchResult
from aggregator.model import Article
from aggregator.pipeline.normalize import DocumentInfo, FeedContext, articles_from_document
from aggregator.reach import SERVICE_ERRORS
from aggregator.runtime import Runtime
from aggregator.settings import Settings
from aggregator.storage import schedule
from aggregator.storage.articles import (
    StoreBatch,
    StoreResult,
    Validators,
    store_batch,
    store_payload,
)
from aggregator.storage.feeds import Feed
from aggregator.storage.seen import FeedWindow

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
    interval = polling.current_interval(
        settings, override=feed.poll_interval, computed=feed.update_interval
    )
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
        window = await rt.seen.window(feed.id)
        document, articles = await rt.parse(
            response.body,
            url=response.url,
            content_type=response.content_type,
            feed=FeedContext(url=response.url, language=feed.language, region=feed.region),
            now=now,
            known_entries=window.known_entries,
        )
    except HostBusyError:
        record.deferred(feed, settings.scheduler_tick * 2)
        return Outcome.DEFERRED
    except FeedError as error:
        return await _failed(rt, feed, error, record, now)
    if document.warning:
        flog.info("read with a warning: %s", document.warning)
    record.warning(feed, document.warning)
    if document.capped:  # entries left unread: the next poll must fetch and read the body
        validators = Validators(body_hash="")

    interval = _interval(settings, feed, document, response, now)
    await websub.renew_if_due(rt, feed, hub=document.hub, topic=document.self_url, now=now)
    queued = await deliver(
        rt, feed, articles, document, window, body_hash=body_hash, validators=validators, now=now
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
    document: DocumentInfo,
    window: FeedWindow,
    *,
    body_hash: str,
    validators: Validators | None,
    now: datetime,
) -> int:
    """Queue a store batch with the articles this feed has not delivered yet; return how many.

    For a --full-text feed, those articles first get their pages' full text. A poll
    (``validators`` set: the whole body) makes the body's entries the feed's window once
    nothing of it is left to store; a push adds its entries to the window."""
    delivered = window.delivered
    fresh = [a for a in articles if a.content_hash not in delivered]
    if fresh and feed.full_text:
        fresh = await fulltext.complete(rt, feed, fresh)
    stored_as = {a.feed_hash or a.content_hash: (a.content_hash, a.feed_hash) for a in fresh}
    normalized = {
        key: tuple(h for h in stored_as.get(hash_, (hash_,)) if h)
        for key, hash_ in document.hashes.items()
    }
    if validators is None:  # a push: only what it carried
        entries, departed = normalized, None
    else:
        entries, departed = window.after(document.entry_keys, normalized)
    if fresh:
        batch = StoreBatch(
            feed_id=feed.id,
            feed_url=feed.url,
            body_hash=body_hash,
            validators=validators,
            articles=fresh,
            fetched_at=now,
            entries={k: list(v) for k, v in entries.items()},
            departed=None if departed is None else {k: list(v) for k, v in departed.items()},
        )
        await queue.enqueue_store(rt.redis, store_payload(batch))
    else:  # all delivered before
        await rt.seen.remember(feed.id, entries, departed=departed)
    return len(fresh)


async def ingest_push(rt: Runtime, feed: Feed, body: bytes, content_type: str | None) -> int:
    """Content a WebSub hub pushed: parsed, deduped and stored like a poll's.

    The feed's validators stay as they are: a push says nothing about what the next
    poll will see. A body that is not a feed raises ``FeedError``."""
    now = datetime.now(UTC)
    window = await rt.seen.window(feed.id)
    document, articles = await rt.parse(
        body,
        url=feed.url,
        content_type=content_type,
        feed=FeedContext(url=feed.url, language=feed.language, region=feed.region),
        now=now,
    )
    body_hash = hashlib.sha256(body).hexdigest()
    return await deliver(
        rt, feed, articles, document, window, body_hash=body_hash, validators=None, now=now
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


_ADDED_AND_WAITING = """
UPDATE feeds SET next_poll_at = now() + make_interval(secs => $2), last_polled_at = now(),
    error_count = 1, failing_since = now(), last_error = $3, last_error_kind = $4
WHERE id = $1
"""

_ADDED_AND_STORED = """
UPDATE feeds SET next_poll_at = now() + make_interval(secs => $2), update_interval = $3,
    last_polled_at = now(), last_success_at = now(), error_count = 0, failing_since = NULL,
    last_error = NULL, last_error_kind = NULL, last_warning = $4,
    title = COALESCE(title, $5), site_url = COALESCE(site_url, $6)
WHERE id = $1
"""


async def remember_add_fetch(
    conn: asyncpg.Connection,
    settings: Settings,
    feed: Feed,
    *,
    response: FetchResult | None,
    error: FeedError | None,
) -> str | None:
    """Keep what ``feeds add``'s own fetch learned, so the first poll does not undo it.

    A Retry-After (429/503) makes the first poll wait for it. A feed body is stored as a
    poll's would be, its validators advancing in the same transaction, so the first poll
    is a conditional GET at the feed's interval (a permanent redirect was already followed:
    the feed is added at its new URL). Returns a line for the user, or None."""
    if error is not None:
        retry_after = error.retry_after if isinstance(error, HTTPStatusError) else None
        if not retry_after:
            return None
        wait = min(retry_after, settings.max_backoff)
        await conn.execute(_ADDED_AND_WAITING, feed.id, wait, str(error)[:1000], error.kind)
        return f"the server asked to wait (Retry-After): first poll in {wait:.0f}s"
    if response is None or response.body is None or feed.full_text:
        return None  # a --full-text feed's pages are fetched by the daemon's polls
    now = datetime.now(UTC)
    document, articles = articles_from_document(
        response.body,
        url=response.url,
        content_type=response.content_type,
        feed=FeedContext(url=response.url, language=feed.language, region=feed.region),
        now=now,
        memory_budget=settings.max_parse_memory,
        seconds=settings.max_parse_seconds,
    )
    if document.capped:
        return None  # the daemon's polls read the rest
    body_hash = hashlib.sha256(response.body).hexdigest()
    batch = StoreBatch(
        feed_id=feed.id,
        feed_url=feed.url,
        body_hash=body_hash,
        validators=Validators(
            etag=response.etag, last_modified=response.last_modified, body_hash=body_hash
        ),
        articles=articles,
        fetched_at=now,
    )
    interval = _interval(settings, feed, document, response, now)
    async with conn.transaction():
        result = await store_batch(
            conn, batch, story_window=timedelta(days=settings.story_window_days)
        )
        await conn.execute(
            _ADDED_AND_STORED,
            feed.id,
            polling.next_delay(settings, interval),
            interval,
            document.warning,
            document.title,
            document.site_url,
        )
    return f"stored {result.new} new articles of its {len(articles)}; next poll in {interval:.0f}s"


async def store_articles(rt: Runtime, batch: StoreBatch) -> StoreResult:
    """Commit a batch, then tell the seen cache (never before: it must not hide unstored work)."""
    async with rt.pool.acquire() as conn:
        result = await store_batch(
            conn, batch, story_window=timedelta(days=rt.settings.story_window_days)
        )
    departed = batch.departed
    await rt.seen.remember(
        batch.feed_id,
        {k: tuple(v) for k, v in batch.entries.items()},
        departed=None if departed is None else {k: tuple(v) for k, v in departed.items()},
    )
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


def _interval(
    settings: Settings, feed: Feed, document: DocumentInfo, response: FetchResult, now: datetime
) -> float:
    """The feed's poll interval from what this read showed: the operator's override, the
    publisher's and server's hints, and the rate it publishes at."""
    return polling.poll_interval(
        settings,
        override=feed.poll_interval,
        hints=polling.hints_from(
            ttl=document.ttl,
            update_period=document.update_period,
            update_frequency=document.update_frequency,
            cache_control=response.cache_control,
            expires=response.expires,
            now=now,
        ),
        observed=polling.observed_interval(document.published),
    )
