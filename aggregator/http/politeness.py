"""Politeness: per-host limits on concurrent requests and request rate, fleet-wide.

The state lives in Redis, so every worker on every machine shares it: a sorted
set of in-flight request tokens per host (each with an expiry, so a crashed
worker's slot frees itself) and the earliest time the next request may start.
A host that answers 429 or 503 is penalized for a while: half the concurrency
and half the rate. One Lua script decides atomically, on Redis' clock.

The asks of one process travel together: a poll job fetches its batch of feeds
side by side, and their asks (and the slots given back meanwhile) go to Redis in
one script call, not two round trips a fetch. A slot given back waits for the next
call, at most ``RELEASE_DELAY`` seconds (or is given back on close).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from redis.asyncio import Redis

from aggregator.errors import HostBusyError
from aggregator.settings import Settings

# KEYS: the slots given back (in-flight zset of each), then per ask its host's in-flight
# zset, next-start key and penalty key.
# ARGV: how many slots are given back, their tokens; then per ask: token, concurrency,
# seconds between starts, slot lifetime (s).
# Returns per ask "0" when the slot is taken, else seconds to wait before asking again.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local released = tonumber(ARGV[1])
for i = 1, released do
  redis.call('ZREM', KEYS[i], ARGV[1 + i])
end
local answers = {}
local asks = (#KEYS - released) / 3
for a = 0, asks - 1 do
  local k = released + a * 3
  local v = 1 + released + a * 4
  local inflight, next_key, penalty_key = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3]
  redis.call('ZREMRANGEBYSCORE', inflight, '-inf', now)
  local penalty = tonumber(redis.call('GET', penalty_key) or '1')
  local limit = math.max(1, math.floor(tonumber(ARGV[v + 2]) / penalty))
  local answer = '0'
  if redis.call('ZCARD', inflight) >= limit then
    answer = '0.05'
  else
    local spacing = tonumber(ARGV[v + 3]) * penalty
    local next_start = tonumber(redis.call('GET', next_key) or '0')
    if now < next_start then
      answer = tostring(next_start - now)
    else
      redis.call('ZADD', inflight, now + tonumber(ARGV[v + 4]), ARGV[v + 1])
      redis.call('EXPIRE', inflight, math.ceil(tonumber(ARGV[v + 4])) + 60)
      redis.call('SET', next_key, tostring(now + spacing), 'PX', math.ceil(spacing * 1000) + 1000)
    end
  end
  answers[a + 1] = answer
end
return answers
"""

PENALTY = 2
# Slots given back wait this long for an ask to travel with (a fetch done, another one
# of the batch asks next); then they go on their own.
RELEASE_DELAY = 0.01


def host_of(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


Arg = str | int | float


@dataclass
class _Ask:
    keys: list[str]
    args: list[Arg]
    answer: asyncio.Future[float] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class HostLimiter:
    def __init__(self, redis: Redis, settings: Settings) -> None:
        self._redis = redis
        self._settings = settings
        self._script = redis.register_script(_ACQUIRE)
        self._asks: list[_Ask] = []
        self._released: list[tuple[str, str]] = []  # (in-flight key, token)
        self._trip: asyncio.Task[None] | None = None
        self._trip_delayed = False
        self._trips: set[asyncio.Task[None]] = set()

    @staticmethod
    def _keys(host: str) -> list[str]:
        prefix = f"aggregator:host:{host}"
        return [f"{prefix}:inflight", f"{prefix}:next", f"{prefix}:penalty"]

    @asynccontextmanager
    async def slot(self, url: str) -> AsyncIterator[None]:
        """Wait for a turn at the URL's host, hold it for the request, then give it back."""
        settings = self._settings
        host = host_of(url)
        keys = self._keys(host)
        token = uuid.uuid4().hex
        lifetime = settings.fetch_timeout + 10  # a crashed holder's slot frees itself
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settings.host_wait
        args: list[Arg] = [token, settings.host_concurrency, 1 / settings.host_rate, lifetime]
        while True:
            wait = await self._ask(keys, args)
            if wait == 0:
                break
            if loop.time() + wait > deadline:
                raise HostBusyError(f"{host} is busy; deferred")
            await asyncio.sleep(min(wait, 1.0))
        try:
            yield
        finally:
            self._released.append((keys[0], token))
            self._schedule(RELEASE_DELAY)

    async def _ask(self, keys: list[str], args: list[Arg]) -> float:
        ask = _Ask(keys, args)
        self._asks.append(ask)
        self._schedule(0)
        return await ask.answer

    def _schedule(self, delay: float) -> None:
        """A round trip soon: at the end of this turn of the event loop for asks (every
        fetch of a batch asks in the same turn), after ``delay`` for slots given back."""
        if self._trip is not None and not (delay == 0 and self._trip_delayed):
            return
        if self._trip is not None:
            self._trip.cancel()  # a delayed trip for releases: asks go now, with them
        self._trip_delayed = delay > 0
        self._trip = asyncio.get_running_loop().create_task(self._round_trip(delay))
        self._trips.add(self._trip)
        self._trip.add_done_callback(self._trips.discard)

    async def _round_trip(self, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        else:
            await asyncio.sleep(0)  # the other asks of this turn join
        self._trip = None
        asks, self._asks = self._asks, []
        released, self._released = self._released, []
        if not asks and not released:
            return
        keys = [key for key, _ in released] + [k for ask in asks for k in ask.keys]
        args: list[Arg] = [len(released), *(token for _, token in released)]
        args += [a for ask in asks for a in ask.args]
        try:
            answers = await self._script(keys=keys, args=args)
        except BaseException as exc:  # every ask of the trip hears it (slots given back
            for ask in asks:  # meanwhile expire on their own)
                if ask.answer.done():
                    continue
                if isinstance(exc, Exception):
                    ask.answer.set_exception(exc)
                else:
                    ask.answer.cancel()
            if not isinstance(exc, Exception):
                raise
            return
        for ask, answer in zip(asks, answers, strict=True):
            wait = float(answer)
            if not ask.answer.done():
                ask.answer.set_result(wait)
            elif wait == 0:  # its asker is gone (cancelled): the slot it got goes back
                self._released.append((ask.keys[0], str(ask.args[0])))
                self._schedule(RELEASE_DELAY)

    async def close(self) -> None:
        """Give back the slots still waiting to travel (a daemon that stops)."""
        if self._trip is not None:
            self._trip.cancel()
            self._trip = None
        released, self._released = self._released, []
        if released:
            with contextlib.suppress(Exception):
                await self._script(
                    keys=[key for key, _ in released],
                    args=[len(released), *(token for _, token in released)],
                )

    async def penalize(self, url: str) -> None:
        """The host said slow down (429/503): halve its concurrency and rate for a while."""
        await self._redis.set(
            self._keys(host_of(url))[2], PENALTY, ex=int(self._settings.host_penalty_seconds)
        )
