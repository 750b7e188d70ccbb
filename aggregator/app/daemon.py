"""The daemon: the scheduler, both queues' workers and the outbox relay in one process.

``run`` leases due feeds and queues their polls until SIGTERM/SIGINT, then
stops taking jobs, lets in-flight ones finish (or leaves them queued for a
retry) and exits. ``run_once`` polls every active feed once and waits until
the queues are drained and every new article is relayed to its subscribers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import asyncpg
from arq.worker import Worker

from aggregator import logs, queue
from aggregator.app.jobs import worker_options
from aggregator.errors import ServiceUnavailableError
from aggregator.reach import SERVICE_ERRORS
from aggregator.runtime import Runtime, open_runtime
from aggregator.settings import Settings
from aggregator.storage import (
    deliveries,
    outbox,
    recovery,
    refold,
    retention,
    schedule,
    upkeep,
)

log = logging.getLogger("aggregator.daemon")

SHUTDOWN_GRACE_SECONDS = 20
SETTLE_SECONDS = 60
RESTART_DELAY_SECONDS = 1.0
START_RETRY_MAX_SECONDS = 30.0
SCHEDULER_MAX_SILENCE = 120.0  # /healthz fails when a scheduler pass hangs longer than this


class Workers:
    """The poll and store workers running inside this process."""

    def __init__(
        self, rt: Runtime, queues: tuple[str, ...] = (queue.POLL_QUEUE, queue.STORE_QUEUE)
    ) -> None:
        self._rt = rt
        self.workers = [
            Worker(
                **worker_options(rt.settings, name),
                redis_pool=rt.redis,
                ctx={"runtime": rt},
                handle_signals=False,
            )
            for name in queues
        ]
        self._tasks: list[asyncio.Task[None]] = []
        for name in queues:
            rt.liveness.watch_queue(name)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(w.async_run()) for w in self.workers]

    async def stop(self, grace: float = SHUTDOWN_GRACE_SECONDS) -> None:
        """Take no new jobs; give running ones ``grace`` seconds; cancel the rest.

        arq puts a cancelled job back on its queue, so nothing is lost."""
        for worker in self.workers:
            worker.allow_pick_jobs = False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while loop.time() < deadline and any(
            not t.done() for w in self.workers for t in w.tasks.values()
        ):
            await asyncio.sleep(0.05)
        for worker in self.workers:
            for task in worker.tasks.values():
                task.cancel()
            await asyncio.gather(*worker.tasks.values(), return_exceptions=True)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def check(self) -> None:
        """Restart a worker loop that died because Redis or Postgres went away (they come
        back; the daemon must still be there); raise on anything else, which is a bug."""
        for index, task in enumerate(self._tasks):
            if not task.done() or task.cancelled():
                continue
            error = task.exception()
            if error is None:
                continue
            if not isinstance(error, SERVICE_ERRORS):
                raise error
            worker = self.workers[index]
            log.warning(
                "%s worker lost its connection (%s); restarting it", worker.queue_name, error
            )
            self._tasks[index] = asyncio.create_task(self._restart(worker))

    @staticmethod
    async def _restart(worker: Worker) -> None:
        await asyncio.sleep(RESTART_DELAY_SECONDS)
        await worker.async_run()


async def schedule_pass(rt: Runtime, leases: list[schedule.Lease]) -> int:
    """Queue the leased feeds as poll jobs of ``poll_batch`` feeds each; return the jobs."""
    size = rt.settings.poll_batch
    batches = [
        [(lease.feed_id, lease.token) for lease in leases[i : i + size]]
        for i in range(0, len(leases), size)
    ]
    queued = await asyncio.gather(*(queue.enqueue_polls(rt.redis, b) for b in batches))
    return sum(queued)


async def open_when_reachable(
    stack: AsyncExitStack,
    settings: Settings,
    *,
    database_url: str,
    redis_url: str,
    stop: asyncio.Event,
) -> Runtime | None:
    """The daemon's runtime, once PostgreSQL and Redis answer.

    A daemon started before its services (a reboot, compose without health
    checks) or during an outage waits for them, saying so once, instead of
    exiting; None if it is told to stop first. One-shot commands fail at once."""
    delay = RESTART_DELAY_SECONDS
    outage = logs.Outage(log, "start-up")
    while not stop.is_set():
        try:
            rt = await stack.enter_async_context(
                open_runtime(settings, database_url=database_url, redis_url=redis_url)
            )
            outage.succeeded()
            return rt
        except ServiceUnavailableError as exc:
            outage.failed(exc, "waiting for it")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        delay = min(delay * 2, START_RETRY_MAX_SECONDS)
    return None


async def run_forever(rt: Runtime, stop: asyncio.Event) -> None:
    rt.warm_parsers()
    async with recovery.beating(rt.pool, rt.redis, rt.holder, rt.settings.lease_seconds):
        await _schedule_forever(rt, stop)


async def _schedule_forever(rt: Runtime, stop: asyncio.Event) -> None:
    workers = Workers(rt)
    workers.start()
    relay = asyncio.create_task(
        outbox.relay_forever(rt.pool, rt.redis, stop, interval=rt.settings.scheduler_tick)
    )
    watcher = asyncio.create_task(deliveries.watch_forever(rt.pool, rt.redis, stop))
    pruning = (
        asyncio.create_task(
            retention.run_daily(rt.pool, timedelta(days=rt.settings.retention_days), stop)
        )
        if rt.settings.retention_days
        else None
    )
    refolding = asyncio.create_task(refold.run_in_background(rt.pool))
    vacuuming = asyncio.create_task(upkeep.run_forever(rt.pool, stop))
    log.info("daemon started: polling due feeds every %.1fs", rt.settings.scheduler_tick)
    outage = logs.Outage(log, "scheduler pass")
    rt.liveness.watch_loop("scheduler", max(SCHEDULER_MAX_SILENCE, 10 * rt.settings.scheduler_tick))
    try:
        while not stop.is_set():
            rt.liveness.beat("scheduler")
            leases = []
            try:
                leases = await schedule.lease_due(rt.pool, rt.settings, rt.holder.id)
                if leases:
                    log.debug("queued %d polls", await schedule_pass(rt, leases))
                outage.succeeded()
            except SERVICE_ERRORS as exc:
                outage.failed(exc, "polling resumes when it is back")
                # Leased but perhaps never queued (Redis away): due again once it answers.
                await rt.holder.give_back(
                    rt.pool, [(lease.feed_id, lease.token) for lease in leases]
                )
            workers.check()
            if len(leases) >= rt.settings.scheduler_batch and await _workers_keep_up(rt):
                # A full pass: more feeds are due now (a fleet all due at once after a
                # restart or an outage); lease them without waiting for the next tick,
                # as long as the poll queue is short (a lease must not expire queued).
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), rt.settings.scheduler_tick)
    finally:
        log.info("stopping: finishing in-flight jobs")
        await workers.stop()
        # Safe mid-pass: unsent rows are relayed at the next start, duplicates refused.
        relay.cancel()
        watcher.cancel()  # safe: whatever it had not settled stays in the watch sets
        refolding.cancel()
        vacuuming.cancel()
        await asyncio.gather(relay, watcher, refolding, vacuuming, return_exceptions=True)
        if pruning is not None:
            pruning.cancel()
            await asyncio.gather(pruning, return_exceptions=True)
        log.info("stopped")


async def _workers_keep_up(rt: Runtime) -> bool:
    """Whether the poll queue holds less than two passes' worth of jobs (the one just
    queued and one more), so the queue stays short however many feeds are due."""
    with contextlib.suppress(*SERVICE_ERRORS):
        jobs_per_pass = -(-rt.settings.scheduler_batch // rt.settings.poll_batch)
        return await queue.depth(rt.redis, queue.POLL_QUEUE) < 2 * jobs_per_pass
    return False


@dataclass
class OnceSummary:
    feeds_ok: int = 0
    feeds_failed: int = 0
    articles_new: int = 0
    duplicates_merged: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    # Subscriber deliveries this run queued: their consumers took / failed / not yet.
    sent: deliveries.Settled = field(default_factory=lambda: deliveries.Settled(0, 0, 0))
    # Active feeds not polled within the time limit (their host's turn never came).
    not_polled: list[str] = field(default_factory=list)


_NOT_POLLED = """
SELECT id, url FROM feeds
WHERE id = ANY($1::bigint[]) AND NOT disabled AND (last_polled_at IS NULL OR last_polled_at < $2)
ORDER BY id
"""


async def run_once(
    rt: Runtime, *, timeout: float = 600, progress: ProgressCallback | None = None
) -> OnceSummary:
    """Poll every active feed once, wait until polls and stores are done, summarize.

    A feed whose host was busy (politeness) is deferred by its poll; it is queued
    again, round after round, until every feed is polled or ``timeout`` seconds
    have passed: those left are named in the summary (``not_polled``).
    ``progress(polled, total, stored)`` is called as the run goes, and once at the end."""
    rt.warm_parsers()
    started: datetime = await rt.pool.fetchval("SELECT now()")
    started_ms = int(time.time() * 1000)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    workers = Workers(rt)
    workers.start()
    watcher: asyncio.Task[None] | None = None
    left: list[asyncpg.Record] = []
    try:
        async with recovery.beating(rt.pool, rt.redis, rt.holder, rt.settings.lease_seconds):
            leases = await schedule.lease_all(rt.pool, rt.settings, rt.holder.id)
            feed_ids = [lease.feed_id for lease in leases]
            log.info("polling %d feeds once", len(leases))
            if progress is not None:
                watcher = asyncio.create_task(_watch(rt, started, len(leases), progress))
            while leases:
                await schedule_pass(rt, leases)
                with contextlib.suppress(TimeoutError):
                    await wait_drained(rt, timeout=deadline - loop.time(), workers=workers)
                left = await rt.pool.fetch(_NOT_POLLED, feed_ids, started)
                if not left or loop.time() >= deadline:
                    break
                # Deferred (their host's turn did not come in time) or given back after
                # a service error: their turn again.
                leases = await schedule.lease_these(
                    rt.pool, rt.settings, [r["id"] for r in left], rt.holder.id
                )
            # Polls in flight finish (or are deferred: a host's turn is waited for at most
            # host_wait); what is still queued is not polled.
            await workers.stop()
            if left:
                left = await rt.pool.fetch(_NOT_POLLED, feed_ids, started)
                await schedule.release(rt.pool, [(lease.feed_id, lease.token) for lease in leases])
            remaining = max(deadline - loop.time(), 30.0)
            await outbox.drain(rt.pool, rt.redis, timeout=remaining)  # to subscribers
            # Wait (bounded) for the consumers' outcomes: a failed delivery is dead-lettered.
            settled = await deliveries.settle(
                rt.pool, rt.redis, since_ms=started_ms, timeout=min(remaining, SETTLE_SECONDS)
            )
            # ... and a look at older ones (a replay's, or queued while no daemon ran).
            await deliveries.watch_once(rt.redis, await deliveries.arq_subscribers(rt.pool))
    finally:
        if watcher is not None:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        await workers.stop()
    if progress is not None:
        await _report_progress(rt, started, len(feed_ids), progress)
    summary = await summarize(rt, started)
    summary.sent = settled
    summary.not_polled = [r["url"] for r in left]
    return summary


ProgressCallback = Callable[[int, int, int], None]

_PROGRESS = """
SELECT (SELECT count(*) FROM feeds WHERE last_polled_at >= $1) AS polled,
       (SELECT count(*) FROM articles WHERE first_seen_at >= $1) AS stored
