"""Subscribers: who receives which new articles, the jobs they get, replay and dead letters.

A subscriber is a name and a filter (regions, languages, feeds, a full-text
query; an empty dimension means "any", dimensions are ANDed, values within one
are ORed). The filter is one SQL condition, ``MATCHES``, used both by the
outbox relay for new articles and by ``replay`` for a window of old ones, so a
replay delivers exactly what live delivery would have. Payloads are built here
from Postgres (``NewArticle``, schema version 1) and delivered by the subscriber's
kind: ``arq`` queues a JSON job and watches its outcome (``deliveries``), ``stream``
adds a stream entry (``streams``).
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import asyncpg
from arq.connections import ArqRedis
from arq.constants import job_key_prefix
from pydantic import ValidationError

from aggregator.consumer import (
    PAYLOAD_VERSION,
    DeadLetter,
    NewArticle,
    check_name,
    dead_letter_key,
    queue_name,
)
from aggregator.errors import (
    FeedNotFoundError,
    SubscriberFilterError,
    SubscriberKindError,
    SubscriberNotFoundError,
)
from aggregator.storage import deliveries, streams

PAYLOAD_CHUNK = 500

Kind = Literal["arq", "stream"]
KINDS: tuple[Kind, ...] = ("arq", "stream")


@dataclass(frozen=True, slots=True)
class Subscriber:
    name: str
    regions: tuple[str, ...]
    languages: tuple[str, ...]
    feed_ids: tuple[int, ...]
    query: str | None
    created_at: datetime
    kind: Kind = "arq"

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Subscriber:
        return cls(
            name=row["name"],
            regions=tuple(row["regions"]),
            languages=tuple(row["languages"]),
            feed_ids=tuple(row["feed_ids"]),
            query=row["query"],
            created_at=row["created_at"],
            kind=row["kind"],
        )

    @property
    def key(self) -> str:
        """Where its deliveries go: the arq queue or the stream."""
        return streams.stream_key(self.name) if self.kind == "stream" else queue_name(self.name)

    def describe(self) -> str:
        parts = [
            f"{label}={','.join(map(str, values))}"
            for label, values in (
                ("region", self.regions),
                ("language", self.languages),
                ("feed", self.feed_ids),
            )
            if values
        ]
        if self.query:
            parts.append(f"query={self.query!r}")
        return " ".join(parts) or "every new article"


@dataclass(frozen=True, slots=True)
class SubscriberStatus:
    subscriber: Subscriber
    queued: int  # arq: jobs waiting, deferred for a retry, or in progress; stream: entries kept
    dead: int
    latest_dead: list[DeadLetter]
    watching: int = 0  # arq: deliveries whose outcome the watcher has not seen yet
    groups: list[streams.Group] = dataclasses.field(default_factory=list)  # stream only

    def as_json(self) -> dict[str, Any]:
        s = self.subscriber
        return {
            "name": s.name,
            "kind": s.kind,
            "key": s.key,
            "queued": self.queued,
            "dead_letters": self.dead,
            "last_reason": self.latest_dead[-1].error if self.latest_dead else None,
            "watching": self.watching,
            "groups": [dataclasses.asdict(g) for g in self.groups],
            "filter": {
                "regions": list(s.regions),
                "languages": list(s.languages),
                "feed_ids": list(s.feed_ids),
                "query": s.query,
            },
            "created_at": s.created_at.isoformat(),
        }


# An article ``a`` matches a subscriber ``s``. Languages match on their primary tag
# too, so "en" takes "en-gb".
MATCHES = """
(cardinality(s.regions) = 0 OR a.region = ANY (s.regions))
AND (cardinality(s.languages) = 0 OR a.language = ANY (s.languages)
     OR split_part(a.language, '-', 1) = ANY (s.languages))
AND (cardinality(s.feed_ids) = 0 OR EXISTS (
        SELECT 1 FROM article_sources src
        WHERE src.article_id = a.id AND src.feed_id = ANY (s.feed_ids)))
