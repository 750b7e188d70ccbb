"""Polling decisions: how often a feed is polled, when again after a poll, when to give up. Pure.

No I/O here: the values come from the feed's row, its document and its response, and
the answers go back to ``storage.schedule``, which only writes them. ``decide`` is the
decision after a poll; ``current_interval`` the one rule for which interval applies;
``poll_interval`` the interval a changed document suggests.
"""

from __future__ import annotations

import itertools
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from aggregator.errors import FeedError, HTTPStatusError
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


def seconds_until(http_date: str | None, now: datetime) -> float | None:
    """Seconds from ``now`` to an HTTP date (Retry-After, Expires); None if unreadable."""
    if not http_date:
        return None
    try:
        when = parsedate_to_datetime(http_date)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - now).total_seconds()


def current_interval(
    settings: Settings, *, override: float | None, computed: float | None
) -> float:
    """The one interval rule: the operator's override wins, then the interval last
    computed from the feed (``update_interval``), then the default."""
    return override or computed or settings.poll_interval


@dataclass(frozen=True, slots=True)
class Decision:
    """When a feed is polled next, and whether it is given up (the reason, or None)."""

    delay: float
    disable: str | None = None


def decide(
    settings: Settings,
    *,
    interval: float,
    failures: int = 0,
    failing_since: datetime | None = None,
    now: datetime | None = None,
    error: FeedError | None = None,
    rng: random.Random | None = None,
) -> Decision:
    """After a poll: a healthy feed (no ``error``) is due again after its jittered
    ``interval``; a failing one backs off from it (never sooner than a Retry-After asks),
    and is disabled when the server says it is gone or it failed long enough."""
    if error is None:
        return Decision(next_delay(settings, interval, rng=rng))
    retry_after = error.retry_after if isinstance(error, HTTPStatusError) else None
    delay = backoff_delay(settings, interval, failures, retry_after=retry_after, rng=rng)
    now = now or datetime.now(UTC)
    if isinstance(error, HTTPStatusError) and error.status == 410:
        return Decision(delay, "the server says the feed is gone for good (HTTP 410)")
    if should_disable(settings, failures, failing_since or now, now):
        since = (failing_since or now).strftime("%Y-%m-%d %H:%M UTC")
        return Decision(
            delay, f"failed {failures} times in a row since {since}; last error: {error}"
        )
    return Decision(delay)
