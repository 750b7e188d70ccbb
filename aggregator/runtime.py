"""Runtime: the clients one process shares (Postgres pool, Redis, HTTP, parse processes).

Built once from the settings, handed to jobs through arq's ``ctx``, closed on
the way out. CPU-bound parsing runs in a process pool so the event loop keeps
fetching while feeds are parsed.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import multiprocessing
import os
import socket
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import parse_qs, urlsplit

import asyncpg
import redis.exceptions
from arq.connections import ArqRedis

from aggregator import db, queue
from aggregator.dedupe import SeenCache
from aggregator.errors import (
    AggregatorError,
    ConfigError,
    ServiceError,
    ServiceRefusedError,
    ServiceUnavailableError,
)
from aggregator.fetch import Fetcher
from aggregator.normalize import Article, DocumentInfo, FeedContext, articles_from_document
from aggregator.politeness import HostLimiter
from aggregator.settings import Settings

log = logging.getLogger("aggregator")

# Postgres or Redis unreachable or restarting: wait it out and retry, never exit.
SERVICE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # ConnectionError, TimeoutError
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    # A connection lost inside a WATCH pipeline (arq's enqueue) surfaces as a WatchError.
    redis.exceptions.WatchError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.AdminShutdownError,
)


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
    parses: int = 0  # bodies parsed by this process: an unchanged feed must cost none

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
    return ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"))


@contextmanager
def naming(service: str, url: str | None) -> Iterator[None]:
    """A failure talking to ``service`` becomes one line that names it, where it is (never
    its password) and what happened: "cannot reach PostgreSQL at 127.0.0.1:5432/news:
    connection refused", "permission denied by PostgreSQL at ...". Only that service's
    own errors are caught, so nested blocks (PostgreSQL, then Redis) name the right one."""
    caught = _POSTGRES_ERRORS if service == "PostgreSQL" else _REDIS_ERRORS
    try:
        yield
    except AggregatorError:
        raise  # already says what happened (an inner block named its service)
    except caught as exc:
        raise service_error(service, url, exc) from exc


_POSTGRES_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)
_REDIS_ERRORS = (OSError, redis.exceptions.RedisError)


def service_error(service: str, url: str | None, exc: BaseException) -> ServiceError:
    """The one-line error for ``exc``, raised talking to ``service`` at ``url``."""
    at = f"{service} at {where(url)}" if url else service
    detail = " ".join((str(exc) or type(exc).__name__).split())
    if isinstance(exc, asyncpg.InsufficientPrivilegeError | redis.exceptions.NoPermissionError):
        user = urlsplit(url).username if url else None
        return ServiceRefusedError(
            f"permission denied by {at}" + (f" to role {user}" if user else "") + f": {detail}"
        )
    if isinstance(
        exc,
        asyncpg.InvalidAuthorizationSpecificationError  # bad password, unknown role, pg_hba
        | redis.exceptions.AuthenticationError
        | redis.exceptions.AuthenticationWrongNumberOfArgsError,
    ):
        return ServiceRefusedError(f"{at} refused the login: {detail}")
    if isinstance(exc, asyncpg.InvalidCatalogNameError) or (
        isinstance(exc, redis.exceptions.ResponseError) and "DB index" in detail
    ):
        return ServiceRefusedError(f"{at} has no such database: {detail}")
    if isinstance(exc, TimeoutError | redis.exceptions.TimeoutError):
        return ServiceUnavailableError(f"cannot reach {at}: no answer (timed out)")
    if _refused(exc):
        return ServiceUnavailableError(f"cannot reach {at}: connection refused (is it running?)")
    if isinstance(exc, socket.gaierror) or isinstance(exc.__cause__, socket.gaierror):
        return ServiceUnavailableError(f"cannot reach {at}: unknown host ({detail})")
    if isinstance(exc, SERVICE_ERRORS):
        return ServiceUnavailableError(f"cannot reach {at}: {detail}")
    if isinstance(exc, asyncpg.TooManyConnectionsError):
        return ServiceUnavailableError(f"{at} has no free connection: {detail}")
    return ServiceError(f"{at} failed: {type(exc).__name__}: {detail}")


def _refused(exc: BaseException) -> bool:
    """Connection refused, however wrapped (asyncio joins one error per address tried)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError) or getattr(seen, "errno", None) in (
            errno.ECONNREFUSED,
        ):
            return True
        text = str(seen)
        if "Connection refused" in text or f"[Errno {errno.ECONNREFUSED}]" in text:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def where(url: str) -> str:
    """A service URL as a log line may show it: host, port and path, no credentials."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    if host:
        return host + parts.path
    sockets = ",".join(parse_qs(parts.query).get("host") or [])
    return f"{sockets} ({parts.path.lstrip('/')})" if sockets else parts.path  # a unix socket


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
                # the scheduler and the outbox relay.
                max_size=settings.store_concurrency + poll_jobs(settings) + 2,
            )
        stack.push_async_callback(pool.close)
        with naming("Redis", redis_url):
            redis = await queue.connect(redis_url)
        stack.push_async_callback(redis.aclose)
        fetcher = await stack.enter_async_context(Fetcher(settings))
        parser = parse_executor(settings)
        stack.callback(parser.shutdown, wait=True, cancel_futures=True)
        yield Runtime(
            settings=settings,
            database_url=database_url,
            redis_url=redis_url,
            pool=pool,
            redis=redis,
            fetcher=fetcher,
            parser=parser,
            seen=SeenCache(redis, ttl_seconds=int(settings.seen_cache_days * 86400)),
            hosts=HostLimiter(redis, settings),
        )