AND (s.query IS NULL OR a.search_vector @@ article_search_query(s.query))
"""

_UPSERT = """
INSERT INTO subscribers (name, regions, languages, feed_ids, query, kind)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (name) DO UPDATE SET
    regions = EXCLUDED.regions, languages = EXCLUDED.languages,
    feed_ids = EXCLUDED.feed_ids, query = EXCLUDED.query
RETURNING *, (xmax = 0) AS created
"""

_FEED_ID = "SELECT id FROM feeds WHERE id = $1 OR url = $2"


async def add(
    conn: asyncpg.Connection,
    name: str,
    *,
    regions: Iterable[str] = (),
    languages: Iterable[str] = (),
    feeds: Iterable[str] = (),
    query: str | None = None,
    kind: Kind | None = None,
) -> tuple[Subscriber, bool]:
    """Create a subscriber, or replace an existing one's filter; return it and whether
    it is new. ``feeds`` are feed ids or URLs; a new subscriber receives the articles
    stored from now on (``replay`` delivers older ones). ``kind`` (default ``arq``, or
    the existing one's) cannot change: remove the subscriber first."""
    check_name(name)
    existing: str | None = await conn.fetchval("SELECT kind FROM subscribers WHERE name = $1", name)
    if kind is not None and existing is not None and kind != existing:
        raise SubscriberKindError(
            f"subscriber {name!r} is {_kind_text(existing)}, not {_kind_text(kind)}; "
            f"remove it first (`aggregator subscribers remove {name}`)"
        )
    feed_ids = [await _feed_id(conn, f) for f in feeds]
    query = " ".join((query or "").split()) or None
    if query is not None and len(query) > 1000:
        raise SubscriberFilterError("--query is longer than 1000 characters")
    row = await conn.fetchrow(
        _UPSERT,
        name,
        _distinct(r.strip() for r in regions),
        _distinct(lang.strip().lower() for lang in languages),
        sorted(set(feed_ids)),
        query,
        kind or existing or "arq",
    )
    return Subscriber.from_row(row), bool(row["created"])


async def _feed_id(conn: asyncpg.Connection, url_or_id: str) -> int:
    feed_id = int(url_or_id) if url_or_id.isdigit() else None
    found: int | None = await conn.fetchval(_FEED_ID, feed_id, url_or_id)
    if found is None:
        raise FeedNotFoundError(f"no feed {url_or_id!r} (see `aggregator feeds list`)")
    return found


def _kind_text(kind: str) -> str:
    return "a stream" if kind == "stream" else "an arq queue"


def _distinct(values: Iterable[str]) -> list[str]:
    return sorted({v for v in values if v})


async def get(conn: asyncpg.Connection | asyncpg.Pool, name: str) -> Subscriber:
    row = await conn.fetchrow("SELECT * FROM subscribers WHERE name = $1", check_name(name))
    if row is None:
        raise SubscriberNotFoundError(f"no subscriber {name!r} (see `aggregator subscribers list`)")
    return Subscriber.from_row(row)


async def list_all(conn: asyncpg.Connection | asyncpg.Pool) -> list[Subscriber]:
    return [
        Subscriber.from_row(r) for r in await conn.fetch("SELECT * FROM subscribers ORDER BY name")
    ]


async def status(
    conn: asyncpg.Connection, redis: ArqRedis, *, dead_shown: int = 3
) -> list[SubscriberStatus]:
    """Every subscriber with its queue depth and its dead letters (count and the latest)."""
    found = []
    for subscriber in await list_all(conn):
        dead, latest = await dead_letters(redis, subscriber.name, limit=dead_shown)
        if subscriber.kind == "stream":
            length, groups = await streams.describe(redis, subscriber.name)
            found.append(SubscriberStatus(subscriber, length, dead, latest, groups=groups))
        else:
            queued = await redis.zcard(queue_name(subscriber.name))
            watching = await redis.zcard(deliveries.watch_key(subscriber.name))
            found.append(SubscriberStatus(subscriber, int(queued), dead, latest, int(watching)))
    return found


async def remove(conn: asyncpg.Connection, redis: ArqRedis, name: str) -> Subscriber:
    """Delete a subscriber with its queue (or stream), its queued jobs and its dead letters."""
    row = await conn.fetchrow(
        "DELETE FROM subscribers WHERE name = $1 RETURNING *", check_name(name)
    )
    if row is None:
        raise SubscriberNotFoundError(f"no subscriber {name!r}")
    key = queue_name(name)
    job_ids: list[bytes] = await redis.zrange(key, 0, -1)
    async with redis.pipeline(transaction=False) as pipe:
        for start in range(0, len(job_ids), 1000):
            pipe.delete(*(job_key_prefix + j.decode() for j in job_ids[start : start + 1000]))
        pipe.delete(key, dead_letter_key(name), deliveries.watch_key(name))
        await pipe.execute()
    await streams.remove(redis, name)
    return Subscriber.from_row(row)


# --- deliveries -------------------------------------------------------------------------------

_PAYLOADS = """
SELECT a.id, a.content_hash, a.story_id, a.canonical_url, a.title, a.summary, a.content_html,
       a.content_text, a.author, a.language, a.region, a.published_at, a.first_seen_at,
       a.updated_at,
       COALESCE((SELECT json_agg(json_build_object(
                    'feed_id', s.feed_id, 'feed_url', f.url, 'feed_title', f.title,
                    'url', s.url, 'guid', s.guid, 'title', s.title, 'seen_at', s.seen_at)
                    ORDER BY s.seen_at, s.feed_id)
                 FROM article_sources s JOIN feeds f ON f.id = s.feed_id
                 WHERE s.article_id = a.id), '[]') AS sources
FROM articles a
WHERE a.id = ANY ($1::bigint[])
"""


async def payloads(
    conn: asyncpg.Connection, article_ids: Sequence[int]
) -> dict[int, dict[str, Any]]:
    """The ``new_article`` payloads (JSON-ready) of these articles, by id; deleted ones are
    missing. Built through ``NewArticle`` so what we send is what consumers parse."""
    found: dict[int, dict[str, Any]] = {}
    for start in range(0, len(article_ids), PAYLOAD_CHUNK):
        rows = await conn.fetch(_PAYLOADS, list(article_ids[start : start + PAYLOAD_CHUNK]))
        for row in rows:
            fields = dict(row) | {
                "schema_version": PAYLOAD_VERSION,
                "sources": json.loads(row["sources"]),
            }
            found[row["id"]] = NewArticle.model_validate(fields).model_dump(mode="json")
    return found


def delivery_job_id(subscriber: str, outbox_id: int) -> str:
    """The live delivery's job id: one per (subscriber, article), so a relay that runs a
    row twice queues it once. Zero-padded: arq breaks ties between jobs queued in the same
    millisecond by id, and this keeps them in commit order."""
    return f"subscriber:{subscriber}:{outbox_id:015d}"


async def enqueue(redis: ArqRedis, subscriber: str, payload: dict[str, Any], job_id: str) -> bool:
    """Queue one ``new_article`` job, watched; False if a job with this id is queued or
    finished."""
    return await deliveries.enqueue(redis, subscriber, payload, job_id)


async def deliver(conn: asyncpg.Connection, redis: ArqRedis, rows: Sequence[asyncpg.Record]) -> int:
    """The relay's deliveries: each row (``id``: outbox id, ``article_id``,
    ``subscriber``) to its subscriber, in row order; return how many were new (the
    rest a crashed pass had delivered already)."""
    bodies = await payloads(conn, sorted({r["article_id"] for r in rows}))
    kinds = dict(
        await conn.fetch(
            "SELECT name, kind FROM subscribers WHERE name = ANY ($1::text[])",
            sorted({r["subscriber"] for r in rows}),
        )
    )
    new = 0
    for row in rows:
        name, body = row["subscriber"], bodies.get(row["article_id"])
        if body is None or name not in kinds:
            continue  # the article or the subscriber was deleted meanwhile
        if kinds[name] == "stream":
            new += await streams.relay_add(redis, name, row["id"], body)
        else:
            new += await enqueue(redis, name, body, delivery_job_id(name, row["id"]))
    return new


_WINDOW = f"""
SELECT a.id
FROM subscribers s
JOIN articles a ON {MATCHES}
LEFT JOIN outbox o ON o.article_id = a.id
WHERE s.name = $1 AND a.first_seen_at >= $2 AND ($3::timestamptz IS NULL OR a.first_seen_at < $3)
ORDER BY o.id NULLS LAST, a.id
"""


async def replay(
    conn: asyncpg.Connection,
    redis: ArqRedis,
    name: str,
    *,
    since: datetime,
    until: datetime | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Queue again every article first seen in [since, until) that matches the subscriber,
    in arrival order; return how many. Each replay is new: its jobs are delivered even if
    the same articles were delivered before."""
    await get(conn, name)
    ids = [r["id"] for r in await conn.fetch(_WINDOW, name, since, until)]
    return await _redeliver(conn, redis, name, ids, progress=progress)


async def _redeliver(
    conn: asyncpg.Connection,
    redis: ArqRedis,
    name: str,
    article_ids: Sequence[int],
    *,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Queue the articles again; ``progress(done, total)`` after each chunk."""
    kind = (await get(conn, name)).kind
    token = uuid.uuid4().hex[:12]
    queued = 0
    for start in range(0, len(article_ids), PAYLOAD_CHUNK):
        chunk = article_ids[start : start + PAYLOAD_CHUNK]
        found = await payloads(conn, chunk)
        for offset, article_id in enumerate(chunk, start):
            if article_id not in found:
                continue
            if kind == "stream":
                await streams.add(redis, name, found[article_id])
                queued += 1
            else:
                job_id = f"subscriber:{name}:replay:{token}:{offset:09d}"
                queued += await enqueue(redis, name, found[article_id], job_id)
        if progress is not None:
            progress(min(start + PAYLOAD_CHUNK, len(article_ids)), len(article_ids))
    return queued


# --- dead letters -----------------------------------------------------------------------------


async def dead_letters(
    redis: ArqRedis, name: str, *, limit: int = 10
) -> tuple[int, list[DeadLetter]]:
    """How many deliveries are dead-lettered, and the latest ``limit`` of them."""
    key = dead_letter_key(name)
    count = int(await redis.llen(key))  # type: ignore[misc]
    raw: list[bytes] = await redis.lrange(key, -limit, -1) if limit else []  # type: ignore[misc]
    return count, [d for d in map(_parse_dead_letter, raw) if d is not None]


async def retry_dead_letters(
    conn: asyncpg.Connection, redis: ArqRedis, name: str
) -> tuple[int, int]:
    """Queue the dead-lettered articles again (rebuilt from Postgres) and empty the list;
    return (queued, dropped): a dead letter whose article is gone cannot be retried."""
    await get(conn, name)
    key = dead_letter_key(name)
    raw: list[bytes] = await redis.lrange(key, 0, -1)  # type: ignore[misc]
    entries = [_parse_dead_letter(r) for r in raw]
    ids = list(dict.fromkeys(e.article_id for e in entries if e and e.article_id is not None))
    existing = await conn.fetch("SELECT id FROM articles WHERE id = ANY ($1::bigint[])", ids)
    present = {r["id"] for r in existing}
    queued = await _redeliver(conn, redis, name, [i for i in ids if i in present])
    # Only the entries read above: a delivery dead-lettered meanwhile stays listed.
    await redis.ltrim(key, len(raw), -1)  # type: ignore[misc]
    dropped = sum(1 for e in entries if e is None or e.article_id not in present)
    return queued, dropped


def _parse_dead_letter(raw: bytes) -> DeadLetter | None:
    try:
        return DeadLetter.model_validate_json(raw)
    except ValidationError:
        return None
