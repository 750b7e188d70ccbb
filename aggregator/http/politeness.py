"""Politeness: per-host limits on concurrent requests and request rate, fleet-wide.

The state lives in Redis, so every worker on every machine shares it: a sorted
set of in-flight request tokens per host (each with an expiry, so a crashed
worker's slot frees itself) and the earliest time the next request may start.
A host that answers 429 or 503 is penalized for a while: half the concurrency
and half the rate. One Lua script decides atomically, on Redis' clock.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

from redis.asyncio import Redis

from aggregator.errors import HostBusyError
from aggregator.settings import Settings

# KEYS: in-flight zset, next-start key, penalty key.
# ARGV: token, concurrency, seconds between starts, slot lifetime (s).
# Returns 0 when the slot is taken, else seconds to wait before asking again.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local penalty = tonumber(redis.call('GET', KEYS[3]) or '1')
local limit = math.max(1, math.floor(tonumber(ARGV[2]) / penalty))
if redis.call('ZCARD', KEYS[1]) >= limit then
  return '0.05'
end
local spacing = tonumber(ARGV[3]) * penalty
local next_start = tonumber(redis.call('GET', KEYS[2]) or '0')
if now < next_start then
  return tostring(next_start - now)
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[1])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[4])) + 60)
redis.call('SET', KEYS[2], tostring(now + spacing), 'PX', math.ceil(spacing * 1000) + 1000)
return 0
"""

PENALTY = 2


def host_of(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


class HostLimiter:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self._redis = redis
        self._settings = settings
        self._script = redis.register_script(_ACQUIRE)

    @staticmethod
    def _keys(host: str) -> list[str]:
        prefix = f"aggregator:host:{host}"
        return [f"{prefix}:inflight", f"{prefix}:next", f"{prefix}:penalty"]

    @asynccontextmanager
    async def slot(self, url: str) -> AsyncIterator[None]:
        """Wait for a turn at the URL's host, hold it for the request, then give it back."""
        settings = self._settings
        keys = self._keys(host_of(url))
        token = uuid.uuid4().hex
        lifetime = settings.fetch_timeout + 10  # a crashed holder's slot frees itself
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settings.host_wait
        while True:
            wait = float(
                await self._script(
                    keys=keys,
                    args=[token, settings.host_concurrency, 1 / settings.host_rate, lifetime],
                )
            )
            if wait == 0:
                break
            if loop.time() + wait > deadline:
                raise HostBusyError(f"{host_of(url)} is busy; deferred")
            await asyncio.sleep(min(wait, 1.0))
        try:
            yield
        finally:
            await self._redis.zrem(keys[0], token)

    async def penalize(self, url: str) -> None:
        """The host said slow down (429/503): halve its concurrency and rate for a while."""
        await self._redis.set(
            self._keys(host_of(url))[2], PENALTY, ex=int(self._settings.host_penalty_seconds)
        )
