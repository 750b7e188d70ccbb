"""arq deliveries: queue a ``new_article`` job, then watch what its consumer did with it.

A consumer is any arq worker, ours or not, so nothing it does may lose a delivery
silently. Each delivery is queued together with an entry in the subscriber's
watch set (``aggregator:watch:NAME``, a sorted set scored by when to look next)
in one Redis transaction, so no queued delivery is ever unwatched. The watcher
then looks at the job's keys:

- the job or its in-progress key is there: still queued, retrying or running; look
  again later (sooner while it is young);
- a result that says success: forget it;
- a result that says failure (the consumer could not deserialize the job, the
  handler raised, no function ``new_article``, a timeout, tries exhausted): move the
  article to the subscriber's dead letters with the reason;
- nothing at all: the job expired unconsumed, or the consumer keeps no results
  (``keep_result=0``), or they expired before the daemon looked: a dead letter too.

Results are read with ``aggregator.storage.results`` (JSON, or pickle parsed inertly).
Moving an entry to the dead letters is one script that removes it from the watch
set first, so two watchers (the daemon and ``run --once``) dead-letter it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix, job_key_prefix, result_key_prefix
from arq.jobs import serialize_job
from redis.exceptions import WatchError

from aggregator import logs, metrics, queue
from aggregator.consumer import (
    DEAD_LETTER_LIMIT,
    DELIVERY_EXPIRES,
    NEW_ARTICLE_JOB,
    DeadLetter,
    check_name,
    dead_letter_key,
    queue_name,
)
from aggregator.reach import SERVICE_ERRORS
from aggregator.storage import results

log = logging.getLogger("aggregator.deliveries")

WATCH_PREFIX = "aggregator:watch:"
CHECK_BATCH = 100
# A young delivery is looked at again after half a second; an old one (a consumer
# that is down) at most every MAX_RECHECK seconds: age / 10 in between.
MIN_RECHECK = 0.5
MAX_RECHECK = 10.0
NAMES_REFRESH = 5.0

# KEYS: watch set, dead letters. ARGV: member, entry, limit. 1 if this call moved it.
_DEAD_LETTER = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
    redis.call('RPUSH', KEYS[2], ARGV[2])
    redis.call('LTRIM', KEYS[2], -tonumber(ARGV[3]), -1)
    return 1
end
return 0
"""


def watch_key(subscriber: str) -> str:
    """The subscriber's deliveries whose outcome is not known yet."""
    return WATCH_PREFIX + check_name(subscriber)


@dataclass(frozen=True, slots=True)
class Watched:
    """A watch set member: ``"<article id> <queued at, ms> <job id>"``."""

    article_id: int
    queued_ms: int
    job_id: str

    @property
    def member(self) -> str:
        return f"{self.article_id} {self.queued_ms} {self.job_id}"

    @classmethod
    def parse(cls, member: bytes | str) -> Watched:
        text = member.decode() if isinstance(member, bytes) else member
        article, queued, job_id = text.split(" ", 2)
        return cls(int(article), int(queued), job_id)


async def enqueue(redis: ArqRedis, subscriber: str, payload: dict[str, Any], job_id: str) -> bool:
    """Queue one ``new_article`` job and watch it; False if a job with this id is queued
    or finished (arq's own rule: the job key or its result exists)."""
    job_key = job_key_prefix + job_id
    async with redis.pipeline(transaction=True) as pipe:
        await pipe.watch(job_key)
        if await pipe.exists(job_key, result_key_prefix + job_id):
            await pipe.reset()  # type: ignore[no-untyped-call]
            return False
        now = int(time.time() * 1000)
        job = serialize_job(NEW_ARTICLE_JOB, (payload,), {}, None, now, serializer=queue.serialize)
        watched = Watched(int(payload["id"]), now, job_id)
        pipe.multi()  # type: ignore[no-untyped-call]
        pipe.psetex(job_key, int(DELIVERY_EXPIRES.total_seconds() * 1000), job)
        pipe.zadd(queue_name(subscriber), {job_id: now})
        pipe.zadd(watch_key(subscriber), {watched.member: now + int(MIN_RECHECK * 1000)})
        try:
            await pipe.execute()
        except WatchError:
            return False  # queued by someone else since the check
    return True


