"""``python -m bench --soak SECONDS``: `aggregator run` over a farm for a long time, with churn.

The daemon runs for real (its own database, Redis database 14) over N farm feeds
(default 10,000) polled every ``interval`` seconds; every cycle a share of the
feeds publishes new items, so the archive grows all along. After the first
pass over every feed (cold ingest, not counted), it samples every ``every``
seconds:

* the daemon's RSS, all its processes summed (the event loop, the parse
  processes, the multiprocessing resource tracker);
* its open file descriptors, summed the same way;
* Redis memory: ``INFO memory`` ``used_memory`` of the whole server, and what our
  database holds (``MEMORY USAGE`` of every key in it), with the feeds' window
  cache (``aggregator:window:*``) apart, per feed;
* the Postgres database's size, per stored article.

and reports each one's least-squares slope per hour. Flat RSS and descriptors
and Redis memory that does not follow the archive are what a long run must
show; the database grows with the archive, so its size *per article* is the
figure that must stay flat. A benchmark, not a test: an hour at 10,000 feeds
wants a quiet machine.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import asyncpg
import psutil
import redis.asyncio

from bench import scenarios
from bench.farm import FarmProcess
from bench.ours import Ours

WINDOW_PREFIX = b"aggregator:window:"


@dataclass(frozen=True)
class SoakSizes:
    feeds: int = 10_000
    interval: float = 60.0  # seconds between two polls of a feed
    churn: float = 0.05  # share of the feeds that publish new items every cycle
    every: float = 15.0  # seconds between samples


def _tree_usage(pid: int) -> tuple[float, int, int]:
    """RSS (MB) and open descriptors summed over the daemon and its descendants; processes."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0, 0, 0
    rss, fds = 0, 0
    for proc in procs:
        try:
            with proc.oneshot():
                rss += proc.memory_info().rss
                fds += proc.num_fds()
        except psutil.Error:
            continue
    return rss / 2**20, fds, len(procs)


async def _redis_usage(client: redis.asyncio.Redis) -> dict[str, int]:
    """The server's used_memory, our database's keys' bytes, and the window cache's."""
    info = await client.info("memory")
    ours = window = windows = 0
    batch: list[bytes] = []

    async def measure(keys: list[bytes]) -> None:
        nonlocal ours, window, windows
        async with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.memory_usage(key)
            sizes = await pipe.execute()
        for key, size in zip(keys, sizes, strict=True):
            ours += size or 0
            if key.startswith(WINDOW_PREFIX):
                window += size or 0
                windows += not key.endswith(b":previous")

    async for key in client.scan_iter(count=2000):
        batch.append(key)
        if len(batch) >= 2000:
            await measure(batch)
            batch = []
    if batch:
        await measure(batch)
    return {
        "used_memory": int(info["used_memory"]),
        "our_db_bytes": ours,
        "window_bytes": window,
        "feeds_with_window": windows,
    }


def slope_per_hour(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, value) points, per hour."""
    if len(points) < 2:
        return None
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return None
    cov = sum((t - mean_t) * (v - mean_v) for t, v in points)
    return cov / var * 3600


async def soak(
    seconds: float,
    sizes: SoakSizes = SoakSizes(),
    *,
    overrides: dict[str, str] | None = None,
    progress: Any = print,
) -> dict[str, Any]:
    interval = f"{sizes.interval:g}"
    soak_overrides = (overrides or {}) | {
        "AGGREGATOR_POLL_INTERVAL": interval,
        "AGGREGATOR_MIN_INTERVAL": interval,
        "AGGREGATOR_MAX_INTERVAL": interval,
    }
    feeds = list(range(sizes.feeds))
    samples: list[dict[str, Any]] = []
    async with FarmProcess(sizes.feeds) as farm:
        await farm.warm(0, min(sizes.feeds, 4_000))
        async with Ours("soak", farm.base_url, farm.pid, overrides=soak_overrides) as ours:
            await ours.add_feeds(feeds)
            conn = await asyncpg.connect(ours.database_url)
            client = redis.asyncio.from_url(ours.redis_url)  # type: ignore[no-untyped-call]
            try:
                async with ours.daemon() as proc:
                    progress(f"soak: first pass over {sizes.feeds:,} feeds (not counted)")
                    warm = await scenarios._wait_all_polled(
                        conn, sizes.feeds, proc, timeout=max(600, sizes.feeds * 0.2)
                    )
                    progress(f"soak: first pass took {warm:.0f}s; soaking for {seconds:.0f}s")
                    started = time.monotonic()
                    next_churn = next_sample = started
                    cycle = 0
                    while (now := time.monotonic()) - started < seconds:
                        if proc.returncode is not None:
                            raise RuntimeError(f"the daemon exited {proc.returncode}")
                        if now >= next_churn:
                            cycle += 1
                            await farm._post(
                                "/_farm/advance", {"share": sizes.churn, "seed": cycle}
                            )
                            next_churn += sizes.interval
                        if now >= next_sample:
                            samples.append(await _sample(proc.pid, conn, client, now - started))
                            last = samples[-1]
                            progress(
                                f"soak: {last['t']:6.0f}s rss {last['rss_mb']:.0f} MB, "
                                f"fds {last['fds']}, redis ours {last['our_db_bytes'] / 2**20:.1f}"
                                f" MB, articles {last['articles']:,}"
                            )
                            next_sample += sizes.every
                        await asyncio.sleep(0.2)
                    samples.append(
                        await _sample(proc.pid, conn, client, time.monotonic() - started)
                    )
                    failed = await conn.fetchval(
                        "SELECT count(*) FROM feeds WHERE last_error IS NOT NULL"
                    )
            finally:
                await client.aclose()
                await conn.close()
    return summarize(samples, sizes=sizes, seconds=seconds, warm_up=warm, failed_feeds=failed)


_COUNTS = """
SELECT (SELECT count(*) FROM articles) AS articles,
       (SELECT count(*) FROM article_sources) AS sightings,
       pg_database_size(current_database()) AS db_bytes
