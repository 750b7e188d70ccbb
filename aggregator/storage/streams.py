"""Stream subscribers: deliveries as entries of the Redis stream ``aggregator:stream:NAME``.

For consumers in any language: each entry has the fields ``id`` (the article id)
and ``article`` (the same JSON payload as the arq job), and consumers read it
through their own consumer groups (XREADGROUP, XACK, XAUTOCLAIM).

Exactly once per subscriber across a crash: the relay adds a row's entry with a
script that also records the row's outbox id in ``aggregator:stream:NAME:relayed``
and adds nothing for an id at or below it. The relay runs one pass at a time, in
outbox id order, so a row relayed again after a crash (added, but not yet marked
sent) is skipped. Replays add with fresh ids and leave the marker alone.

Retention: each add trims entries older than ``RETENTION`` (``XADD MINID ~``), the
same 7 days a queued arq delivery waits. Needs Redis 6.2 or later.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from arq.connections import ArqRedis
from redis.exceptions import ResponseError

from aggregator import queue
from aggregator.consumer import DELIVERY_EXPIRES, check_name

STREAM_PREFIX = "aggregator:stream:"
RETENTION = DELIVERY_EXPIRES

# KEYS: stream, marker. ARGV: outbox id, MINID, article id, payload. 1 if added.
_RELAY_ADD = """
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[1]) <= last then
    return 0
end
redis.call('XADD', KEYS[1], 'MINID', '~', ARGV[2], '*', 'id', ARGV[3], 'article', ARGV[4])
redis.call('SET', KEYS[2], ARGV[1])
return 1
"""


def stream_key(subscriber: str) -> str:
    """The stream a stream subscriber reads: ``aggregator:stream:NAME``."""
    return STREAM_PREFIX + check_name(subscriber)


def marker_key(subscriber: str) -> str:
    """The last outbox id the relay added to the subscriber's stream."""
    return stream_key(subscriber) + ":relayed"


def _min_id() -> str:
    return str(int((time.time() - RETENTION.total_seconds()) * 1000))


async def relay_add(
    redis: ArqRedis, subscriber: str, outbox_id: int, payload: dict[str, Any]
) -> bool:
    """Add a live delivery unless this outbox row (or a later one) was already added."""
    added = await redis.eval(  # type: ignore[misc]
        _RELAY_ADD,
        2,
        stream_key(subscriber),
        marker_key(subscriber),
        str(outbox_id),
        _min_id(),
        str(payload["id"]),
        queue.serialize(payload).decode(),
    )
    return bool(added)


async def add(redis: ArqRedis, subscriber: str, payload: dict[str, Any]) -> None:
    """Add a replayed delivery (a new entry every time)."""
    await redis.xadd(
        stream_key(subscriber),
        {"id": payload["id"], "article": queue.serialize(payload)},
        minid=_min_id(),
        approximate=True,
    )


@dataclass(frozen=True, slots=True)
class Group:
    name: str
    pending: int  # read by a consumer of the group, not acknowledged yet
    lag: int | None  # entries not read by the group yet (None: the server does not say)


async def describe(redis: ArqRedis, subscriber: str) -> tuple[int, list[Group]]:
    """The entries the stream retains, and its consumer groups."""
    key = stream_key(subscriber)
    length = int(await redis.xlen(key))
    try:
        raw = await redis.xinfo_groups(key)
    except ResponseError:  # no such key: nothing was added yet
        return length, []
    groups = []
    for info in raw:
        name = info["name"]
        lag = info.get("lag")
        groups.append(
            Group(
                name.decode() if isinstance(name, bytes) else str(name),
                int(info["pending"]),
                int(lag) if lag is not None else None,
            )
        )
    return length, groups


async def remove(redis: ArqRedis, subscriber: str) -> None:
    await redis.delete(stream_key(subscriber), marker_key(subscriber))
