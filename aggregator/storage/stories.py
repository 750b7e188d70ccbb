"""Stories in Postgres: candidates by key, the assignment plan written, latest stories.

Matching and the plan are pure (``aggregator.stories``); this module reads the
candidates a batch's keys find in ``story_keys`` and writes what the plan decided,
under the ``stories`` row lock (see ``aggregator.storage.locks``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from aggregator.model import Article
from aggregator.storage import locks
from aggregator.stories import prints as story_prints
from aggregator.stories.match import DEFAULT_WINDOW
from aggregator.stories.plan import Known, Plan, plan_stories
from aggregator.stories.prints import (
    Fingerprint,
    article_fingerprint,
    article_print,
    fingerprint_from,
    identity_keys,
)

if TYPE_CHECKING:
    # The parse processes use this module (each article's StoryPrint is computed there),
    # and they need no asyncpg (11 MB each).
    import asyncpg

MAX_CANDIDATES_PER_KEY = 100

_CANDIDATES = """
WITH hits AS (
    SELECT k.article_id, array_agg(DISTINCT q.key) AS keys
    FROM unnest($1::bigint[], $2::timestamptz[], $3::timestamptz[]) AS q(key, lo, hi)
    CROSS JOIN LATERAL (
        SELECT sk.article_id FROM story_keys sk
        WHERE sk.key = q.key AND sk.published_at BETWEEN q.lo AND q.hi
        ORDER BY sk.published_at DESC
        LIMIT $4
    ) k
    GROUP BY k.article_id
)
SELECT a.id, a.story_id, a.title, a.content_text, a.summary, a.canonical_url, a.published_at,
       h.keys
FROM hits h JOIN articles a ON a.id = h.article_id
WHERE a.story_id IS NOT NULL
  AND a.id <> ALL($5::bigint[])  -- this batch's own articles: the pending ones
"""

# A story one new article starts alone is written whole: what _REFRESH_STORIES would set.
_CREATE_STORIES = """
INSERT INTO stories (id, first_seen_at, published_at, updated_at, representative_id)
SELECT s.id, $3, s.published_at, $3, CASE WHEN s.alone THEN s.id END
FROM unnest($1::bigint[], $2::timestamptz[], $4::boolean[]) AS s(id, published_at, alone)
"""

_SET_STORIES = """
UPDATE articles a SET story_id = u.story_id
FROM unnest($1::bigint[], $2::bigint[]) AS u(id, story_id)
WHERE a.id = u.id
"""

_MOVE_MERGED = """
UPDATE articles a SET story_id = m.target
FROM unnest($1::bigint[], $2::bigint[]) AS m(story_id, target)
WHERE a.story_id = m.story_id
"""

_MARK_MERGED = """
UPDATE stories s SET merged_into = m.target, article_count = 0, representative_id = NULL,
                     updated_at = $3
FROM unnest($1::bigint[], $2::bigint[]) AS m(story_id, target)
WHERE s.id = m.story_id OR s.merged_into = m.story_id
"""

_INSERT_KEYS = """
INSERT INTO story_keys (key, article_id, published_at)
SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::timestamptz[])
"""

# The representative is the fullest text (a summary never wins over the story), then the
# earliest published.
_REFRESH_STORIES = """
UPDATE stories s
SET article_count = c.articles, representative_id = c.representative,
    published_at = c.published_at, first_seen_at = c.first_seen_at, updated_at = $2