"""


async def _sample(
    pid: int, conn: asyncpg.Connection, client: redis.asyncio.Redis, t: float
) -> dict[str, Any]:
    rss, fds, processes = _tree_usage(pid)
    row = await conn.fetchrow(_COUNTS)
    return {
        "t": round(t, 1),
        "rss_mb": round(rss, 1),
        "fds": fds,
        "processes": processes,
        **await _redis_usage(client),
        "articles": row["articles"],
        "sightings": row["sightings"],
        "db_bytes": row["db_bytes"],
        "db_bytes_per_article": round(row["db_bytes"] / max(row["articles"], 1), 1),
    }


def summarize(
    samples: list[dict[str, Any]], *, sizes: SoakSizes, seconds: float, **extra: Any
) -> dict[str, Any]:
    def series(name: str) -> list[tuple[float, float]]:
        return [(s["t"], float(s[name])) for s in samples]

    first, last = samples[0], samples[-1]
    figures = {}
    for name in (
        "rss_mb",
        "fds",
        "used_memory",
        "our_db_bytes",
        "window_bytes",
        "db_bytes_per_article",
        "articles",
    ):
        slope = slope_per_hour(series(name))
        figures[name] = {
            "first": first[name],
            "last": last[name],
            "min": min(s[name] for s in samples),
            "max": max(s[name] for s in samples),
            "slope_per_hour": None if slope is None else round(slope, 2),
        }
    stored = last["articles"] - first["articles"]
    redis_growth = last["our_db_bytes"] - first["our_db_bytes"]
    return {
        "feeds": sizes.feeds,
        "interval": sizes.interval,
        "churn": sizes.churn,
        "seconds": seconds,
        **extra,
        "articles_stored_while_soaking": stored,
        "redis_bytes_per_new_article": round(redis_growth / stored, 1) if stored else None,
        "window_bytes_per_feed": round(last["window_bytes"] / max(last["feeds_with_window"], 1)),
        "figures": figures,
        "samples": samples,
    }


def render(result: dict[str, Any]) -> str:
    lines = [
        f"soak: {result['feeds']:,} feeds every {result['interval']:g}s, "
        f"{result['churn']:.0%} publishing each cycle, {result['seconds']:.0f}s after a "
        f"{result['warm_up']:.0f}s first pass; {result['articles_stored_while_soaking']:,} "
        f"articles stored while soaking; {result['failed_feeds']} feeds failing",
        f"{'figure':<24} {'first':>14} {'last':>14} {'min':>14} {'max':>14} {'slope/hour':>14}",
    ]
    for name, f in result["figures"].items():
        slope = "-" if f["slope_per_hour"] is None else f"{f['slope_per_hour']:,.1f}"
        lines.append(
            f"{name:<24} {f['first']:>14,} {f['last']:>14,} {f['min']:>14,} {f['max']:>14,} "
            f"{slope:>14}"
        )
    lines.append(
        f"window cache: {result['window_bytes_per_feed']:,} bytes per feed; Redis (our database) "
        f"grew {result['redis_bytes_per_new_article']} bytes per new article"
    )
    return "\n".join(lines)
