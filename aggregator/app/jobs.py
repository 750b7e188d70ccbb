"""The arq jobs: thin wrappers around ``aggregator.refresh``, plus worker start-up.

A job retries (with ``arq.Retry``) only on transient infrastructure errors:
Postgres or Redis unreachable. A feed's own failures are recorded on its row
by ``refresh_feed`` and never fail the job.
"""

from __future__ import annotations

import collections
import contextlib
import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import asyncpg
from arq import Retry, func
from arq.worker import Function

from aggregator import queue
from aggregator.app import web
from aggregator.health import HEALTH_INTERVAL, health_key
from aggregator.reach import SERVICE_ERRORS
from aggregator.refresh import refresh_feeds
from aggregator.refresh import store_articles as store
from aggregator.runtime import Runtime, open_runtime, poll_jobs
from aggregator.settings import Settings, load_settings
from aggregator.storage.articles import StoreBatch
from aggregator.storage.recovery import beating, jobs_key

log = logging.getLogger("aggregator.jobs")

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    *SERVICE_ERRORS,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.SerializationError,
)


# A store batch is the only copy of its articles until it commits, so it waits out
# a Postgres outage instead of giving up after ``max_tries``: with retries 15 s apart
# at most, this many tries span more than a day, and a batch is stored within 15 s of
# the end of an outage (a minute's cap kept it waiting up to 32 s after a 30 s one).
# (A batch that fails for any other reason fails once and is logged; arq retries
# only ``Retry``.)
STORE_MAX_TRIES = 6000
POLL_RESULT_SECONDS = 60
RETRY_DELAY_CAP_SECONDS = 15


def _retry(ctx: dict[str, Any], exc: BaseException) -> Retry:
    """Retry later, with exponential backoff; said as a warning on the first retry only."""
    job_try = ctx.get("job_try", 1)
    delay = min(2**job_try, RETRY_DELAY_CAP_SECONDS)
    log.log(
        logging.WARNING if job_try == 1 else logging.DEBUG,
        "job %s: %s: %s; retrying in %ds (try %d)",
        ctx.get("job_id"),
        type(exc).__name__,
        exc,
        delay,
        job_try,
    )
    return Retry(defer=delay)


async def poll_feeds(ctx: dict[str, Any], leases: list[list[Any]]) -> dict[str, int]:
    """A batch of leased feeds; returns how many polls ended each way."""
    rt: Runtime = ctx["runtime"]
    batch = [(int(f), str(t)) for f, t in leases]
    try:
        outcomes = await refresh_feeds(rt, batch)
    except SERVICE_ERRORS as exc:
        # Before the claim (Postgres away): the leases are still good. They are given
        # back once Postgres answers, and polled then, instead of retried by arq (whose
        # tries run out during a long outage and leave the feeds leased).
        log.warning(
            "poll job %s: %s: %s; its feeds are polled again once it is back",
            ctx.get("job_id"),
            type(exc).__name__,
            exc,
        )
        rt.holder.owed.update(batch)
        return {"interrupted": len(batch)}
    except TRANSIENT_ERRORS as exc:  # before the claim: the leases are still good
        raise _retry(ctx, exc) from exc
    return dict(collections.Counter(outcome.value for outcome in outcomes))


async def store_articles(ctx: dict[str, Any], batch: dict[str, Any]) -> dict[str, int]:
    parsed = StoreBatch.model_validate(batch)
    rt: Runtime = ctx["runtime"]
    # Which jobs this process runs: if it dies, a live one hands them on (see recovery).
    running = jobs_key(rt.holder.id)
    job_id = str(ctx.get("job_id"))
    try:
        async with rt.redis.pipeline(transaction=False) as pipe:  # one round trip
            pipe.sadd(running, job_id)
            pipe.expire(running, 86400)
            await pipe.execute()
        result = await store(rt, parsed)
    except TRANSIENT_ERRORS as exc:
        raise _retry(ctx, exc) from exc
    finally:
        with contextlib.suppress(*SERVICE_ERRORS):
            await rt.redis.srem(running, job_id)  # type: ignore[misc]
    return {"new": result.new, "merged": result.merged, "sightings": result.sightings}


