"""Recovery: after a fault clears, every affected feed is polled again within seconds.

A lease (see ``schedule``) already guarantees that a lost poll is retried, but only
a lease length (300 s) later. Three faults lose polls, and each is undone here
without waiting for that:

- **A poll interrupted by a service error** (Postgres or Redis away): the process
  running it knows the feed, so it gives the lease back (``LeaseHolder.give_back``),
  at once or, if Postgres is the one away, as soon as it answers again.
- **A process that dies** (SIGKILL, the OOM killer): every process beats
  (``processes.heartbeat_at``) and leases name the process holding them. Leases of
  a process that missed a few beats are released by a live one, and the store jobs
  it was running are handed back to arq at once instead of after their timeout.
- **A Redis that restarted empty**: the queued poll and store jobs are gone. An
  epoch key that vanished says so; a process that notices releases every lease
  taken before the new epoch whose job was queued, and makes due every feed whose
  store batch was queued but never committed (``feeds.pending_body_hash``).

The lease stays as the last resort. Correctness does not depend on any of this:
a released lease's old job claims nothing, a poll whose lease was taken back
records nothing (its claim token no longer matches), and validators advance
only in the store transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg
from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix

from aggregator import logs
from aggregator.reach import SERVICE_ERRORS
from aggregator.storage import schedule

log = logging.getLogger("aggregator.recovery")

BEAT_SECONDS = 2.0
# A process is presumed dead after this long without a beat (five missed beats), and
# only by a process that has itself beaten for as long: after a Postgres outage nobody
# could beat, and nobody is dead for that.
DEAD_AFTER_SECONDS = 10.0
EPOCH_KEY = "aggregator:epoch"


def jobs_key(process_id: uuid.UUID) -> str:
    """The Redis set of arq job ids a process is running (store jobs)."""
    return f"aggregator:process:{process_id}:jobs"


@dataclass
class LeaseHolder:
    """This process as a holder of leases: its id, and the leases it owes back."""

    id: uuid.UUID = field(default_factory=uuid.uuid4)
    owed: dict[int, str] = field(default_factory=dict)  # feed id -> lease token
    beating_since: datetime | None = None  # Postgres' clock, start of the current streak
    epoch: str | None = None  # the Redis epoch this process last saw

    async def give_back(self, pool: asyncpg.Pool, leases: Sequence[tuple[int, str]]) -> None:
        """Release leases of interrupted polls now, or once Postgres answers again."""
        self.owed.update(leases)
        await self.settle(pool)

    async def settle(self, pool: asyncpg.Pool) -> int:
        """Release what is owed; keep it owed if Postgres is still away."""

        if not self.owed:
            return 0
        owed = list(self.owed.items())
        try:
            released = await schedule.release(pool, owed)
        except SERVICE_ERRORS:
            return 0
        for feed_id, token in owed:
            if self.owed.get(feed_id) == token:
                del self.owed[feed_id]
        if released:
            log.info("gave back %d leases of interrupted polls: due again now", released)
        return released


_BEAT = """
INSERT INTO processes (id, host, pid) VALUES ($1, $2, $3)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = now()
RETURNING now() AS now
"""

# Dead: no beat for DEAD_AFTER. The rows are taken (deleted) in the transaction that
# releases their leases, so two live processes never reap the same one twice.
_REAP = """
WITH dead AS (
    DELETE FROM processes
    WHERE heartbeat_at < now() - make_interval(secs => $1) AND id <> $2
    RETURNING id
), released AS (
    UPDATE feeds f SET lease_token = NULL, lease_owner = NULL, lease_claimed = false,
        next_poll_at = now() + make_interval(secs => random() * $3)
    FROM dead WHERE f.lease_owner = dead.id
    RETURNING f.id
)
SELECT (SELECT array_agg(id) FROM dead) AS dead, (SELECT count(*) FROM released) AS released
"""

# Redis came back empty: the jobs of the leases taken before it did ($2: when its new
# epoch began; $3: the lease length) are gone, and so are the store batches that were
# queued and not yet committed. Leases taken since hold jobs in the new Redis.
_REDIS_LOST = """
WITH released AS (
    UPDATE feeds SET lease_token = NULL, lease_owner = NULL, lease_claimed = false,
        next_poll_at = now() + make_interval(secs => random() * $1)
    WHERE lease_token IS NOT NULL AND NOT lease_claimed
        AND next_poll_at < to_timestamp($2) + make_interval(secs => $3)
    RETURNING id
), unstored AS (
    UPDATE feeds SET next_poll_at = now() + make_interval(secs => random() * $1)
    WHERE pending_body_hash IS NOT NULL AND lease_token IS NULL AND NOT disabled
        AND next_poll_at > now() + make_interval(secs => $1)
    RETURNING id
)
SELECT (SELECT count(*) FROM released) AS released, (SELECT count(*) FROM unstored) AS unstored
"""


async def beat(pool: asyncpg.Pool, holder: LeaseHolder) -> None:

    try:
        now = await pool.fetchval(_BEAT, holder.id, socket.gethostname(), os.getpid())
    except SERVICE_ERRORS:
        holder.beating_since = None
        raise
    if holder.beating_since is None:
        holder.beating_since = now


async def reap(pool: asyncpg.Pool, redis: ArqRedis, holder: LeaseHolder) -> list[uuid.UUID]:
    """Release the leases of processes that stopped beating, and hand their store jobs
    back to arq; return the dead processes' ids."""
    async with pool.acquire() as conn:
        now = await conn.fetchval("SELECT now()")
        streak = holder.beating_since
        if streak is None or (now - streak).total_seconds() < DEAD_AFTER_SECONDS:
            return []
        row = await conn.fetchrow(
            _REAP, DEAD_AFTER_SECONDS, holder.id, schedule.RELEASE_JITTER_SECONDS
        )
    dead: list[uuid.UUID] = list(row["dead"] or [])
    handed = 0
    for process_id in dead:
        key = jobs_key(process_id)
        job_ids = [j.decode() for j in await redis.smembers(key)]  # type: ignore[misc]
        if job_ids:
            # arq reruns a job whose worker died only once its in-progress key expires
            # (the job timeout + 10 s); without the key a live worker picks it up now.
            handed += await redis.delete(*(in_progress_key_prefix + j for j in job_ids))
        await redis.delete(key)
    if dead:
        # A peer that stopped cleanly is "dead" too: worth a warning only if it left work.
        log.log(
            logging.WARNING if row["released"] or handed else logging.INFO,
            "%d processes stopped beating: released %d of their leases, %d of their jobs handed on",
            len(dead),
            row["released"],
            handed,
        )
    return dead


