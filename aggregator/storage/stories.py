"""Stories in Postgres: candidates by key, the assignment plan written, latest stories.

Matching and the plan are pure (``aggregator.stories``); this module reads the
candidates a batch's keys find in ``story_keys`` and writes what the plan decided.

No lock covers every worker. A batch's transaction first *claims* the keys of its new
articles (``story_key_claims``, in key order): a transaction that claims a key another
open one claimed waits for it to end, then sees what it stored. Two batches whose
articles share no key never wait for each other, and an article only ever finds
candidates through a key it shares with them, so every copy another worker stored
that could match is seen. Then it locks the rows of the stories its candidates belong
to (in id order), so no other batch merges them away or joins them meanwhile; if one
was merged between the lookup and the lock, it gives those locks back (a savepoint) and
looks up again. Claims, then stories, each in one sorted statement, after the articles'
own inserts: no two transactions wait for each other in a circle.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from aggregator.model import Article
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

# A key is stored as a code: the key XOR the article's period (8 weeks since the epoch) in
# the top 16 bits, so that a lookup reads only the periods its window covers: one, or
# two near a period's end (a quarter of the time with the 7-day window). The same
# expression is in sql/014_story_keys_by_article.sql (it converted the stored keys).
KEY_PERIOD = timedelta(days=56)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MASK64 = (1 << 64) - 1


def key_period(published_at: datetime) -> int:
    """The period (8 weeks) since the epoch that ``published_at`` falls in."""
    return (published_at - _EPOCH) // KEY_PERIOD


def key_code(key: int, period: int) -> int:
    """A story key as ``story_keys.codes`` holds it for an article of period ``period``."""
    code = (key ^ (period << 48)) & _MASK64
    return code - (1 << 64) if code >> 63 else code


# Each probe is one key of one new article, with that article's window; a probe asks
# for the code of each period the window covers, and reads the latest $6 articles
# in the window stored under its key.
_CANDIDATES = """
WITH q AS (
    SELECT * FROM unnest($1::int[], $2::bigint[], $3::bigint[], $4::timestamptz[],
                         $5::timestamptz[]) AS q(probe, key, code, lo, hi)
),
found AS (
    SELECT q.probe, q.key, sk.article_id,
           row_number() OVER (PARTITION BY q.probe ORDER BY sk.published_at DESC) AS rank
    FROM story_keys_overlapping($3::bigint[]) sk  -- the GIN index, see sql/014
    CROSS JOIN LATERAL unnest(sk.codes) AS c(code)
    JOIN q ON q.code = c.code AND sk.published_at BETWEEN q.lo AND q.hi
),
hits AS (
    SELECT article_id, array_agg(DISTINCT key) AS keys FROM found
    WHERE rank <= $6
    GROUP BY article_id
)
SELECT a.id, a.story_id, a.title, a.content_text, a.summary, a.canonical_url, a.published_at,
       h.keys
FROM hits h JOIN articles a ON a.id = h.article_id
WHERE a.story_id IS NOT NULL
  AND a.id <> ALL($7::bigint[])  -- this batch's own articles: the pending ones