"""


async def _report_progress(
    rt: Runtime, started: datetime, total: int, progress: ProgressCallback
) -> None:
    row = await rt.pool.fetchrow(_PROGRESS, started)
    progress(min(row["polled"], total), total, row["stored"])


async def _watch(rt: Runtime, started: datetime, total: int, progress: ProgressCallback) -> None:
    while True:
        await _report_progress(rt, started, total, progress)
        await asyncio.sleep(0.25)


async def wait_drained(
    rt: Runtime,
    *,
    timeout: float,
    workers: Workers | None = None,
    queues: tuple[str, ...] = (queue.POLL_QUEUE, queue.STORE_QUEUE),
) -> None:
    """Wait until nothing is queued, deferred or running on ``queues``.

    Polls queue their store batches before they finish, so once the poll queue
    is empty every store job it caused is already visible on the store queue."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        depths = [await queue.depth(rt.redis, q) for q in queues]
        if not any(depths):
            return
        if workers is not None:
            workers.check()
        if loop.time() > deadline:
            raise TimeoutError(f"queues not drained after {timeout:.0f}s (poll, store: {depths})")
        await asyncio.sleep(0.05)


_SUMMARY = """
SELECT
    (SELECT count(*) FROM feeds WHERE last_polled_at >= $1 AND last_error IS NULL) AS feeds_ok,
    (SELECT count(*) FROM feeds
     WHERE last_polled_at >= $1 AND last_error IS NOT NULL) AS feeds_failed,
    (SELECT count(*) FROM articles WHERE first_seen_at >= $1) AS articles_new,
    (SELECT count(*) FROM article_sources WHERE seen_at >= $1) AS sightings_new
"""


async def summarize(rt: Runtime, since: datetime) -> OnceSummary:
    row = await rt.pool.fetchrow(_SUMMARY, since)
    failures = await rt.pool.fetch(
        "SELECT url, last_error FROM feeds WHERE last_polled_at >= $1 AND last_error IS NOT NULL "
        "ORDER BY id LIMIT 20",
        since,
    )
    return OnceSummary(
        feeds_ok=row["feeds_ok"],
        feeds_failed=row["feeds_failed"],
        articles_new=row["articles_new"],
        duplicates_merged=row["sightings_new"] - row["articles_new"],
        failures=[(r["url"], r["last_error"]) for r in failures],
    )


def install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