async def check_redis(
    pool: asyncpg.Pool, redis: ArqRedis, holder: LeaseHolder, lease_seconds: float
) -> bool:
    """Notice a Redis that lost its data: the epoch key this process saw is gone or
    replaced. Then release what the old Redis held; True if so.

    The epoch records when it began (Postgres' clock), so of several processes that
    notice, the first releases the old leases and the others find none left: a lease
    taken after the restart has its job in the new Redis. A process that never saw an
    epoch (just started) only records one: the leases of processes that went down with
    Redis are released by their missed beats."""
    epoch = await redis.get(EPOCH_KEY)
    if epoch is None:
        began = await pool.fetchval("SELECT extract(epoch FROM now())::float8")
        await redis.set(EPOCH_KEY, f"{uuid.uuid4().hex} {began}", nx=True)
        epoch = await redis.get(EPOCH_KEY)
    seen = epoch.decode() if epoch is not None else None
    lost = holder.epoch is not None and seen is not None and seen != holder.epoch
    if lost and seen is not None:
        began = float(seen.partition(" ")[2] or 0)
        row = await pool.fetchrow(
            _REDIS_LOST, schedule.RELEASE_JITTER_SECONDS, began, lease_seconds
        )
        if row["released"] or row["unstored"]:
            log.warning(
                "Redis lost its data (its epoch key is gone): released %d leases whose poll "
                "jobs were queued there; %d feeds with unstored batches due again now",
                row["released"],
                row["unstored"],
            )
    holder.epoch = seen
    return lost


async def beat_forever(
    pool: asyncpg.Pool,
    redis: ArqRedis,
    holder: LeaseHolder,
    stop: asyncio.Event,
    lease_seconds: float,
) -> None:
    """Beat, settle owed leases, notice dead processes and an emptied Redis: every
    couple of seconds until ``stop``; then say this process is gone."""

    postgres = logs.Outage(log, "heartbeat")
    try:
        while not stop.is_set():
            try:
                await beat(pool, holder)
                await holder.settle(pool)
                await check_redis(pool, redis, holder, lease_seconds)
                await reap(pool, redis, holder)
                postgres.succeeded()
            except SERVICE_ERRORS as exc:
                postgres.failed(exc, "leases will be recovered when it is back")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), BEAT_SECONDS)
    finally:
        await asyncio.shield(_gone(pool, holder))


async def _gone(pool: asyncpg.Pool, holder: LeaseHolder) -> None:
    """A process that stops cleanly is dead at once: any lease it still holds (a poll
    queued but not yet taken) is released by the next live process's beat."""

    with contextlib.suppress(*SERVICE_ERRORS):
        await holder.settle(pool)
        await pool.execute(
            "UPDATE processes SET heartbeat_at = '-infinity' WHERE id = $1", holder.id
        )


@contextlib.asynccontextmanager
async def beating(
    pool: asyncpg.Pool, redis: ArqRedis, holder: LeaseHolder, lease_seconds: float
) -> AsyncIterator[None]:
    """``beat_forever`` for as long as the block runs (a daemon, a standalone worker).

    The first beat comes before the block: leases naming this process are only
    recoverable once its row exists."""

    with contextlib.suppress(*SERVICE_ERRORS):
        await beat(pool, holder)
    stop = asyncio.Event()
    task = asyncio.create_task(beat_forever(pool, redis, holder, stop, lease_seconds))
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(task, return_exceptions=True)