FROM (
    SELECT story_id, count(*) AS articles, min(published_at) AS published_at,
           min(first_seen_at) AS first_seen_at,
           (array_agg(id ORDER BY length(content_text) DESC, published_at, id))[1] AS representative
    FROM articles WHERE story_id = ANY($1::bigint[])
    GROUP BY story_id
) c
WHERE s.id = c.story_id
"""


async def assign_stories(
    conn: asyncpg.Connection,
    new: Sequence[tuple[int, Article]],
    *,
    seen_at: datetime,
    window: timedelta = DEFAULT_WINDOW,
) -> dict[int, int]:
    """Give each newly inserted article its story; call inside the store transaction.

    Returns article id -> story id.
    """
    if not new:
        return {}
    prints = [article_print(a) for _, a in new]  # carried from the parse processes, mostly
    pending = [
        (article_id, article_fingerprint(a, p))
        for (article_id, a), p in zip(new, prints, strict=True)
    ]
    # Serialize assignment across workers until this transaction commits: a worker
    # then sees every copy another worker stored before it, and never starts a
    # second story for the same text. The CPU work above stays outside the lock.
    await _lock_assignment(conn)
    known = await _known_candidates(conn, pending, window)
    plan = plan_stories(pending, known, window=window)
    await _write(conn, plan, seen_at)
    for p in prints:  # the candidates of the articles to come
        story_prints.remembered_prints.add(p)
    return plan.assigned


async def _lock_assignment(conn: asyncpg.Connection) -> None:
    """Wait until no other transaction is assigning stories; hold that until commit.

    One lock for every store worker (the read-only role cannot take it)."""
    await locks.hold(conn, locks.STORIES)


async def _known_candidates(
    conn: asyncpg.Connection, pending: Sequence[tuple[int, Fingerprint]], window: timedelta
) -> list[Known]:
    keys, lows, highs = [], [], []
    for _, fp in pending:
        for key in fp.keys:
            keys.append(key)
            lows.append(fp.published_at - window)
            highs.append(fp.published_at + window)
    if not keys:
        return []
    pending_ids = [article_id for article_id, _ in pending]
    rows = await conn.fetch(_CANDIDATES, keys, lows, highs, MAX_CANDIDATES_PER_KEY, pending_ids)
    identities = frozenset().union(*(fp.identity for _, fp in pending))
    known = []
    for row in rows:
        matched = frozenset(row["keys"])
        text = row["content_text"] or row["summary"]
        # The stored row has no guid; the keys it matched carry its identity.
        identity = frozenset(identity_keys(row["canonical_url"], None)) | (matched & identities)
        fp = fingerprint_from(
            story_prints.remembered_prints.of(row["title"], text),
            text=text,
            published_at=row["published_at"],
            identity=identity,
            keys=matched,
        )
        known.append(Known(row["id"], row["story_id"], fp))
    return known


async def _write(conn: asyncpg.Connection, plan: Plan, seen_at: datetime) -> None:
    # Articles were inserted as their own story: only those joining another one move.
    moved = {a: s for a, s in plan.assigned.items() if a != s}
    alone = set(plan.created) - set(moved.values()) - set(plan.merged.values())
    if plan.created:
        await conn.execute(
            _CREATE_STORIES,
            list(plan.created),
            list(plan.created.values()),
            seen_at,
            [story in alone for story in plan.created],
        )
    if moved:
        await conn.execute(_SET_STORIES, list(moved), list(moved.values()))
    if plan.merged:
        olds, targets = list(plan.merged), list(plan.merged.values())
        await conn.execute(_MOVE_MERGED, olds, targets)
        await conn.execute(_MARK_MERGED, olds, targets, seen_at)
    if plan.keys:
        await conn.execute(_INSERT_KEYS, *map(list, zip(*plan.keys, strict=True)))
    refresh = sorted(set(plan.assigned.values()) - alone)
    if refresh:
        await conn.execute(_REFRESH_STORIES, refresh, seen_at)


# --- reading stories --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StorySummary:
    """One line of ``aggregator stories``: a row of the ``story_overview`` view."""

    story_id: int
    published_at: datetime
    first_seen_at: datetime
    title: str | None
    article_count: int
    outlets: list[str]


_LIST_STORIES = """
SELECT story_id, published_at, first_seen_at, title, article_count, outlets
FROM story_overview
WHERE ($1::text IS NULL OR $1 = ANY(regions))
  AND ($2::timestamptz IS NULL OR published_at >= $2)
ORDER BY published_at DESC, story_id DESC
LIMIT $3
"""


async def latest_stories(
    conn: asyncpg.Connection,
    *,
    region: str | None = None,
    since: datetime | None = None,
    limit: int = 50,
) -> list[StorySummary]:
    """The most recently published stories, newest first."""
    rows = await conn.fetch(_LIST_STORIES, region, since, limit)
    return [StorySummary(**dict(row)) for row in rows]