@dataclass
class Checked:
    delivered: int = 0
    dead: int = 0
    pending: list[Watched] = field(default_factory=list)

    def add(self, other: Checked) -> None:
        self.delivered += other.delivered
        self.dead += other.dead
        self.pending += other.pending


def _recheck_at(watched: Watched, now_ms: int) -> int:
    age = max(0.0, (now_ms - watched.queued_ms) / 1000)
    return now_ms + int(min(MAX_RECHECK, max(MIN_RECHECK, age / 10)) * 1000)


async def check(redis: ArqRedis, subscriber: str, deliveries: Sequence[Watched]) -> Checked:
    """Look at each delivery's job once: settle the finished ones, reschedule the rest."""
    done = Checked()
    for start in range(0, len(deliveries), CHECK_BATCH):
        done.add(await _check_batch(redis, subscriber, deliveries[start : start + CHECK_BATCH]))
    return done


async def _check_batch(redis: ArqRedis, subscriber: str, batch: Sequence[Watched]) -> Checked:
    queue_key = queue_name(subscriber)
    # One transaction: a consistent view (arq sets the result and deletes the job in one).
    async with redis.pipeline(transaction=True) as pipe:
        for w in batch:
            pipe.exists(job_key_prefix + w.job_id, in_progress_key_prefix + w.job_id)
            pipe.get(result_key_prefix + w.job_id)
            pipe.zscore(queue_key, w.job_id)
        replies = await pipe.execute()
    done = Checked()
    now_ms = int(time.time() * 1000)
    later: dict[str, int] = {}
    for index, w in enumerate(batch):
        running, result, score = replies[3 * index : 3 * index + 3]
        if running:
            done.pending.append(w)
            later[w.member] = _recheck_at(w, now_ms)
            continue
        if result is not None:
            outcome = results.read(result)
            if outcome.success:
                done.delivered += await redis.zrem(watch_key(subscriber), w.member)
                continue
            reason, tries = outcome.reason, outcome.tries
        elif score is not None:
            days = DELIVERY_EXPIRES.days
            reason, tries = f"expired: not consumed within {days} days", 0
        else:
            reason = (
                "vanished: no result (the consumer keeps no results, keep_result=0, "
                "or they expired before the daemon looked)"
            )
            tries = 0
        done.dead += await dead_letter(redis, subscriber, w, reason, tries)
    if later:
        await redis.zadd(watch_key(subscriber), later, xx=True)
    return done


async def dead_letter(
    redis: ArqRedis, subscriber: str, watched: Watched, reason: str, tries: int
) -> int:
    """Move a watched delivery to the dead letters; 1 if this call moved it."""
    entry = DeadLetter(
        article_id=watched.article_id,
        job_id=watched.job_id,
        tries=tries,
        error=reason[:1000],
        failed_at=datetime.now(UTC),
    )
    moved = await redis.eval(  # type: ignore[misc]
        _DEAD_LETTER,
        2,
        watch_key(subscriber),
        dead_letter_key(subscriber),
        watched.member,
        entry.model_dump_json(),
        str(DEAD_LETTER_LIMIT),
    )
    if moved:
        metrics.DELIVERIES_FAILED.labels(subscriber=subscriber).inc()
        log.warning("%s: article %d dead-lettered: %s", subscriber, watched.article_id, reason)
    return int(moved)


async def due(redis: ArqRedis, subscriber: str, *, limit: int = CHECK_BATCH) -> list[Watched]:
    """The deliveries that are due for a look now, oldest first."""
    now_ms = int(time.time() * 1000)
    members = await redis.zrangebyscore(watch_key(subscriber), "-inf", now_ms, start=0, num=limit)
    return await _parse_members(redis, subscriber, members)