"""

# Rows inserted in key order; a key an open transaction claimed waits for its end. A
# claim row is deleted by the transaction that made it (``_INSERT_KEYS``), and a
# waiter finds it gone at commit. (A row left by anything else is taken over.)
_CLAIM_KEYS = """
INSERT INTO story_key_claims (key)
SELECT key FROM unnest($1::bigint[]) AS k(key) ORDER BY key
ON CONFLICT (key) DO UPDATE SET key = excluded.key
"""

# The stories of the candidates, until commit: no other batch merges them or joins
# them meanwhile. A merged one is not locked (and not returned).
_LOCK_STORIES = """
SELECT id, representative_id FROM stories WHERE id = ANY($1::bigint[]) AND merged_into IS NULL
ORDER BY id
FOR NO KEY UPDATE
"""

# A batch that merges no story writes its plan in one statement: the stories its articles
# start, written whole (what _REFRESH_STORIES would set: all their articles are new);
# the articles that join another story moved there; their keys; the claims released;
# and each story joined counted up from what it was, its representative the fullest text
# (then the earliest, then the lowest id) of its last one and the articles joining. Its
# row is locked (_LOCK_STORIES), so nothing else changed it meanwhile. The refresh
# counted all the story's articles again at every join: a cost that grew with the story.
_WRITE_PLAN = """
WITH created AS (
    INSERT INTO stories (id, first_seen_at, published_at, updated_at, article_count,
                         representative_id)
    SELECT c.id, $17, c.published_at, $17, c.articles, c.representative
    FROM unnest($1::bigint[], $2::timestamptz[], $3::int[], $4::bigint[])
         AS c(id, published_at, articles, representative)
),
moved AS (
    UPDATE articles a SET story_id = m.story_id
    FROM unnest($5::bigint[], $6::bigint[]) AS m(id, story_id)
    WHERE a.id = m.id
),
keys AS (
    INSERT INTO story_keys (article_id, published_at, codes)
    SELECT article_id, published_at, array_agg(code ORDER BY code)
    FROM unnest($7::bigint[], $8::timestamptz[], $9::bigint[])
         AS k(article_id, published_at, code)
    GROUP BY article_id, published_at
),
released AS (
    DELETE FROM story_key_claims WHERE key = ANY($10::bigint[])
)
UPDATE stories s
SET article_count = s.article_count + j.articles,
    published_at = least(s.published_at, j.published_at),
    first_seen_at = least(s.first_seen_at, $17),
    updated_at = $17,
    representative_id = CASE
        WHEN j.representative IS NULL
          OR (-j.best_length, j.best_published_at, j.best)
             < (-j.representative_length, j.representative_published_at, j.representative)
        THEN j.best ELSE j.representative END
FROM (
    SELECT j.*, r.id AS representative, length(r.content_text) AS representative_length,
           r.published_at AS representative_published_at
    FROM unnest($11::bigint[], $12::int[], $13::timestamptz[], $14::bigint[], $15::int[],
                $16::timestamptz[])
         AS j(id, articles, published_at, best, best_length, best_published_at)
    JOIN stories js ON js.id = j.id
    LEFT JOIN articles r ON r.id = js.representative_id
) j
WHERE s.id = j.id
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

# The claims go too: other transactions waiting on them go on once this one commits.
_INSERT_KEYS = """
WITH released AS (DELETE FROM story_key_claims WHERE key = ANY($4::bigint[]))
INSERT INTO story_keys (article_id, published_at, codes)
SELECT article_id, published_at, array_agg(code ORDER BY code)
FROM unnest($1::bigint[], $2::timestamptz[], $3::bigint[]) AS k(article_id, published_at, code)
GROUP BY article_id, published_at
"""

# The representative is the fullest text (a summary never wins over the story), then the
# earliest published.
# updated_at NULL: left as it is (retention's recount: no article joined).
_REFRESH_STORIES = """
UPDATE stories s
SET article_count = c.articles, representative_id = c.representative,
    published_at = c.published_at, first_seen_at = c.first_seen_at,
    updated_at = coalesce($2, s.updated_at)
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
    # The CPU work above stays outside the claims; from here to commit, other batches
    # with copies of these texts wait for this one.
    claims = sorted({key for _, fp in pending for key in fp.keys})
    if claims:
        await conn.execute(_CLAIM_KEYS, claims)
    while True:
        known = await _known_candidates(conn, pending, window)
        representatives = await _lock_stories(conn, {k.story_id for k in known})
        if representatives is not None:
            break
    plan = plan_stories(pending, known, window=window)
    if plan.merged:
        await _write_merging(conn, plan, seen_at, claims)
    else:
        texts = {article_id: (len(a.content_text), a.published_at) for article_id, a in new}
        await _write(conn, plan, seen_at, claims, texts, representatives)
    for p in prints:  # the candidates of the articles to come
        story_prints.remembered_prints.add(p)
    return plan.assigned


class _StoryMerged(Exception):
    """A candidate's story was merged into another between the lookup and its lock."""


async def _lock_stories(
    conn: asyncpg.Connection, stories: Collection[int]
) -> dict[int, int | None] | None:
    """Lock the candidates' stories until commit: story id -> its representative. None if
    one of them is merged now (the candidates must be looked up again: their articles
    moved)."""
    if not stories:
        return {}
    try:
        async with conn.transaction():  # a savepoint: a failed attempt gives back its locks
            locked = await conn.fetch(_LOCK_STORIES, sorted(stories))
            if len(locked) < len(stories):
                raise _StoryMerged
    except _StoryMerged:
        return None
    return {row["id"]: row["representative_id"] for row in locked}


