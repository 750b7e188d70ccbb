"""The seen cache: what each feed already delivered, in Redis, by content hash.

The content hash itself is ``aggregator.pipeline.contenthash``. The cache is only an
optimization: Postgres' unique key on ``content_hash`` is the truth. It is written
after the store transaction commits, so a hash in the cache always belongs to a
stored article and a sighting of it by that feed. It holds what a feed's next polls
can show again (its current window), not what it ever delivered, so Redis grows with
the fleet, not with the archive.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the parse processes hash content but never talk to Redis
    from redis.asyncio import Redis

Hashes = tuple[str, ...]  # the content hashes one entry's article was stored under


@dataclass(frozen=True, slots=True)
class FeedWindow:
    """What a feed's recent bodies held, as the cache knows it: entry key -> the content
    hashes of its stored article (one; two for a --full-text page; none for an empty entry).

    ``current`` is the last delivered body; ``previous`` the entries that left the window
    with it, kept as a margin (a CDN serving an older copy, an item that comes back)."""

    current: dict[str, Hashes] = field(default_factory=dict)
    previous: dict[str, Hashes] = field(default_factory=dict)

    @property
    def known_entries(self) -> frozenset[str]:
        return frozenset(self.current) | frozenset(self.previous)

    @property
    def delivered(self) -> frozenset[str]:
        windows = (self.current, self.previous)
        return frozenset(h for window in windows for hashes in window.values() for h in hashes)

    def after(
        self, entry_keys: Sequence[str], normalized: Mapping[str, Hashes]
    ) -> tuple[dict[str, Hashes], dict[str, Hashes]]:
        """The window once a body with ``entry_keys`` is stored: (current, previous).

        ``normalized`` gives the hashes of the entries this poll normalized; the others
        were skipped as known and keep the hashes the window holds for them. Entries of the
        old current that the body no longer lists become the margin; older ones go."""
        current: dict[str, Hashes] = {}
        for key in entry_keys:
            if key in normalized:
                current[key] = normalized[key]
            elif key in self.current:
                current[key] = self.current[key]
            elif key in self.previous:
                current[key] = self.previous[key]
            # else: neither normalized nor known (a cap stopped the parse before it)
        previous = {k: v for k, v in self.current.items() if k not in current}
        return current, previous


def _pack(window: Mapping[str, Hashes]) -> dict[bytes, bytes]:
    # Raw digests, not hex: half the bytes, and small windows stay in Redis' listpack form.
    return {
        bytes.fromhex(key): b"".join(bytes.fromhex(h) for h in hashes)
        for key, hashes in window.items()
    }


def _unpack(raw: Mapping[bytes, bytes]) -> dict[str, Hashes]:
    return {
        key.hex(): tuple(value[i : i + 32].hex() for i in range(0, len(value), 32))
        for key, value in raw.items()
    }


class SeenCache:
    """Per feed, the entries of its current window and the articles they were stored as.

    Bounded by the fleet, not by the archive: each feed keeps its last delivered body's
    entries and the ones that left with it, about two windows at most, whatever it has
    delivered over time. An entry that comes back after that is normalized again and its
    article found stored (extra work, never a duplicate: Postgres' unique key decides)."""

    def __init__(self, redis: Redis, *, ttl_seconds: int) -> None:
        self._redis = redis
        self._ttl = ttl_seconds

    @staticmethod
    def keys(feed_id: int) -> tuple[str, str]:
        return f"aggregator:window:{feed_id}", f"aggregator:window:{feed_id}:previous"

    async def window(self, feed_id: int) -> FeedWindow:
        current, previous = self.keys(feed_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(current)
            pipe.hgetall(previous)
            raw_current, raw_previous = await pipe.execute()
        return FeedWindow(_unpack(raw_current), _unpack(raw_previous))

    async def remember(
        self,
        feed_id: int,
        entries: Mapping[str, Hashes],
        *,
        departed: Mapping[str, Hashes] | None,
    ) -> None:
        """Record a stored body's entries. With ``departed`` (a poll: the whole body) they
        replace the window and ``departed`` becomes its margin; without (a push) they are
        added to it. Call only after the commit: every hash here belongs to a stored article."""
        if not entries and departed is None:
            return
        current, previous = self.keys(feed_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            if departed is not None:
                pipe.delete(current, previous)
                if departed:
                    pipe.hset(previous, mapping=_pack(departed))
                    pipe.expire(previous, self._ttl)
            if entries:
                pipe.hset(current, mapping=_pack(entries))
                pipe.expire(current, self._ttl)
            await pipe.execute()
