"""Consume a subscriber's queue: the payload model and an arq worker around your handler.

A subscriber named ``alerts`` reads the arq queue ``aggregator:subscriber:alerts``;
each job is ``new_article`` with one JSON payload (``NewArticle``). A consumer in
five lines::

    from aggregator.consumer import NewArticle, run

    async def handle(article: NewArticle) -> None:
        print(article.title, article.canonical_url)

    run("alerts", handle)  # Redis from AGGREGATOR_REDIS_URL, or pass redis_url=

Delivery is at least once: make ``handle`` idempotent (``article.id`` is stable).
A handler that raises is retried with backoff; after ``tries`` failures the
delivery goes to the subscriber's dead-letter list, which ``aggregator
subscribers list`` shows and ``aggregator subscribers replay NAME
--dead-letters`` retries. With ``concurrency=1`` (the default) articles are
handled one at a time in the order they were committed, except after a failure:
a retried (or replayed) article comes after the ones committed later.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from arq import Retry, func
from arq.connections import ArqRedis
from arq.worker import Worker
from pydantic import BaseModel, ConfigDict, ValidationError

from aggregator import queue
from aggregator.errors import ConfigError
from aggregator.errors import InvalidSubscriberNameError as InvalidSubscriberNameError

__all__ = [
    "NEW_ARTICLE_JOB",
    "PAYLOAD_VERSION",
    "ArticleSource",
    "DeadLetter",
    "Handler",
    "InvalidSubscriberNameError",
    "NewArticle",
    "Sighting",
    "check_name",
    "dead_letter_key",
    "queue_name",
    "run",
    "serve",
    "worker",
]

log = logging.getLogger("aggregator.consumer")

PAYLOAD_VERSION = 1
NEW_ARTICLE_JOB = "new_article"
QUEUE_PREFIX = "aggregator:subscriber:"
# How long a queued delivery waits for its consumer before arq drops it (the watcher
# then dead-letters it). A stream keeps its entries as long.
DELIVERY_EXPIRES = timedelta(days=7)
# The dead-letter list is bounded: a consumer failing for weeks must not fill Redis.
DEAD_LETTER_LIMIT = 10_000
MAX_RETRY_DELAY = 300.0
# arq counts a worker killed mid-job as a try; leave room for a few such crashes
# beyond the handler's own tries, so a delivery ends in the dead-letter list
# rather than being dropped by arq's own limit.
CRASH_ALLOWANCE = 5

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def check_name(name: str) -> str:
    """The name, if it is 1-64 letters, digits, ``_``, ``.`` or ``-`` (starting alphanumeric)."""
    if not _NAME.fullmatch(name):
        raise InvalidSubscriberNameError(
            f"invalid subscriber name {name[:80]!r}: use 1-64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return name


def queue_name(subscriber: str) -> str:
    """The arq queue a subscriber reads: ``aggregator:subscriber:NAME``."""
    return QUEUE_PREFIX + check_name(subscriber)


def dead_letter_key(subscriber: str) -> str:
    """The Redis list of deliveries the subscriber's handler kept failing."""
    return queue_name(subscriber) + ":dead"


class Sighting(BaseModel):
    """A sighting: a feed that carried the article, with the link and guid it used (a row
    of the ``article_sources`` table; the payload lists them under ``sources``)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    feed_id: int
    feed_url: str
    feed_title: str | None
    url: str | None
    guid: str | None
    title: str | None
    seen_at: datetime


# The name this model had before version 0.2: consumers written against it keep working.
ArticleSource = Sighting


class NewArticle(BaseModel):
    """The ``new_article`` payload, schema version 1 (fields are the ``articles`` columns
    of docs/sql.md; tests/test_model.py holds them against ``aggregator.model.Article``).
    Fields may be added within a version; a consumer ignores the ones it does not know.
    A change that breaks consumers bumps ``schema_version``."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    schema_version: Literal[1]
    id: int
    content_hash: str
    story_id: int | None
    canonical_url: str | None
    title: str
    summary: str
    content_html: str
    content_text: str
    author: str | None
    language: str | None
    region: str | None
    published_at: datetime
    first_seen_at: datetime
    updated_at: datetime
    sources: list[Sighting]


class DeadLetter(BaseModel):
    """A delivery the handler gave up on: which article, after how many tries, and why."""

    article_id: int | None
    job_id: str
    tries: int
    error: str
    failed_at: datetime


Handler = Callable[[NewArticle], Awaitable[object]]


