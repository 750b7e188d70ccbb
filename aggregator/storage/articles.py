"""Store: one transaction per batch of a feed's new articles.

Inserts articles (the unique key on ``content_hash`` decides what is new),
records a sighting per (article, feed), and advances the feed's validators in
the same transaction, so a batch lost before commit means the next poll fetches
the whole feed again. Re-running a batch changes nothing. New articles get
their outbox row and NOTIFY in the same transaction (``aggregator.storage.outbox``),
and their story (``aggregator.storage.stories``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from pydantic import BaseModel

from aggregator.model import Article
from aggregator.storage.outbox import record_arrivals
from aggregator.storage.stories import assign_stories
from aggregator.stories.match import DEFAULT_WINDOW
from aggregator.stories.text import search_folded


class Validators(BaseModel):
    """What the next conditional GET sends, and the hash of the body they describe."""

    etag: str | None = None
    last_modified: str | None = None
    body_hash: str


class StoreBatch(BaseModel):
    """The store job's payload (JSON on the queue)."""

    feed_id: int
    feed_url: str = ""  # for logs
    body_hash: str
    # None for pushed content (WebSub): it says nothing about what the next poll will see.
    validators: Validators | None
    articles: list[Article]
    fetched_at: datetime
    # Once the batch commits, what the feed's window cache records (see dedupe.SeenCache):
    # entry key -> the content hashes its article is stored under. ``departed`` (a poll's
    # whole body) makes ``entries`` the window, and itself its margin; None (a push) adds.
    entries: dict[str, list[str]] = {}
    departed: dict[str, list[str]] | None = None


def store_payload(batch: StoreBatch) -> dict[str, Any]:
    """A store batch as its job's argument (JSON on the queue)."""
    return batch.model_dump(mode="json")


@dataclass(frozen=True, slots=True)
class StoreResult:
    new: int
    merged: int
    sightings: int
    new_hashes: frozenset[str] = frozenset()
    joined_stories: int = 0  # new articles that joined an existing story (near-duplicates)


# A new article starts as its own story (story_id = id; the foreign key waits for the
# commit): the story step then updates only the articles that join another story.
# The search vector is built here from text folded in Python (``search_folded``: NULL
# where folding changes nothing), not by migration 010's trigger, which folds in
# PL/pgSQL at twice the INSERT's cost (it still folds for every other writer: 015).
# Articles already stored (a wire story's copies in other feeds) are left out before
# they are folded and sent (_STORED); ON CONFLICT settles a race with a batch that
# commits one meanwhile (at the cost of a sequence value).
_INSERT_ARTICLES = """
INSERT INTO articles (id, story_id, content_hash, canonical_url, title, summary, content_html,
                      content_text, author, language, region, published_at, first_seen_at,
                      search_vector)
SELECT n.id, n.id, n.content_hash, n.canonical_url, n.title, n.summary, n.content_html,
       n.content_text, n.author, n.language, n.region, n.published_at, $11::timestamptz,
       article_search_vector_folded(
           coalesce(n.folded_title, n.title), coalesce(n.folded_summary, n.summary),
           coalesce(n.folded_body, left(n.content_text, 100000)), n.language)
FROM (
    SELECT nextval('articles_id_seq') AS id, u.*
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                $7::text[], $8::text[], $9::text[], $10::timestamptz[],
                $12::text[], $13::text[], $14::text[])
         AS u(content_hash, canonical_url, title, summary, content_html, content_text,
              author, language, region, published_at,
              folded_title, folded_summary, folded_body)
    ORDER BY u.content_hash
) n
ON CONFLICT (content_hash) DO NOTHING
RETURNING id, content_hash
"""

# Which of a batch's articles are stored already. KEY SHARE holds them until the batch
# commits: retention cannot delete one between this and its sighting (the sighting's
# foreign key takes the same lock a moment later anyway).
_STORED = """
SELECT content_hash FROM articles WHERE content_hash = ANY($1::text[]) FOR KEY SHARE
"""

# Folding a batch's texts costs about 0.06 ms an article: a big batch is folded in a
# thread, so the event loop keeps serving fetches meanwhile (a 10,000-item feed held it
# for over half a second).
FOLD_IN_THREAD = 64

