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

import itertools
import random
import statistics
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from aggregator.errors import FeedError, HTTPStatusError
from aggregator.feeds import Feed
from aggregator.fetch import seconds_until
from aggregator.settings import Settings

JITTER = 0.1
# Jitter spreads feeds added together, but every second of it is a second of staleness:
# capped so a story is queryable within the poll interval plus a couple of seconds.
MAX_JITTER_SECONDS = 1.0
_SY_PERIODS = {
    "hourly": 3600,
    "daily": 86400,
    "weekly": 604800,
    "monthly": 2592000,
    "yearly": 31536000,
}
_RATE_SAMPLE = 10  # newest items whose publishing gaps estimate the feed's rate


# --- pure decisions ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hints:
    """How often the publisher and server say the feed may change, in seconds."""

    ttl: float | None = None  # RSS <ttl>, minutes in the document
    syndication: float | None = None  # sy:updatePeriod / sy:updateFrequency
    cache: float | None = None  # Cache-Control max-age, or Expires

    @property
    def slowest(self) -> float | None:
        known = [h for h in (self.ttl, self.syndication, self.cache) if h]
        return max(known) if known else None


def hints_from(
    *,
    ttl: str | None = None,
    update_period: str | None = None,
    update_frequency: str | None = None,
    cache_control: str | None = None,
    expires: str | None = None,
    now: datetime | None = None,
) -> Hints:
    return Hints(
        ttl=_positive(ttl, scale=60),
        syndication=_syndication(update_period, update_frequency),
        cache=_max_age(cache_control) or _expires_in(expires, now or datetime.now(UTC)),
    )


def _positive(value: str | None, *, scale: float = 1) -> float | None:
    try:
        number = float(value) if value is not None else 0
    except ValueError:
        return None
    return number * scale if number > 0 else None


def _syndication(period: str | None, frequency: str | None) -> float | None:
    seconds = _SY_PERIODS.get((period or "").strip().lower())
    if seconds is None:
        return None
    per_period = _positive(frequency) or 1
    return seconds / per_period


def _max_age(cache_control: str | None) -> float | None:
    for directive in (cache_control or "").split(","):
        name, _, value = directive.strip().partition("=")
        if name.lower() == "max-age":
            return _positive(value.strip('"'))
    return None


def _expires_in(expires: str | None, now: datetime) -> float | None:
    seconds = seconds_until(expires, now)
    return seconds if seconds is not None and seconds > 0 else None


def observed_interval(published: Sequence[datetime]) -> float | None:
    """The feed's typical gap between new items, from its newest items' publish times."""
    times = sorted(set(published), reverse=True)[:_RATE_SAMPLE]
    if len(times) < 3:
        return None
    gaps = [(a - b).total_seconds() for a, b in itertools.pairwise(times)]
    return statistics.median(gaps)


def poll_interval(
    settings: Settings, *, override: float | None, hints: Hints, observed: float | None
) -> float:
    """Seconds between polls of a healthy feed, before jitter, within the settings' bounds.

    An operator's override wins. Otherwise the feed is polled about as often as it
    publishes, but never more often than its publisher or server asks."""
    if override:
        interval = override
    else:
        interval = observed if observed else settings.poll_interval
        if hints.slowest:
            interval = max(interval, hints.slowest)
    return min(max(interval, settings.min_interval), settings.max_interval)


def next_delay(settings: Settings, interval: float, *, rng: random.Random | None = None) -> float:
    """The interval stretched by up to 10% (at most a second) so feeds added together
    drift apart."""
    low = min(max(interval, settings.min_interval), settings.max_interval)
    high = max(low, min(low + min(low * JITTER, MAX_JITTER_SECONDS), settings.max_interval))
    return (rng or random).uniform(low, high)


def backoff_delay(
    settings: Settings,
    interval: float,
    failures: int,
    *,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Seconds until retrying a feed that failed ``failures`` times in a row: doubling from
    its interval, jittered, capped; never sooner than a Retry-After asks."""
    base = min(max(interval, settings.min_interval), settings.max_interval)
    delay: float = min(base * 2 ** max(failures - 1, 0), settings.max_backoff)
    delay *= (rng or random).uniform(1, 1 + JITTER)
    if retry_after is not None:
        delay = max(delay, min(retry_after, settings.max_backoff))
    return delay


def should_disable(
    settings: Settings, failures: int, failing_since: datetime | None, now: datetime
) -> bool:
    """Give up on a feed after many failures in a row that also span a minimum time."""
    if failures < settings.disable_after_failures or failing_since is None:
        return False
    return (now - failing_since).total_seconds() >= settings.disable_after_seconds


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

# A successful poll. Validators only ever advance here when there was nothing to store
# (otherwise the store transaction advances them); NULL keeps what is there. A queued
# store batch is remembered ($9) until it commits, unless it already has.
_RECORD_OK = f"""
UPDATE feeds SET
    {_LEASE_HELD},
    pending_body_hash = CASE WHEN $9::text IS NULL OR last_body_hash = $9 THEN pending_body_hash
                             ELSE $9 END,
    next_poll_at = now() + make_interval(secs => $2),
    update_interval = $3,
    last_polled_at = now(),
    last_success_at = now(),
    error_count = 0,
    failing_since = NULL,
    last_error = NULL,
    last_error_kind = NULL,
    title = COALESCE(title, $4),
    site_url = COALESCE(site_url, $5),
    etag = COALESCE($6, etag),
    last_modified = COALESCE($7, last_modified),
    last_body_hash = COALESCE($8, last_body_hash)
WHERE id = $1 AND lease_token = $10
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
        delay = next_delay(self.settings, interval)
        names = ("title", "site_url", "etag", "last_modified", "body_hash", "queued_body_hash")
        values_ = (values.get(name) for name in names)
        return (feed.id, delay, interval, *values_, self.tokens.get(feed.id))

    def failure(self, feed: Feed, error: FeedError, *, now: datetime) -> str | None:
        """Count the failure, back off, and disable the feed when it is time; return why if so."""
        settings = self.settings
        failures = feed.error_count + 1
        retry_after = error.retry_after if isinstance(error, HTTPStatusError) else None
        interval = feed.update_interval or feed.poll_interval or settings.poll_interval
        delay = backoff_delay(settings, interval, failures, retry_after=retry_after)
        reason = None
        if isinstance(error, HTTPStatusError) and error.status == 410:
            reason = "the server says the feed is gone for good (HTTP 410)"
        elif should_disable(settings, failures, feed.failing_since or now, now):
            since = (feed.failing_since or now).strftime("%Y-%m-%d %H:%M UTC")
            reason = f"failed {failures} times in a row since {since}; last error: {error}"
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
            for statement, rows in (
                (_RECORD_OK, self._ok),
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