async def _known_candidates(
    conn: asyncpg.Connection, pending: Sequence[tuple[int, Fingerprint]], window: timedelta
) -> list[Known]:
    probes: list[int] = []
    keys, codes, lows, highs = [], [], [], []
    probe = 0
    for _, fp in pending:
        lo, hi = fp.published_at - window, fp.published_at + window
        periods = range(key_period(lo), key_period(hi) + 1)
        for key in fp.keys:
            probe += 1
            for period in periods:
                probes.append(probe)
                keys.append(key)
                codes.append(key_code(key, period))
                lows.append(lo)
                highs.append(hi)
    if not keys:
        return []
    pending_ids = [article_id for article_id, _ in pending]
    rows = await conn.fetch(
        _CANDIDATES, probes, keys, codes, lows, highs, MAX_CANDIDATES_PER_KEY, pending_ids
    )
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


async def _write(
    conn: asyncpg.Connection,
    plan: Plan,
    seen_at: datetime,
    claims: list[int],
    texts: dict[int, tuple[int, datetime]],
    representatives: dict[int, int | None],
) -> None:
    """Write a plan that merges no story (``_WRITE_PLAN``). ``texts``: each new article's
    text length and publication time; ``representatives``: the locked stories'."""
    members: defaultdict[int, list[int]] = defaultdict(list)
    for article_id, story in plan.assigned.items():
        members[story].append(article_id)

    def fullest(article_ids: list[int]) -> int:
        return min(article_ids, key=lambda a: (-texts[a][0], texts[a][1], a))

    created = sorted(plan.created)
    joined = sorted(set(members) - set(plan.created))
    best = [fullest(members[s]) for s in joined]
    moved = {a: s for a, s in plan.assigned.items() if a != s}
    await conn.execute(
        _WRITE_PLAN,
        created,
        [min(texts[a][1] for a in members[s]) for s in created],
        [len(members[s]) for s in created],
        [fullest(members[s]) for s in created],
        list(moved),
        list(moved.values()),
        [article_id for _, article_id, _ in plan.keys],
        [published_at for _, _, published_at in plan.keys],
        [key_code(key, key_period(published_at)) for key, _, published_at in plan.keys],
        claims,
        joined,
        [len(members[s]) for s in joined],
        [min(texts[a][1] for a in members[s]) for s in joined],
        best,
        [texts[a][0] for a in best],
        [texts[a][1] for a in best],
        seen_at,
    )
    # A story whose representative is gone (pruned) is counted whole again.
    recount = [s for s in joined if representatives.get(s) is None]
    if recount:
        await conn.execute(_REFRESH_STORIES, recount, seen_at)


async def _write_merging(
    conn: asyncpg.Connection, plan: Plan, seen_at: datetime, claims: list[int]
) -> None:
    """Write a plan that merges stories: their articles move, and every story the batch
    joined is counted whole again (rare: a copy that bridges two stories)."""
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
    olds, targets = list(plan.merged), list(plan.merged.values())
    await conn.execute(_MOVE_MERGED, olds, targets)
    await conn.execute(_MARK_MERGED, olds, targets, seen_at)
    if claims:
        await conn.execute(
            _INSERT_KEYS,
            [article_id for _, article_id, _ in plan.keys],
            [published_at for _, _, published_at in plan.keys],
            [key_code(key, key_period(published_at)) for key, _, published_at in plan.keys],
            claims,
        )
    refresh = sorted(set(plan.assigned.values()) - alone)
    if refresh:
        await conn.execute(_REFRESH_STORIES, refresh, seen_at)


async def recount_after_pruning(conn: asyncpg.Connection, stories: Sequence[int]) -> int:
    """Count the stories that lost articles to retention whole again: their article count,
    representative and first dates, from the articles left (``updated_at`` stays: no
    article joined). Each story row is locked first, in id order, as a store batch locks
    the stories it joins; so a batch joining one meanwhile has committed, and this
    statement, run after the locks, counts its articles too. Run it after the articles'
    delete has committed, in a transaction of its own: it then holds no article lock
    that a store batch holding a story lock could wait for. Merged and emptied stories
    are left alone. Returns how many stories were counted."""
    async with conn.transaction():
        locked = [r["id"] for r in await conn.fetch(_LOCK_STORIES, sorted(set(stories)))]
        if locked:
            await conn.execute(_REFRESH_STORIES, locked, None)
    return len(locked)


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