_INSERT_SIGHTINGS = """
INSERT INTO article_sources (article_id, feed_id, url, guid, title, seen_at)
SELECT a.id, $1, s.url, s.guid, s.title, $6
FROM unnest($2::text[], $3::text[], $4::text[], $5::text[]) AS s(content_hash, url, guid, title)
JOIN articles a ON a.content_hash = s.content_hash
ON CONFLICT (article_id, feed_id) DO NOTHING
"""

# The batch's body is stored: no longer pending (see recovery, a Redis lost).
_ADVANCE_VALIDATORS = """
UPDATE feeds
SET etag = $2, last_modified = $3, last_body_hash = $4,
    pending_body_hash = NULLIF(pending_body_hash, $4)
WHERE id = $1
"""


def unique_by_hash(articles: list[Article]) -> list[Article]:
    """First occurrence of each content hash: one statement may not touch a key twice."""
    seen: set[str] = set()
    unique = []
    for article in articles:
        if article.content_hash not in seen:
            seen.add(article.content_hash)
            unique.append(article)
    return unique


async def store_batch(
    conn: asyncpg.Connection, batch: StoreBatch, *, story_window: timedelta = DEFAULT_WINDOW
) -> StoreResult:
    """Insert a feed's batch and advance its validators, atomically."""
    articles = sorted(unique_by_hash(batch.articles), key=lambda a: a.content_hash)
    async with conn.transaction():
        stored = {
            row["content_hash"]
            for row in await conn.fetch(_STORED, [a.content_hash for a in articles])
        }
        fresh = [a for a in articles if a.content_hash not in stored]
        if len(fresh) > FOLD_IN_THREAD:
            columns = await asyncio.to_thread(_article_columns, fresh)
        else:
            columns = _article_columns(fresh)
        inserted = await conn.fetch(
            _INSERT_ARTICLES, *columns[:10], batch.fetched_at, *columns[10:]
        )
        status = await conn.execute(
            _INSERT_SIGHTINGS,
            batch.feed_id,
            [a.content_hash for a in articles],
            [a.url for a in articles],
            [a.guid for a in articles],
            [a.title for a in articles],
            batch.fetched_at,
        )
        # Before the feed row is locked: the story step may wait for other workers' commits.
        by_hash = {a.content_hash: a for a in articles}
        stories = await assign_stories(
            conn,
            [(row["id"], by_hash[row["content_hash"]]) for row in inserted],
            seen_at=batch.fetched_at,
            window=story_window,
        )
        if batch.validators is not None:
            await conn.execute(
                _ADVANCE_VALIDATORS,
                batch.feed_id,
                batch.validators.etag,
                batch.validators.last_modified,
                batch.validators.body_hash,
            )
        # Last: outbox rows and NOTIFY for the new articles (see aggregator.storage.outbox).
        await record_arrivals(conn, [row["id"] for row in inserted])
    sightings = int(status.rsplit(" ", 1)[1])
    return StoreResult(
        new=len(inserted),
        merged=sightings - len(inserted),
        sightings=sightings,
        new_hashes=frozenset(row["content_hash"] for row in inserted),
        # A story's id is the id of the article that started it.
        joined_stories=sum(article != story for article, story in stories.items()),
    )


def _article_columns(articles: list[Article]) -> list[list[object]]:
    """The INSERT's arrays, one per column."""
    columns = [list(c) for c in zip(*(_article_row(a) for a in articles), strict=True)]
    return columns or [[] for _ in range(13)]


def _article_row(a: Article) -> tuple[object, ...]:
    return (
        a.content_hash,
        a.canonical_url,
        a.title,
        a.summary,
        a.content_html,
        a.content_text,
        a.author,
        a.language,
        a.region,
        a.published_at,
        # Folded here, not in the parse processes: carried on the queue, the folded texts
        # made the farm's store payload 17 % larger (15.7 to 18.3 kB an article over 40
        # feeds, bench.ours.store_payload), and encoding, queueing and decoding them cost
        # the event loop about half of what folding here does (0.06 ms an article), on top
        # of the fold itself in the parse processes.
        *search_folded(a.title, a.summary, a.content_text),
    )