def worker(
    subscriber: str,
    handle: Handler,
    *,
    redis: ArqRedis,
    concurrency: int = 1,
    tries: int = 5,
    timeout: float = 60.0,
    retry_delay: float = 1.0,
    poll_delay: float = 0.05,
) -> Worker:
    """An arq ``Worker`` (not started) that feeds the subscriber's queue to ``handle``.

    ``tries``: attempts per article before it is dead-lettered; ``timeout``: seconds one
    call of ``handle`` may take (a timeout counts as a failure); ``retry_delay``: the
    first backoff, doubled on each retry; ``concurrency``: handlers running at once (above
    1, articles are no longer handled in order); ``poll_delay``: seconds between queue
    checks (arq starts at most ``concurrency`` jobs per check, so it bounds throughput)."""
    name = check_name(subscriber)
    if tries < 1 or concurrency < 1:
        raise ValueError("tries and concurrency must be at least 1")

    async def new_article(ctx: dict[str, Any], payload: dict[str, Any]) -> str:
        return await _deliver(
            ctx, name, handle, payload, tries=tries, timeout=timeout, retry_delay=retry_delay
        )

    return Worker(
        functions=[
            func(
                new_article,
                name=NEW_ARTICLE_JOB,
                timeout=timeout + 10,
                max_tries=tries + CRASH_ALLOWANCE,
            )
        ],
        queue_name=queue_name(name),
        redis_pool=redis,
        job_serializer=queue.serialize,
        job_deserializer=queue.deserialize,
        max_jobs=concurrency,
        poll_delay=poll_delay,
        handle_signals=False,
        health_check_interval=60,
    )


async def serve(
    subscriber: str,
    handle: Handler,
    *,
    redis_url: str | None = None,
    stop: asyncio.Event | None = None,
    grace: float = 10.0,
    **options: Any,
) -> None:
    """Run the consumer until ``stop`` is set (or the task is cancelled).

    On stop it takes no new jobs and gives running handlers ``grace`` seconds; a
    handler still running after that is cancelled and its article delivered again
    later. ``options`` are ``worker``'s keyword arguments."""
    redis = await queue.connect(redis_url or _redis_url_from_settings())
    try:
        consumer = worker(subscriber, handle, redis=redis, **options)
        running = asyncio.create_task(consumer.async_run())
        stopping = asyncio.create_task((stop or asyncio.Event()).wait())
        try:
            await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if running.done():
                running.result()  # the worker loop died: lost Redis for good, or a bug
        finally:
            stopping.cancel()
            await _shutdown(consumer, running, grace)
    finally:
        await redis.aclose()


def run(subscriber: str, handle: Handler, *, redis_url: str | None = None, **options: Any) -> None:
    """Consume until SIGINT or SIGTERM (blocking). See ``serve`` and ``worker``."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        logging.getLogger("arq").setLevel(logging.WARNING)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(subscriber, handle, redis_url=redis_url, stop=stop, **options)

    asyncio.run(main())


async def _deliver(
    ctx: dict[str, Any],
    subscriber: str,
    handle: Handler,
    payload: dict[str, Any],
    *,
    tries: int,
    timeout: float,
    retry_delay: float,
) -> str:
    job_try: int = ctx["job_try"]
    try:
        article = NewArticle.model_validate(payload)
    except ValidationError as exc:
        # No retry can fix a payload this consumer does not understand.
        problem = f"payload rejected: {exc.error_count()} errors, first: {exc.errors()[0]['msg']}"
        await _dead_letter(ctx, subscriber, payload.get("id"), job_try, problem)
        log.error("%s: job %s: %s", subscriber, ctx["job_id"], problem)
        return "dead_letter"
    try:
        await asyncio.wait_for(handle(article), timeout)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        if job_try >= tries:
            await _dead_letter(ctx, subscriber, article.id, job_try, error)
            log.error(
                "%s: article %d failed %d times, dead-lettered: %s",
                subscriber,
                article.id,
                job_try,
                error,
                exc_info=exc,
            )
            return "dead_letter"
        delay = min(retry_delay * 2 ** (job_try - 1), MAX_RETRY_DELAY)
        log.warning(
            "%s: article %d failed (try %d of %d): %s; retrying in %.1fs",
            subscriber,
            article.id,
            job_try,
            tries,
            error,
            delay,
        )
        raise Retry(defer=delay) from exc
    return "delivered"


async def _dead_letter(
    ctx: dict[str, Any], subscriber: str, article_id: object, tries: int, error: str
) -> None:
    entry = DeadLetter(
        article_id=article_id if isinstance(article_id, int) else None,
        job_id=ctx["job_id"],
        tries=tries,
        error=error[:1000],
        failed_at=datetime.now(UTC),
    )
    redis: ArqRedis = ctx["redis"]
    key = dead_letter_key(subscriber)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.rpush(key, json.dumps(entry.model_dump(mode="json"), ensure_ascii=False))
        pipe.ltrim(key, -DEAD_LETTER_LIMIT, -1)
        await pipe.execute()


async def _shutdown(consumer: Worker, running: asyncio.Task[None], grace: float) -> None:
    """Finish in-flight handlers (up to ``grace`` seconds), then stop the worker loop.
    arq puts a cancelled job back on its queue, so nothing is lost."""
    consumer.allow_pick_jobs = False
    in_flight = [t for t in consumer.tasks.values() if not t.done()]
    if in_flight:
        await asyncio.wait(in_flight, timeout=grace)
    for task in consumer.tasks.values():
        task.cancel()
    await asyncio.gather(*consumer.tasks.values(), return_exceptions=True)
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)


def _redis_url_from_settings() -> str:
    from aggregator.settings import load_settings

    url = load_settings().redis_url
    if not url:
        raise ConfigError("set AGGREGATOR_REDIS_URL (the aggregator's Redis) or pass redis_url=")
    return url
