"""Dedupe: the content hash, and the Redis cache of what each feed already delivered.

The hash is sha256 of the normalized body text (see ``bodytext``). A body too
short to identify a story ("Read more", or nothing) is hashed together with the
title and canonical URL, so unrelated stubs never merge.

The cache is only an optimization: Postgres' unique key on ``content_hash`` is
the truth. It is written after the store transaction commits, so a hash in the
cache always belongs to a stored article and a sighting of it by that feed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the parse processes hash content but never talk to Redis
    from redis.asyncio import Redis

SHORT_BODY_CHARS = 50
_SEPARATOR = "\x1f"  # unit separator: cannot occur in normalized text


def content_hash(body_text: str, *, title: str, canonical_url: str | None) -> str:
    """sha256 hex of the body text; short bodies are salted with title and URL."""
    material = body_text
    if len(body_text) < SHORT_BODY_CHARS:
        material = _SEPARATOR.join((body_text, title, canonical_url or ""))
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


class SeenCache:
    """Which content hashes a feed has already delivered and we have stored."""

    def __init__(self, redis: Redis, *, ttl_seconds: int) -> None:
        self._redis = redis
        self._ttl = ttl_seconds

    @staticmethod
    def key(feed_id: int) -> str:
        return f"aggregator:seen:{feed_id}"

    async def unseen(self, feed_id: int, hashes: Sequence[str]) -> set[str]:
        """The hashes among ``hashes`` this feed has not delivered yet."""
        if not hashes:
            return set()
        flags: list[int] = await self._redis.smismember(  # type: ignore[misc]
            self.key(feed_id), list(hashes)
        )
        return {h for h, seen in zip(hashes, flags, strict=True) if not seen}

    @staticmethod
    def entries_key(feed_id: int) -> str:
        return f"aggregator:entries:{feed_id}"

    async def mark(
        self, feed_id: int, hashes: Iterable[str], *, entries: Iterable[str] | None = None
    ) -> None:
        """Record hashes as delivered and, with ``entries``, make those the feed's known
        entries (every entry of a body whose articles are all stored: a poll passes them
        to the parse step, which skips normalizing them). Call only after the commit."""
        members = list(hashes)
        known = None if entries is None else list(entries)
        if not members and known is None:
            return
        async with self._redis.pipeline(transaction=True) as pipe:
            if members:
                pipe.sadd(self.key(feed_id), *members)
                pipe.expire(self.key(feed_id), self._ttl)
            if known is not None:
                pipe.delete(self.entries_key(feed_id))
                if known:
                    pipe.sadd(self.entries_key(feed_id), *known)
                    pipe.expire(self.entries_key(feed_id), self._ttl)
            await pipe.execute()

    async def known_entries(self, feed_id: int) -> frozenset[str]:
        members = await self._redis.smembers(self.entries_key(feed_id))  # type: ignore[misc]
        return frozenset(m.decode() if isinstance(m, bytes) else m for m in members)
