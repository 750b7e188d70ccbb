"""The outbox: new articles recorded with their store transaction, relayed to subscribers.

``record_arrivals`` runs inside ``store_batch``'s transaction: one outbox row per
new article, and one NOTIFY on ``aggregator_new_article`` per article (Postgres
delivers it on commit). The rows are inserted under a lock held to commit (a row
lock, see aggregator.storage.locks), so outbox ids are handed out and committed in the same
order: ``outbox.id`` increases in commit order, and a reader that has seen id N has
seen every id below.

``relay_once`` takes the oldest pending rows, queues one ``new_article`` job per
matching subscriber with a deterministic job id, and marks the rows sent in the
transaction that read them, after the jobs are queued. A crash in between leaves
the rows pending; the next pass queues them again and arq refuses the duplicate
ids. One relay runs at a time (another lock), so every subscriber's queue
receives its articles in commit order.

``follow`` is the SQL side: it pages through arrivals by cursor, woken by NOTIFY
(``aggregator tail``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from arq.connections import ArqRedis

from aggregator import logs
from aggregator.reach import SERVICE_ERRORS
from aggregator.storage import locks, subscribers

log = logging.getLogger("aggregator.outbox")

CHANNEL = "aggregator_new_article"
RELAY_BATCH = 500

_INSERT_ARRIVALS = """
WITH arrived AS (
    INSERT INTO outbox (article_id)
    SELECT id FROM unnest($1::bigint[]) AS t(id) ORDER BY id
    RETURNING article_id
)
SELECT count(pg_notify('aggregator_new_article', article_id::text)) FROM arrived
"""


async def record_arrivals(conn: asyncpg.Connection, article_ids: Sequence[int]) -> None:
    """Inside the store transaction, as its last statements: outbox rows and NOTIFY for
    the newly inserted articles. The lock waits for earlier arrivals to commit; keeping
    this last keeps that wait short."""
    if not article_ids:
        return
    await _lock_arrivals(conn)
    await conn.fetchval(_INSERT_ARRIVALS, sorted(article_ids))


async def _lock_arrivals(conn: asyncpg.Connection) -> None:
    """Wait for earlier arrivals to commit; hold until this transaction commits, so the
    outbox ids it takes commit after every smaller one."""
    await locks.hold(conn, locks.ARRIVALS)


async def _try_lock_relay(conn: asyncpg.Connection) -> bool:
    """The relay pass, until this transaction ends, unless another relay has it."""
    return await locks.try_hold(conn, locks.RELAY)


@dataclass(frozen=True, slots=True)
class RelayPass:
    rows: int  # outbox rows marked sent
    queued: int  # jobs queued now
    already_queued: int  # jobs a crashed pass had queued (refused by their job id)


_PENDING = f"""
WITH pending AS (
    SELECT id, article_id, created_at FROM outbox
    WHERE sent_at IS NULL ORDER BY id LIMIT $1
)
SELECT p.id, p.article_id, s.name AS subscriber
FROM pending p
JOIN articles a ON a.id = p.article_id
-- A subscriber receives the articles that arrived after it was added.
LEFT JOIN subscribers s ON s.created_at <= p.created_at AND {subscribers.MATCHES}
ORDER BY p.id, s.name
"""

_MARK_SENT = "UPDATE outbox SET sent_at = now() WHERE id = ANY ($1::bigint[])"


async def relay_once(
    pool: asyncpg.Pool, redis: ArqRedis, *, batch: int = RELAY_BATCH
) -> RelayPass | None:
    """Relay up to ``batch`` pending rows; None if another relay is running a pass."""
    async with pool.acquire() as conn, conn.transaction():
        if not await _try_lock_relay(conn):
            return None
        rows = await conn.fetch(_PENDING, batch)
        if not rows:
            return RelayPass(0, 0, 0)
        deliveries = [r for r in rows if r["subscriber"] is not None]
        queued = await subscribers.deliver(conn, redis, deliveries)
        sent = sorted({r["id"] for r in rows})
        await conn.execute(_MARK_SENT, sent)
    if deliveries:
        log.debug("relayed %d articles: %d jobs queued", len(sent), queued)
    return RelayPass(len(sent), queued, len(deliveries) - queued)


async def pending(conn: asyncpg.Connection | asyncpg.Pool) -> int:
    """Outbox rows not relayed yet."""
    count: int = await conn.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
    return count


async def drain(pool: asyncpg.Pool, redis: ArqRedis, *, timeout: float) -> None:
    """Relay until nothing is pending (another process's relay may do part of it)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        done = await relay_once(pool, redis)
        if done is not None and done.rows == 0:
            return
        if done is None and not await pending(pool):
            return
        if loop.time() > deadline:
            raise TimeoutError(f"outbox not drained after {timeout:.0f}s")
        if done is None:
            await asyncio.sleep(0.05)


async def relay_forever(
    pool: asyncpg.Pool, redis: ArqRedis, stop: asyncio.Event, *, interval: float
) -> None:
    """The daemon's relay: a pass every ``interval`` seconds (at once while a backlog
    remains) until ``stop``. A failed pass is logged and retried: rows stay pending."""
    outage = logs.Outage(log, "outbox relay")
    while not stop.is_set():
        try:
            done = await relay_once(pool, redis)
            outage.succeeded()
            if done is not None and done.rows == RELAY_BATCH:
                continue
        except (*SERVICE_ERRORS, asyncpg.PostgresError) as exc:
            outage.failed(exc, "rows stay pending, retrying")
        except Exception:  # a bug must not stop ingestion; the rows wait for a fix
            log.exception("outbox relay pass failed; rows stay pending, retrying")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


# --- following arrivals (aggregator tail) -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Arrival:
    cursor: int  # outbox.id
    article_id: int
    title: str
    canonical_url: str | None
    region: str | None
    language: str | None
    published_at: datetime


_ARRIVALS = """
SELECT o.id AS cursor, a.id AS article_id, a.title, a.canonical_url, a.region, a.language,
       a.published_at
FROM outbox o JOIN articles a ON a.id = o.article_id
WHERE o.id > $1 AND ($2::text IS NULL OR a.region = $2)
ORDER BY o.id
LIMIT $3
"""

_BACKLOG_START = """
SELECT COALESCE(min(id) - 1, (SELECT COALESCE(max(id), 0) FROM outbox))
FROM (SELECT o.id FROM outbox o JOIN articles a ON a.id = o.article_id
      WHERE ($1::text IS NULL OR a.region = $1)
      ORDER BY o.id DESC LIMIT $2) AS last
"""


async def follow(
    conn: asyncpg.Connection,
    stop: asyncio.Event,
    *,
    region: str | None = None,
    backlog: int = 0,
    recheck: float = 10.0,
    on_ready: Callable[[], object] | None = None,
) -> AsyncIterator[Arrival]:
    """The last ``backlog`` arrivals, then each new one as it commits, until ``stop``.

    NOTIFY only wakes the reader; the cursor query decides what is new, so a missed
    notification delays an article by at most ``recheck`` seconds and never loses it.
    ``on_ready`` is called once listening: anything committed later will be yielded."""
    wake = asyncio.Event()

    def notified(*_: object) -> None:
        wake.set()

    await conn.add_listener(CHANNEL, notified)
    try:
        cursor: int = await conn.fetchval(_BACKLOG_START, region, backlog)
        if on_ready is not None:
            on_ready()
        while not stop.is_set():
            wake.clear()
            rows = await conn.fetch(_ARRIVALS, cursor, region, RELAY_BATCH)
            for row in rows:
                cursor = row["cursor"]
                yield Arrival(**dict(row))
            if len(rows) == RELAY_BATCH:
                continue
            waiters = [asyncio.ensure_future(e.wait()) for e in (wake, stop)]
            try:
                await asyncio.wait(waiters, timeout=recheck, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
    finally:
        # A pooled connection must go back without our listener (asyncpg warns otherwise).
        if not conn.is_closed():
            await conn.remove_listener(CHANNEL, notified)