def functions_for(queue_name: str, settings: Settings) -> list[Function]:
    if queue_name == queue.POLL_QUEUE:
        # A poll job's id names its leases, whose tokens are never reused: once it has run,
        # a copy queued again claims nothing. Its result (about 1.4 kB, the leases
        # included) is kept a minute, not arq's hour: at 10,000 feeds polled every minute
        # an hour of results was 40 MB of Redis.
        return [
            func(
                poll_feeds,
                name=queue.POLL_JOB,
                timeout=settings.job_timeout,
                keep_result=POLL_RESULT_SECONDS,
            )
        ]
    # keep_result=0: a finished store job leaves no result behind, so the same
    # (feed, body) batch can be queued again if the body comes back later.
    return [
        func(
            store_articles,
            name=queue.STORE_JOB,
            timeout=settings.job_timeout,
            keep_result=0,
            max_tries=STORE_MAX_TRIES,
        )
    ]


def _job_seen(queue_name: str) -> Callable[[dict[str, Any]], Awaitable[None]]:
    """An arq job hook that tells this process's liveness a job started or ended."""

    async def seen(ctx: dict[str, Any]) -> None:
        runtime = ctx.get("runtime")
        if runtime is not None:
            runtime.liveness.job_event(queue_name)

    return seen


def worker_options(settings: Settings, queue_name: str) -> dict[str, Any]:
    """The arq ``Worker`` keyword arguments for one of our queues."""
    return {
        "functions": functions_for(queue_name, settings),
        "queue_name": queue_name,
        "job_serializer": queue.serialize,
        "job_deserializer": queue.deserialize,
        "max_jobs": poll_jobs(settings)
        if queue_name == queue.POLL_QUEUE
        else settings.store_concurrency,
        "job_timeout": settings.job_timeout,
        "max_tries": settings.max_tries,
        "poll_delay": settings.poll_delay,
        # A health record of this process's own (see aggregator.health), read by /healthz.
        "health_check_interval": HEALTH_INTERVAL,
        "health_check_key": health_key(queue_name),
        "on_job_start": _job_seen(queue_name),
        "after_job_end": _job_seen(queue_name),
    }


def startup_for(queue_name: str) -> Callable[[dict[str, Any]], Awaitable[None]]:
    async def startup(ctx: dict[str, Any]) -> None:
        """Standalone workers (``arq workers.poll.WorkerSettings``) build their own runtime,
        beat as a lease holder, and, with ``AGGREGATOR_HTTP_PORT`` set, serve /healthz and
        /metrics for this process."""
        stack = AsyncExitStack()
        runtime: Runtime = await stack.enter_async_context(open_runtime(load_settings()))
        runtime.liveness.watch_queue(queue_name)
        if queue_name == queue.POLL_QUEUE:
            runtime.warm_parsers()
        ctx["runtime"] = runtime
        ctx["exit_stack"] = stack
        await stack.enter_async_context(
            beating(runtime.pool, runtime.redis, runtime.holder, runtime.settings.lease_seconds)
        )
        await stack.enter_async_context(web.serve(runtime, shared_metrics=False))

    return startup


async def shutdown(ctx: dict[str, Any]) -> None:
    stack = ctx.pop("exit_stack", None)
    if stack is not None:
        await stack.aclose()


def worker_settings(queue_name: str) -> type:
    """The ``WorkerSettings`` class the ``arq`` command runs for one of our queues.

    Built when a worker starts (``workers/poll.py`` and ``workers/store.py`` call this on
    first access to their ``WorkerSettings``), so importing those modules reads no
    environment. A configuration error is one line and exit 2, as the aggregator
    command does."""
    import sys

    from aggregator.errors import ConfigError

    try:
        settings = load_settings()
        if not settings.redis_url:
            raise ConfigError("AGGREGATOR_REDIS_URL must be set to run a standalone worker")
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    options = worker_options(settings, queue_name)
    redis = queue.redis_settings(settings.redis_url)

    class WorkerSettings:
        functions = options["functions"]
        queue_name = options["queue_name"]
        job_serializer = options["job_serializer"]
        job_deserializer = options["job_deserializer"]
        max_jobs = options["max_jobs"]
        job_timeout = options["job_timeout"]
        max_tries = options["max_tries"]
        poll_delay = options["poll_delay"]
        health_check_interval = options["health_check_interval"]
        health_check_key = options["health_check_key"]
        on_job_start = options["on_job_start"]
        after_job_end = options["after_job_end"]
        redis_settings = redis
        on_startup = startup_for(queue_name)
        on_shutdown = shutdown

    return WorkerSettings
