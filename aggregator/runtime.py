"""Runtime: the clients one process shares (Postgres pool, Redis, HTTP, parse processes).

Built once from the settings, handed to jobs through arq's ``ctx``, closed on
the way out. CPU-bound parsing runs in a process pool so the event loop keeps
fetching while feeds are parsed.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import multiprocessing
import os
from collections.abc import AsyncIterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg
from arq.connections import ArqRedis

from aggregator import queue
from aggregator.children import die_with_parent
from aggregator.errors import (
    ConfigError,
)
from aggregator.health import Liveness
from aggregator.http.fetch import Fetcher
from aggregator.http.politeness import HostLimiter
from aggregator.model import Article
from aggregator.pipeline.normalize import (
    DocumentInfo,
    FeedContext,
    articles_from_document,
    warm_up,
)
from aggregator.reach import naming
from aggregator.settings import Settings
from aggregator.storage import db
from aggregator.storage.recovery import LeaseHolder
from aggregator.storage.seen import SeenCache

log = logging.getLogger("aggregator")


@dataclass
class Runtime:
    settings: Settings
    database_url: str
    redis_url: str
    pool: asyncpg.Pool
    redis: ArqRedis
    fetcher: Fetcher
    parser: Executor
    seen: SeenCache
    hosts: HostLimiter
    liveness: Liveness  # what /healthz reports about this process's loops
    parses: int = 0  # bodies parsed by this process: an unchanged feed must cost none
    holder: LeaseHolder = field(default_factory=LeaseHolder)  # this process's leases

    async def parse(
        self,
        body: bytes,
        *,
        url: str,
        content_type: str | None,
        feed: FeedContext,
        now: datetime,
        known_entries: frozenset[str] = frozenset(),
    ) -> tuple[DocumentInfo, list[Article]]:
        self.parses += 1
        call = functools.partial(
            articles_from_document,
            body,
            url=url,
            content_type=content_type,
            feed=feed,
            now=now,
            known_entries=known_entries,
            memory_budget=self.settings.max_parse_memory,
            seconds=self.settings.max_parse_seconds,
        )
        return await asyncio.get_running_loop().run_in_executor(self.parser, call)

    def warm_parsers(self) -> None:
        """Start the parse processes now and have each load what its first parse would
        (imports, the language model, the fold tables), so the first polls do not wait
        for it. Not awaited: a parse submitted meanwhile queues behind the warm-up."""
        processes = getattr(self.parser, "_max_workers", 1)
        for _ in range(processes):
            self.parser.submit(warm_up)


def poll_jobs(settings: Settings) -> int:
    """Poll jobs one worker runs at once: each fetches its whole batch side by side,
    so together they keep ``poll_concurrency`` fetches in flight."""
    return max(2, settings.poll_concurrency // settings.poll_batch)


def parse_executor(settings: Settings) -> Executor:
    """The parse processes: by default one per usable core but the event loop's own.

    The event loop does about half of the daemon's CPU work (fetch, store, story
    matching), so a parse process on its core only competes with it, and each one holds
    about 110 MB (its imports and the language model). Bench cold ingest on 2 cores:
    one parse process ingested as fast as two, with 106 MB less peak RSS."""
    # The cores this process may run on (a container's cpuset, taskset), not the machine's.
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    processes = settings.parse_processes or max(1, (usable or os.cpu_count() or 1) - 1)
    # spawn, not fork: the parent holds sockets and an event loop a child must not inherit.
    return ProcessPoolExecutor(
        processes,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=die_with_parent,  # a SIGKILLed daemon leaves no parse process behind
        initargs=(os.getpid(),),
    )


@asynccontextmanager
async def open_runtime(
    settings: Settings,
    *,
    database_url: str | None = None,
    redis_url: str | None = None,
    migrate: bool = True,
) -> AsyncIterator[Runtime]:
    database_url = database_url or settings.database_url
    redis_url = redis_url or settings.redis_url
    if not database_url or not redis_url:
        raise ConfigError("AGGREGATOR_DATABASE_URL and AGGREGATOR_REDIS_URL must be set")
    async with AsyncExitStack() as stack:
        with naming("PostgreSQL", database_url):
            if migrate:
                for migration in await db.migrate(database_url):
                    log.info("applied migration %03d_%s", migration.version, migration.name)
            pool = await db.create_pool(
                database_url,
                # Each store job and each poll job holds one connection at a time, plus
                # the scheduler, the outbox relay and the heartbeat.
                max_size=settings.store_concurrency + poll_jobs(settings) + 3,
            )
        stack.push_async_callback(pool.close)
        with naming("Redis", redis_url):
            redis = await queue.connect(redis_url)
        stack.push_async_callback(redis.aclose)
        fetcher = await stack.enter_async_context(Fetcher(settings))
        parser = parse_executor(settings)
        stack.callback(parser.shutdown, wait=True, cancel_futures=True)
        hosts = HostLimiter(redis, settings)
        stack.push_async_callback(hosts.close)  # before Redis closes: slots given back
        yield Runtime(
            settings=settings,
            database_url=database_url,
            redis_url=redis_url,
            pool=pool,
            redis=redis,
            fetcher=fetcher,
            parser=parser,
            seen=SeenCache(redis, ttl_seconds=int(settings.seen_cache_days * 86400)),
            hosts=hosts,
            liveness=Liveness(job_timeout=settings.job_timeout),
        )