async def _parse_members(redis: ArqRedis, subscriber: str, members: list[bytes]) -> list[Watched]:
    """The members as deliveries; one that is not ours (written by hand) is dropped, logged."""
    found = []
    for member in members:
        try:
            found.append(Watched.parse(member))
        except ValueError:
            log.warning("%s: dropping a watch entry that is not a delivery: %r", subscriber, member)
            await redis.zrem(watch_key(subscriber), member)
    return found


async def watch_once(redis: ArqRedis, names: Iterable[str], *, max_batches: int = 50) -> Checked:
    """One pass of the daemon's watcher over the arq subscribers ``names``."""
    done = Checked()
    for name in names:
        for _ in range(max_batches):
            batch = await due(redis, name)
            if not batch:
                break
            done.add(await check(redis, name, batch))
    return done


_ARQ_SUBSCRIBERS = "SELECT name FROM subscribers WHERE kind = 'arq' ORDER BY name"


async def arq_subscribers(pool: asyncpg.Pool | asyncpg.Connection) -> list[str]:
    return [r["name"] for r in await pool.fetch(_ARQ_SUBSCRIBERS)]


async def watch_forever(
    pool: asyncpg.Pool, redis: ArqRedis, stop: asyncio.Event, *, interval: float = 0.5
) -> None:
    """The daemon's watcher: a pass every ``interval`` seconds until ``stop``. The list of
    subscribers is read again every ``NAMES_REFRESH`` seconds: a new one's deliveries
    wait that long at most, and the pool is not asked for a connection twice a second."""
    outage = logs.Outage(log, "delivery watcher")
    names: list[str] = []
    names_at = -NAMES_REFRESH
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        try:
            if loop.time() - names_at >= NAMES_REFRESH:
                names, names_at = await arq_subscribers(pool), loop.time()
            await watch_once(redis, names)
            outage.succeeded()
        except (*SERVICE_ERRORS, asyncpg.PostgresError) as exc:
            outage.failed(exc, "deliveries stay watched, retrying")
        except Exception:  # a bug must not stop the daemon; the watch set keeps everything
            log.exception("delivery watcher pass failed; retrying")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


@dataclass(frozen=True, slots=True)
class Settled:
    delivered: int  # deliveries of the run its consumers took
    dead: int  # ... that went to the dead letters
    waiting: int  # ... still queued or running when the wait ended


async def settle(
    pool: asyncpg.Pool,
    redis: ArqRedis,
    *,
    since_ms: int,
    timeout: float,
    quiet: float = 2.0,
) -> Settled:
    """For ``run --once``: wait for the outcome of every delivery queued since
    ``since_ms``, until each is known, or nothing changed for ``quiet`` seconds (no
    consumer is taking them), or ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    waiting: dict[str, list[Watched]] = {}
    for name in await arq_subscribers(pool):
        members = await redis.zrange(watch_key(name), 0, -1)
        mine = [w for w in await _parse_members(redis, name, members) if w.queued_ms >= since_ms]
        if mine:
            waiting[name] = mine
    total = Checked()
    last_change = loop.time()
    while waiting:
        changed = False
        for name in list(waiting):
            checked = await check(redis, name, waiting[name])
            if checked.delivered or checked.dead or len(checked.pending) < len(waiting[name]):
                changed = True
            total.delivered += checked.delivered
            total.dead += checked.dead
            if checked.pending:
                waiting[name] = checked.pending
            else:
                del waiting[name]
        now = loop.time()
        if changed:
            last_change = now
        if not waiting or now - last_change > quiet or now > deadline:
            break
        await asyncio.sleep(0.1)
    return Settled(total.delivered, total.dead, sum(len(v) for v in waiting.values()))
