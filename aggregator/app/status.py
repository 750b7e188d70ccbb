"""Status: feed health and per-region totals, for `aggregator status` (table or JSON).

A feed's state: ``ok`` (its last poll worked), ``new`` (not polled yet), ``failing``
(its last poll failed; it is retried with backoff) or ``disabled``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import asyncpg

from aggregator.app import columns
from aggregator.storage.feeds import Feed, FeedSummary

_FEEDS = """
SELECT f.id, f.url, f.title, f.region,
       CASE WHEN f.disabled THEN 'disabled' WHEN f.last_error IS NOT NULL THEN 'failing'
            WHEN f.last_polled_at IS NULL THEN 'new' ELSE 'ok' END AS state,
       f.last_success_at, f.last_error_kind, f.last_error, f.error_count, f.disabled_reason,
       f.last_warning,
       CASE WHEN f.disabled THEN NULL ELSE f.next_poll_at END AS next_poll_at,
       (SELECT count(*) FROM article_sources s
        WHERE s.feed_id = f.id AND s.seen_at > now() - interval '24 hours') AS articles_24h
FROM feeds f ORDER BY f.region NULLS LAST, f.id
"""

_REGIONS = """
SELECT COALESCE(f.region, '-') AS region, count(*) AS feeds,
       count(*) FILTER (WHERE NOT f.disabled AND f.last_error IS NULL
                        AND f.last_polled_at IS NOT NULL) AS ok,
       count(*) FILTER (WHERE NOT f.disabled AND f.last_error IS NULL
                        AND f.last_polled_at IS NULL) AS new,
       count(*) FILTER (WHERE NOT f.disabled AND f.last_error IS NOT NULL) AS failing,
       count(*) FILTER (WHERE f.disabled) AS disabled,
       COALESCE(sum((SELECT count(*) FROM article_sources s
                     WHERE s.feed_id = f.id AND s.seen_at > now() - interval '24 hours')),
                0)::bigint AS articles_24h
FROM feeds f GROUP BY 1 ORDER BY 1
"""


@dataclass(frozen=True)
class FeedHealth:
    id: int
    url: str
    title: str | None
    region: str | None
    state: str
    last_success_at: datetime | None
    last_error_kind: str | None
    last_error: str | None
    error_count: int
    disabled_reason: str | None
    last_warning: str | None
    next_poll_at: datetime | None
    articles_24h: int


@dataclass(frozen=True)
class RegionTotals:
    region: str
    feeds: int
    ok: int
    new: int  # never polled yet
    failing: int
    disabled: int
    articles_24h: int


async def collect(conn: asyncpg.Connection) -> tuple[list[FeedHealth], list[RegionTotals]]:
    feeds = [FeedHealth(**dict(r)) for r in await conn.fetch(_FEEDS)]
    regions = [RegionTotals(**dict(r)) for r in await conn.fetch(_REGIONS)]
    return feeds, regions


def as_json(feeds: list[FeedHealth], regions: list[RegionTotals]) -> dict[str, Any]:
    def plain(item: Any) -> dict[str, Any]:
        return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in asdict(item).items()}

    return {"feeds": [plain(f) for f in feeds], "regions": [plain(r) for r in regions]}


def render(feeds: list[FeedHealth], regions: list[RegionTotals], *, now: datetime) -> list[str]:
    """A table a terminal shows at a glance (columns measured in cells: see ``columns``)."""
    lines = [
        f"{'id':>5}  {'state':<8}  {'region':<10}  {'last ok':>8}  {'next':>8}  "
        f"{'24h':>4}  feed / problem"
    ]
    for f in feeds:
        problem = f.disabled_reason or (
            f"{f.last_error_kind}: {f.last_error}" if f.last_error else ""
        )
        if f.last_warning and not problem:
            problem = f"warning: {f.last_warning}"
        lines.append(
            f"{f.id:>5}  {f.state:<8}  {columns.left(f.region or '-', 10)}  "
            f"{_ago(f.last_success_at, now):>8}  {_until(f.next_poll_at, now):>8}  "
            f"{f.articles_24h:>4}  {columns.cut(f.title or f.url, 60)}"
            + (f"  [{columns.cut(problem, 80)}]" if problem else "")
        )
    lines.append("")
    lines.append(
        f"{'region':<12} {'feeds':>5} {'ok':>5} {'new':>5} {'failing':>7} {'disabled':>8} "
        f"{'24h':>6}"
    )
    for r in regions:
        lines.append(
            f"{columns.left(r.region, 12)} {r.feeds:>5} {r.ok:>5} {r.new:>5} {r.failing:>7} "
            f"{r.disabled:>8} {r.articles_24h:>6}"
        )
    return lines


FEED_TITLE_CELLS = 30


def feed_lines(feeds: Sequence[Feed | FeedSummary]) -> list[str]:
    """``aggregator feeds list``: a header, then one aligned line per feed."""
    lines = [
        f"{'id':>5}  {'state':<8}  {'region':<10}  {'lang':<4}  "
        f"{columns.left('title', FEED_TITLE_CELLS)}  url"
    ]
    for f in feeds:
        lines.append(
            f"{f.id:>5}  {f.state:<8}  {columns.left(f.region or '-', 10)}  "
            f"{columns.left(f.language or '-', 4)}  "
            f"{columns.left(f.title or '-', FEED_TITLE_CELLS)}  {f.url}"
            + (f"  [{f.last_error_kind}: {columns.cut(f.last_error, 80)}]" if f.last_error else "")
        )
    return lines


def _ago(when: datetime | None, now: datetime) -> str:
    return "never" if when is None else _duration((now - when).total_seconds()) + " ago"


def _until(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "-"
    seconds = (when - now).total_seconds()
    return "due" if seconds <= 0 else "in " + _duration(seconds)


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"
