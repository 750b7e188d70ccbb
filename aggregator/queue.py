"""Queues: arq over Redis with JSON payloads, queue names and deterministic job ids.

Payloads are JSON, never pickle: a shared Redis must not be a way to run code
in the workers. Job ids are derived from what the job is about, so a job
enqueued twice (two schedulers, a retried poll) runs once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from redis.asyncio import BlockingConnectionPool

POLL_QUEUE = "aggregator:poll"
STORE_QUEUE = "aggregator:store"
POLL_JOB = "poll_feeds"
STORE_JOB = "store_articles"

# Redis connections one process opens at most. arq's pool has no bound: it opens one
# more connection whenever every open one is busy, so a daemon's descriptors grew with
# its peak concurrency (109 Redis connections after an hour at 10,000 feeds, still
# rising). Redis runs one command at a time; past a few dozen connections a caller only
# waits somewhere else. Here it waits for a free connection instead.
REDIS_CONNECTIONS = 64


def serialize(value: dict[str, Any]) -> bytes:
    # default=repr: a failed job's result holds its exception, kept as text.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=repr).encode()


def deserialize(data: bytes) -> dict[str, Any]:
    value = json.loads(data)
    if not isinstance(value, dict):
        raise ValueError("queue payload is not a JSON object")
    args = value.get("a")
    if isinstance(args, list):  # a job's positional arguments
        value["a"] = [Payload(a) if isinstance(a, dict) else a for a in args]
    return value


class Payload(dict[str, Any]):
    """A job's argument as it came off the queue, with a short repr.

    arq logs every job it starts with the repr of its arguments, built whole and then
    cut to 300 characters: for a store batch (about 10 kB of text per article) that
    repr cost 3 % of the daemon's CPU in cold ingest (bench profile)."""

    def __repr__(self) -> str:
        keys = ", ".join(list(self)[:4])
        articles = self.get("articles")
        size = f", {len(articles)} articles" if isinstance(articles, list) else ""
        return f"{{{keys}{', ...' if len(self) > 4 else ''}{size}}}"


def redis_settings(url: str) -> RedisSettings:
    settings = RedisSettings.from_dsn(url)
    settings.conn_timeout = 5
    settings.conn_retries = 5
    return settings


async def connect(url: str, *, max_connections: int = REDIS_CONNECTIONS) -> ArqRedis:
    """An arq pool that speaks JSON, holding at most ``max_connections`` connections
    (a command waits for a free one rather than opening another)."""
    redis = await create_pool(  # arq's retries and its first PING, then a bounded pool
        redis_settings(url),
        job_serializer=serialize,
        job_deserializer=deserialize,
        default_queue_name=POLL_QUEUE,
    )
    unbounded = redis.connection_pool
    redis.connection_pool = BlockingConnectionPool(
        connection_class=unbounded.connection_class,
        max_connections=max_connections,
        timeout=None,  # a busy pool only delays; a dead server still fails at connect
        **unbounded.connection_kwargs,
    )
    await unbounded.disconnect()
    return redis


def poll_job_id(leases: Sequence[tuple[int, str]]) -> str:
    """A batch's job id: its feeds' lease tokens, which no other lease ever has."""
    digest = hashlib.sha256(",".join(token for _, token in leases).encode()).hexdigest()
    return f"poll:{leases[0][0]}:{len(leases)}:{digest[:24]}"


def store_job_id(feed_id: int, body_hash: str) -> str:
    return f"store:{feed_id}:{body_hash}"


async def enqueue_polls(redis: ArqRedis, leases: Sequence[tuple[int, str]]) -> bool:
    """Queue one poll job for a batch of leased feeds; False if it is already queued."""
    job = await redis.enqueue_job(
        POLL_JOB,
        [[feed_id, token] for feed_id, token in leases],
        _job_id=poll_job_id(leases),
        _queue_name=POLL_QUEUE,
    )
    return job is not None


async def enqueue_store(redis: ArqRedis, batch: dict[str, Any]) -> bool:
    job = await redis.enqueue_job(
        STORE_JOB,
        batch,
        _job_id=store_job_id(batch["feed_id"], batch["body_hash"]),
        _queue_name=STORE_QUEUE,
    )
    return job is not None


async def depth(redis: ArqRedis, queue_name: str) -> int:
    """Jobs queued, deferred or in progress on one queue."""
    return int(await redis.zcard(queue_name))
