"""Schedule: when each feed is polled next, and leases so a feed is polled once per due time.

The decisions are pure functions: ``poll_interval`` (from the publisher's
hints and the observed publishing rate), ``next_delay`` (jittered, bounded)
and ``backoff_delay`` (failures). The SQL leases due feeds with
``FOR UPDATE SKIP LOCKED`` and records each poll's outcome on the feed's row.

A lease moves ``next_poll_at`` a lease length ahead and stores a token that
the poll job must present to claim the feed. If the job is lost (a crashed
daemon, a Redis restart without persistence) the feed simply becomes due
again; if a stale copy of the job runs later, its token no longer matches and
it does nothing. So any number of schedulers poll each feed once per due time.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from aggregator.errors import FeedError
from aggregator.polling import current_interval, decide
from aggregator.settings import Settings
from aggregator.storage.feeds import Feed

# --- leases -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Lease:
    feed_id: int
    due_at: datetime
    token: str


_LEASE_DUE = """
WITH due AS (
    SELECT id, next_poll_at FROM feeds
    WHERE NOT disabled AND next_poll_at <= now()
    ORDER BY next_poll_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
UPDATE feeds f
SET next_poll_at = now() + make_interval(secs => $2), lease_token = gen_random_uuid(),
    lease_owner = $3, lease_claimed = false
FROM due WHERE f.id = due.id
RETURNING f.id, due.next_poll_at, f.lease_token::text
"""

_LEASE_ALL = """
WITH active AS (
    SELECT id FROM feeds WHERE NOT disabled ORDER BY id FOR UPDATE SKIP LOCKED
)
UPDATE feeds f
SET next_poll_at = now() + make_interval(secs => $1), lease_token = gen_random_uuid(),
    lease_owner = $2, lease_claimed = false
FROM active WHERE f.id = active.id
RETURNING f.id, now() AS next_poll_at, f.lease_token::text
"""

# The claim swaps the scheduler's token for one only this poll knows: its outcome is
# recorded only while the feed still holds that token, so a poll whose lease was taken
# back (its process presumed dead, its Redis lost) reports into nothing.
_CLAIM = """
UPDATE feeds f SET lease_token = gen_random_uuid(), lease_owner = $4, lease_claimed = true,
    next_poll_at = now() + make_interval(secs => $3)
FROM unnest($1::bigint[], $2::uuid[]) AS lease(id, token)
WHERE f.id = lease.id AND f.lease_token = lease.token AND NOT f.disabled
RETURNING f.*, f.lease_token::text AS claim_token
"""

# A lease given back: due again at once, spread over a few seconds.
RELEASE_JITTER_SECONDS = 3.0
_RELEASE = """
UPDATE feeds f SET lease_token = NULL, lease_owner = NULL, lease_claimed = false,
    next_poll_at = now() + make_interval(secs => random() * $3)
FROM unnest($1::bigint[], $2::uuid[]) AS lease(id, token)
WHERE f.id = lease.id AND f.lease_token = lease.token
"""


async def lease_due(
    pool: asyncpg.Pool, settings: Settings, owner: uuid.UUID | None = None
) -> list[Lease]:
    rows = await pool.fetch(_LEASE_DUE, settings.scheduler_batch, settings.lease_seconds, owner)
    return [Lease(r["id"], r["next_poll_at"], r["lease_token"]) for r in rows]


async def lease_all(
    pool: asyncpg.Pool, settings: Settings, owner: uuid.UUID | None = None
) -> list[Lease]:
    """Every active feed, due or not (``run --once``)."""
    rows = await pool.fetch(_LEASE_ALL, settings.lease_seconds, owner)
    return [Lease(r["id"], r["next_poll_at"], r["lease_token"]) for r in rows]


_LEASE_THESE = """
WITH these AS (
    SELECT id FROM feeds WHERE id = ANY($1::bigint[]) AND NOT disabled
    ORDER BY id FOR UPDATE SKIP LOCKED
)
UPDATE feeds f
SET next_poll_at = now() + make_interval(secs => $2), lease_token = gen_random_uuid(),
    lease_owner = $3, lease_claimed = false
FROM these WHERE f.id = these.id
RETURNING f.id, now() AS next_poll_at, f.lease_token::text
"""


async def lease_these(
    pool: asyncpg.Pool, settings: Settings, feed_ids: Sequence[int], owner: uuid.UUID | None
) -> list[Lease]:
    """These active feeds, due or not (``run --once`` again for those it had to defer)."""
    rows = await pool.fetch(_LEASE_THESE, list(feed_ids), settings.lease_seconds, owner)
    return [Lease(r["id"], r["next_poll_at"], r["lease_token"]) for r in rows]


async def claim(
    pool: asyncpg.Pool,
    settings: Settings,
    leases: Sequence[tuple[int, str]],
    owner: uuid.UUID | None = None,
) -> list[tuple[Feed, str]]:
    """Take the leased feeds for this poll, in one statement; return each with the token
    its outcome is recorded under. A stale lease (polled, re-leased, disabled or removed
    since) claims nothing: its feed is not returned."""
    rows = await pool.fetch(
        _CLAIM,
        [feed_id for feed_id, _ in leases],
        [token for _, token in leases],
        settings.lease_seconds,
        owner,
    )
    return [(Feed.from_row(row), row["claim_token"]) for row in rows]


async def release(pool: asyncpg.Pool, leases: Sequence[tuple[int, str]]) -> int:
    """Give leases back (a poll interrupted by a service error): each feed whose lease
    is still this one is due again within a few seconds. Returns how many."""
    status = await pool.execute(
        _RELEASE,
        [feed_id for feed_id, _ in leases],
        [token for _, token in leases],
        RELEASE_JITTER_SECONDS,
    )
    return int(status.rsplit(" ", 1)[1])


# --- outcomes ---------------------------------------------------------------------------------


# Each outcome is written only while the feed holds the poll's claim token ($1 is the
# feed, the last parameter the token), and gives the lease up.
_LEASE_HELD = "lease_token = NULL, lease_owner = NULL, lease_claimed = false"

# Successful polls, one statement for all of a batch's (a statement per feed cost
# Postgres more than the rows did: a steady cycle is mostly these). Validators only ever
# advance here when there was nothing to store (otherwise the store transaction advances
# them); NULL keeps what is there. A queued store batch is remembered (``queued``) until it
# commits, unless it already has. Each row is written only while the feed holds the
# poll's claim token, and gives the lease up.
_RECORD_OK = f"""
UPDATE feeds f SET
    {_LEASE_HELD},
    pending_body_hash = CASE WHEN o.queued IS NULL OR f.last_body_hash = o.queued
                             THEN f.pending_body_hash ELSE o.queued END,
    next_poll_at = now() + make_interval(secs => o.delay),
    update_interval = o.update_interval,
    last_polled_at = now(),
    last_success_at = now(),
    error_count = 0,
    failing_since = NULL,
    last_error = NULL,
    last_error_kind = NULL,
    title = COALESCE(f.title, o.title),
    site_url = COALESCE(f.site_url, o.site_url),
    etag = COALESCE(o.etag, f.etag),
    last_modified = COALESCE(o.last_modified, f.last_modified),
    last_body_hash = COALESCE(o.body_hash, f.last_body_hash)
FROM unnest($1::bigint[], $2::float8[], $3::float8[], $4::text[], $5::text[], $6::text[],
            $7::text[], $8::text[], $9::text[], $10::uuid[])
     AS o(id, delay, update_interval, title, site_url, etag, last_modified, body_hash, queued,
          token)
WHERE f.id = o.id AND f.lease_token = o.token
"""

_RECORD_FAILURE = f"""
UPDATE feeds SET
    {_LEASE_HELD},
    error_count = error_count + 1,
    failing_since = COALESCE(failing_since, now()),
    last_polled_at = now(),
    last_error = $2,
    last_error_kind = $3,
    next_poll_at = now() + make_interval(secs => $4),
    disabled = disabled OR $5,
    disabled_at = CASE WHEN $5 THEN now() ELSE disabled_at END,
    disabled_reason = CASE WHEN $5 THEN $6 ELSE disabled_reason END
WHERE id = $1 AND lease_token = $7
"""

_DEFER = f"""
UPDATE feeds SET {_LEASE_HELD}, next_poll_at = now() + make_interval(secs => $2)
WHERE id = $1 AND lease_token = $3
"""

_RECORD_WARNING = "UPDATE feeds SET last_warning = $2 WHERE id = $1"

_RECORD_MOVE = """
UPDATE feeds SET
    moved_to = $2,
    moved_count = CASE WHEN moved_to IS NOT DISTINCT FROM $2 THEN moved_count + 1 ELSE 1 END
WHERE id = $1
RETURNING moved_count
"""

_FORGET_MOVE = (
    "UPDATE feeds SET moved_to = NULL, moved_count = 0 WHERE id = $1 AND moved_to IS NOT NULL"
)

_APPLY_MOVE = """
UPDATE feeds SET url = moved_to, moved_to = NULL, moved_count = 0
WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM feeds other WHERE other.url = $2)
RETURNING url
"""


class Recorder:
    """The outcomes of a batch of polls, written to their feeds' rows in one round trip
    per kind of outcome (``flush``) instead of one statement per feed.

    Until it is flushed nothing is recorded: if the flush never happens (the job is
    killed, Postgres goes away) each feed's claim has already made it due again a
    lease length later, with its validators where they were."""

    def __init__(self, settings: Settings, tokens: dict[int, str] | None = None) -> None:
        self.settings = settings
        self.tokens = tokens or {}  # each feed's claim token: only its holder records
        self._ok: list[tuple[object, ...]] = []
        self._failures: list[tuple[object, ...]] = []
        self._deferred: list[tuple[object, ...]] = []
        self._warnings: list[tuple[object, ...]] = []

    def success(
        self,
        feed: Feed,
        interval: float,
        *,
        title: str | None = None,
        site_url: str | None = None,
        queued_body_hash: str | None = None,
    ) -> None:
        """A poll whose articles went to the store queue; validators advance there."""
        self._ok.append(
            self._ok_row(
                feed, interval, title=title, site_url=site_url, queued_body_hash=queued_body_hash
            )
        )

    def unchanged(
        self,
        feed: Feed,
        interval: float,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        body_hash: str | None = None,
    ) -> None:
        """A poll with nothing to store: safe to advance validators here."""
        self._ok.append(
            self._ok_row(
                feed, interval, etag=etag, last_modified=last_modified, body_hash=body_hash
            )
        )

    def _ok_row(self, feed: Feed, interval: float, **values: str | None) -> tuple[object, ...]:
        """``_RECORD_OK``'s parameters; a value left out (None) keeps the row's."""
        delay = decide(self.settings, interval=interval).delay
        names = ("title", "site_url", "etag", "last_modified", "body_hash", "queued_body_hash")
        values_ = (values.get(name) for name in names)
        return (feed.id, delay, interval, *values_, self.tokens.get(feed.id))

    def failure(self, feed: Feed, error: FeedError, *, now: datetime) -> str | None:
        """Count the failure, back off, and disable the feed when it is time; return why if so."""
        failures = feed.error_count + 1
        interval = current_interval(
            self.settings, override=feed.poll_interval, computed=feed.update_interval
        )
        decision = decide(
            self.settings,
            interval=interval,
            failures=failures,
            failing_since=feed.failing_since or now,
            now=now,
            error=error,
        )
        delay, reason = decision.delay, decision.disable
        self._failures.append(
            (
                feed.id,
                str(error)[:1000],
                error.kind,
                delay,
                reason is not None,
                reason,
                self.tokens.get(feed.id),
            )
        )
        return reason

    def warning(self, feed: Feed, warning: str | None) -> None:
        """What the parse of a changed body dropped or worked around (None: nothing)."""
        if warning != feed.last_warning:
            self._warnings.append((feed.id, warning))

    def deferred(self, feed: Feed, delay: float) -> None:
        """Not polled after all (its host was busy): due again soon, no failure counted."""
        self._deferred.append((feed.id, delay, self.tokens.get(feed.id)))

    async def flush(self, pool: asyncpg.Pool) -> None:
        async with pool.acquire() as conn, conn.transaction():
            if self._ok:
                await conn.execute(_RECORD_OK, *map(list, zip(*self._ok, strict=True)))
            for statement, rows in (
                (_RECORD_FAILURE, self._failures),
                (_DEFER, self._deferred),
                (_RECORD_WARNING, self._warnings),
            ):
                if rows:
                    await conn.executemany(statement, rows)
        self._ok, self._failures, self._deferred, self._warnings = [], [], [], []


async def record_redirect(
    pool: asyncpg.Pool, settings: Settings, feed: Feed, moved_to: str | None
) -> str | None:
    """Follow a permanent redirect once it has been seen on enough consecutive polls;
    return the new URL when the feed moved."""
    if moved_to is None or moved_to == feed.url:
        if feed.moved_to is not None:
            await pool.execute(_FORGET_MOVE, feed.id)
        return None
    count = await pool.fetchval(_RECORD_MOVE, feed.id, moved_to)
    if count < settings.redirect_confirmations:
        return None
    return await pool.fetchval(_APPLY_MOVE, feed.id, moved_to)  # type: ignore[no-any-return]
