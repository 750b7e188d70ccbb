"""The scenarios: cold ingest, steady cycle, freshness and growth, each on the same farm.

Every function returns plain dicts (rows for the table, extras for the JSON).
A row is one system in one scenario:

* ``items``: feed items ingested, i.e. made queryable in that system's store
  (for us a sighting row; an article carried by five feeds is five items and
  one unique ``article``); ``articles_per_s`` is items per wall second, the
  figure comparable across systems;
* ``cpu_s_per_1k``: CPU seconds per 1,000 items of the system and its
  database (our daemon and its parse processes, its Postgres backends and
  Redis; reader's own process, SQLite inside it; the loop and its Postgres
  backends). The feed farm's CPU is the load generator's and not counted;
* ``peak_rss_mb``: per role, the largest single process and the sum.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from bench import measure, module_env, services, synthetic
from bench.farm import FarmProcess
from bench.ours import Ours, store_payload


@dataclass(frozen=True)
class Sizes:
    cold_feeds: int
    items: int
    steady_feeds: int
    changed_share: float
    fresh_feeds: int
    fresh_interval: float
    fresh_seconds: float
    fresh_rate: float  # new items published per second
    growth_levels: tuple[int, ...]  # stored articles before timing store_batch
    growth_batches: int  # feeds of 20 items stored at each level
    growth_feed_levels: tuple[int, ...]  # fleets for articles/s (steady cycles)
    reader_workers: int = 16

    @property
    def farm_feeds(self) -> int:
        return max(self.cold_feeds, self.steady_feeds, self.fresh_feeds, *self.growth_feed_levels)


QUICK = Sizes(
    cold_feeds=20,
    items=20,
    steady_feeds=100,
    changed_share=0.05,
    fresh_feeds=10,
    fresh_interval=2,
    fresh_seconds=4,
    fresh_rate=3,
    growth_levels=(0, 1_000),
    growth_batches=2,
    growth_feed_levels=(100,),
)
DEFAULT = Sizes(
    cold_feeds=1_000,
    items=20,
    steady_feeds=10_000,
    changed_share=0.05,
    fresh_feeds=200,
    fresh_interval=10,
    fresh_seconds=40,
    fresh_rate=4,
    growth_levels=(0, 10_000, 50_000),
    growth_batches=25,
    growth_feed_levels=(1_000, 10_000),
)
FULL = Sizes(
    cold_feeds=2_000,
    items=20,
    steady_feeds=10_000,
    changed_share=0.05,
    fresh_feeds=500,
    fresh_interval=30,
    fresh_seconds=120,
    fresh_rate=5,
    growth_levels=(0, 100_000, 1_000_000),
    growth_batches=50,
    growth_feed_levels=(1_000, 10_000, 100_000),
)


def row(
    scenario: str,
    system: str,
    *,
    feeds: int,
    items: int,
    seconds: float,
    cpu_seconds: float,
    watch: dict[str, Any],
    **extra: Any,
) -> dict[str, Any]:
    return {
        "scenario": scenario,
        "system": system,
        "feeds": feeds,
        "items": items,
        "seconds": round(seconds, 2),
        "feeds_per_s": round(feeds / seconds, 1) if seconds else None,
        "articles_per_s": round(items / seconds, 1) if seconds else None,
        "cpu_seconds": round(cpu_seconds, 2),
        "cpu_s_per_1k": round(1000 * cpu_seconds / items, 2) if items else None,
        "peak_rss_mb": {
            role: {"max": usage["peak_rss_mb"], "sum": usage["peak_total_rss_mb"]}
            for role, usage in watch["roles"].items()
        },
        "machine_busy_cpu_seconds": watch["machine_busy_cpu_seconds"],
        **extra,
    }


def ours_row(scenario: str, feeds: int, result: dict[str, Any], **extra: Any) -> dict[str, Any]:
    roles = result["roles"]
    cpu = sum(roles[r]["cpu_seconds"] for r in ("daemon", "postgres", "redis"))
    return row(
        scenario,
        "ours",
        feeds=feeds,
        items=result["items"],
        seconds=result["wall_seconds"],
        cpu_seconds=cpu,
        watch=result,
        unique_articles=result["articles"],
        daemon_cpu_seconds=roles["daemon"]["cpu_seconds"],
        cpu_seconds_by_role={r: roles[r]["cpu_seconds"] for r in ("daemon", "postgres", "redis")},
        event_loop_cpu_seconds=roles["daemon_loop"]["cpu_seconds"],
        all_queued_after_s=result.get("all_queued_after_s"),
        all_polled_after_s=result.get("all_polled_after_s"),
        failed_feeds=result["failed_feeds"],
        **extra,
    )


def _queued_after(log: str, spawned_at: float) -> float | None:
    """Spawn to the "polling N feeds once" line: start-up, leasing every feed and queueing
    its poll (the workers already run meanwhile)."""
    for line in Path(log).read_text(errors="replace").splitlines():
        if "feeds once" in line:
            with contextlib.suppress(ValueError, KeyError):
                stamp = json.loads(line)["timestamp"].replace("Z", "+00:00")
                return round(datetime.fromisoformat(stamp).timestamp() - spawned_at, 2)
    return None


async def ours_once(ours: Ours, *, profile: Path | None = None) -> dict[str, Any]:
    spawned = time.time()
    result = await ours.run_once(profile=profile)
    result["all_queued_after_s"] = _queued_after(result["log"], spawned)
    return result


def changed_feeds(feeds: int, share: float, seed: int) -> list[int]:
    return sorted(random.Random(seed).sample(range(feeds), round(feeds * share)))


# --- peers -----------------------------------------------------------------------------------


def reader_available() -> str | None:
    """None when lemon24/reader can run here, else why not."""
    try:
        import reader  # noqa: F401
        import sgmllib  # noqa: F401  (sgmllib3k: reader's feedparser needs it for loose parsing)
    except ImportError as exc:
        return f"not installed ({exc.name}); pip install -e '.[bench]'"
    return None


class Peer:
    """A peer process that polls the farm's feeds once per cycle when told."""

    def __init__(
        self, kind: str, urls: list[str], farm: FarmProcess, workdir: Path, **options: Any
    ):
        self.kind, self.farm, self.workdir = kind, farm, workdir
        self.urls_file = workdir / f"{kind}-urls.txt"
        self.urls_file.write_text("\n".join(urls))
        self.turn = workdir / f"{kind}-turn"
        self.turn.write_text("0")
        self.options = options
        self.database: str | None = None
        self.cycle = 0

    async def start(self, cycles: int) -> None:
        args = [
            sys.executable,
            "-m",
            "bench.peers",
            self.kind,
            "--urls",
            str(self.urls_file),
            "--cycles",
            str(cycles),
            "--turn",
            str(self.turn),
        ]
        if self.kind == "reader":
            args += [
                "--sqlite",
                str(self.workdir / "reader.sqlite"),
                "--workers",
                str(self.options["workers"]),
            ]
        else:
            server = services.server_database_url()
            self.database = services.database_name("sequential")
            dsn = await services.create_database(server, self.database)
            args += ["--dsn", dsn]
        self.proc = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.PIPE, cwd=self.workdir, env=module_env()
        )

    async def run_cycle(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Run the next cycle; its own report and the watch around it."""
        roles: dict[str, measure.PidSource] = {
            "peer": measure.tree(self.proc.pid),
            "farm": measure.fixed(self.farm.pid),
        }
        if self.database:
            roles["postgres"] = measure.postgres_backends(self.database)
        with measure.Watch(roles) as watch:
            self.turn.write_text(str(self.cycle))
            assert self.proc.stdout is not None
            line = await self.proc.stdout.readline()
        if not line:
            code = await self.proc.wait()
            raise RuntimeError(
                f"peer {self.kind} exited {code} before reporting cycle {self.cycle}"
            )
        self.cycle += 1
        return json.loads(line), watch.report()

    async def close(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()
        if self.database:
            await services.drop_database(services.server_database_url(), self.database)


def peer_row(
    scenario: str, kind: str, feeds: int, own: dict[str, Any], watch: dict[str, Any]
) -> dict[str, Any]:
    db_cpu = watch["roles"].get("postgres", {}).get("cpu_seconds", 0.0)
    return row(
        scenario,
        kind,
        feeds=feeds,
        items=own["items"],
        seconds=own["seconds"],
        cpu_seconds=own["cpu_seconds"] + db_cpu,
        watch=watch,
        errors=own.get("errors", 0),
    )


# --- cold ingest, then one steady cycle, for us and both peers -------------------------------


async def cold_and_steady(
    farm: FarmProcess, sizes: Sizes, *, peers: bool, overrides: dict[str, str], workdir: Path
) -> dict[str, Any]:
    feeds = list(range(sizes.cold_feeds))
    await farm.warm(0, sizes.cold_feeds)
    rows: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    running: list[Peer] = []
    async with Ours("cold", farm.base_url, farm.pid, overrides=overrides) as ours:
        # With no feed registered: the fixed cost inside every timed run of ours.
        startup = (await ours_once(ours))["wall_seconds"]
        await ours.add_feeds(feeds)
        rows.append(ours_row("cold", len(feeds), await ours_once(ours)))
        kinds = ["reader", "sequential"] if peers else []
        for kind in kinds:
            if kind == "reader" and (why := reader_available()):
                skipped[kind] = why
                continue
            peer = Peer(
                kind, [farm.url(f) for f in feeds], farm, workdir, workers=sizes.reader_workers
            )
            await peer.start(cycles=2)
            running.append(peer)
            own, watch = await peer.run_cycle()
            rows.append(peer_row("cold", kind, len(feeds), own, watch))
        try:
            changed = changed_feeds(sizes.cold_feeds, sizes.changed_share, seed=1)
            # The steady cycle of a running daemon, as the peers' is theirs: started after
            # cold ingest with nothing due, up and idle, then every feed made due at once.
            await ours.hold_feeds()
            async with ours.daemon(flush=False) as proc:
                ready_after = await ours.wait_idle(proc)
                await farm.advance(changed)
                await farm.warm(0, sizes.cold_feeds)
                cycle = await ours.cycle(proc)
            rows.append(
                ours_row(
                    f"steady@{len(feeds)}",
                    len(feeds),
                    cycle,
                    changed_feeds=len(changed),
                    daemon_ready_after_s=ready_after,
                )
            )
            for peer in running:
                own, watch = await peer.run_cycle()
                rows.append(peer_row(f"steady@{len(feeds)}", peer.kind, len(feeds), own, watch))
        finally:
            for peer in running:
                await peer.close()
    return {"rows": rows, "skipped_peers": skipped, "ours_empty_run_seconds": startup}


# --- steady cycle at the full fleet size (ours) ----------------------------------------------


async def steady(
    farm: FarmProcess,
    feeds: int,
    share: float,
    *,
    overrides: dict[str, str],
    profile: Path | None = None,
) -> dict[str, Any]:
    """A cycle of ``feeds`` feeds of which ``share`` changed since the last poll.

    The state before the cycle is built as a real daemon would have it: the feeds
    that will change are ingested for real (a run over them alone), the others are
    registered with the validators of the version the farm serves (so they answer
    304, as after any earlier poll). Then the farm publishes on the changed feeds
    and one ``run --once`` polls the whole fleet."""
    changed = changed_feeds(feeds, share, seed=feeds)
    async with Ours(f"steady{feeds}", farm.base_url, farm.pid, overrides=overrides) as ours:
        await ours.add_feeds(changed)
        await farm.warm(feeds=changed)  # the others answer 304 from their validators
        warm = await ours_once(ours)
        state = await farm.state(f"0-{feeds - 1}")
        validators = {int(f): (v[0], v[1]) for f, v in state["validators"].items()}
        await ours.add_feeds(range(feeds), validators)
        await farm.advance(changed)
        await farm.warm(feeds=changed)  # render the new versions now, not while timed
        result = await ours_once(ours, profile=profile)
        return {
            "row": ours_row(f"steady@{feeds}", feeds, result, changed_feeds=len(changed)),
            "warm_up": {
                "feeds": len(changed),
                "seconds": warm["wall_seconds"],
                "items": warm["items"],
            },
        }


# --- freshness: items appear while the daemon runs --------------------------------------------


async def freshness(
    farm: FarmProcess, sizes: Sizes, *, overrides: dict[str, str]
) -> dict[str, Any]:
    interval = str(sizes.fresh_interval)
    fresh_overrides = overrides | {
        "AGGREGATOR_POLL_INTERVAL": interval,
        "AGGREGATOR_MIN_INTERVAL": interval,
        "AGGREGATOR_MAX_INTERVAL": interval,
    }
    feeds = list(range(sizes.fresh_feeds))
    await farm.warm(0, sizes.fresh_feeds)
    async with Ours("fresh", farm.base_url, farm.pid, overrides=fresh_overrides) as ours:
        await ours.add_feeds(feeds)
        conn = await asyncpg.connect(ours.database_url)
        try:
            async with ours.daemon() as proc:
                warmed = await _wait_all_polled(conn, len(feeds), proc, timeout=300)
                published: dict[str, float] = {}
                seen: dict[str, float] = {}
                with ours.watch(proc.pid) as watch:
                    watcher = asyncio.create_task(_watch_arrivals(conn, published, seen))
                    rng = random.Random(7)
                    started = time.time()
                    while time.time() - started < sizes.fresh_seconds:
                        for _, guid, at in await farm.advance([rng.choice(feeds)]):
                            published[guid] = at
                        await asyncio.sleep(rng.expovariate(sizes.fresh_rate))
                    deadline = time.time() + sizes.fresh_interval * 1.5 + 10
                    while len(seen) < len(published) and time.time() < deadline:
                        if proc.returncode is not None:
                            raise RuntimeError(f"the daemon exited {proc.returncode}")
                        await asyncio.sleep(0.1)
                    watcher.cancel()
                    await asyncio.gather(watcher, return_exceptions=True)
        finally:
            await conn.close()
    lags = sorted(seen[g] - published[g] for g in seen)
    report = watch.report()
    roles = report["roles"]
    cpu = sum(roles[r]["cpu_seconds"] for r in ("postgres", "redis", "daemon"))
    return {
        "row": row(
            "freshness",
            "ours",
            feeds=len(feeds),
            items=len(seen),
            seconds=report["wall_seconds"],
            cpu_seconds=cpu,
            watch=report,
            lag_p50=_quantile(lags, 0.5),
            lag_p99=_quantile(lags, 0.99),
            lag_max=round(lags[-1], 2) if lags else None,
            poll_interval=sizes.fresh_interval,
            published=len(published),
            missing=len(published) - len(seen),
        ),
        "warm_up_seconds": warmed,
    }


async def _wait_all_polled(
    conn: asyncpg.Connection, feeds: int, proc: asyncio.subprocess.Process, *, timeout: float
) -> float:
    """Wait for the daemon's first pass over every feed, and its store queue to settle."""
    started = time.perf_counter()
    last, stable_since = -1, time.perf_counter()
    while time.perf_counter() - started < timeout:
        if proc.returncode is not None:
            raise RuntimeError(f"the daemon exited {proc.returncode} during warm-up")
        polled = await conn.fetchval("SELECT count(*) FROM feeds WHERE last_polled_at IS NOT NULL")
        sightings = await conn.fetchval("SELECT count(*) FROM article_sources")
        if sightings != last:
            last, stable_since = sightings, time.perf_counter()
        if polled >= feeds and time.perf_counter() - stable_since > 1.0:
            return round(time.perf_counter() - started, 2)
        await asyncio.sleep(0.2)
    raise TimeoutError(f"the daemon did not poll {feeds} feeds in {timeout:.0f}s")


async def _watch_arrivals(
    conn: asyncpg.Connection, published: dict[str, float], seen: dict[str, float]
) -> None:
    """Note when each published guid becomes queryable (a committed sighting)."""
    while True:
        pending = [g for g in published if g not in seen]
        if pending:
            rows = await conn.fetch(
                "SELECT DISTINCT guid FROM article_sources WHERE guid = ANY($1::text[])", pending
            )
            now = time.time()
            for r in rows:
                seen.setdefault(r["guid"], now)
        await asyncio.sleep(0.1)


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 2)
    return round(statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1], 2)


# --- growth: store cost as the archive grows --------------------------------------------------


def _seed_paragraphs(count: int = 500) -> list[str]:
    rng = random.Random(11)
    words = synthetic.VOCABULARY["en"]
    return [" ".join(rng.choices(words, k=66)) for _ in range(count)]


# 2 kB of English-like text per article: five of 500 paragraphs, picked by hashing its number.
_SEED_ARTICLES = """
WITH p AS (SELECT $3::text[] AS p)
INSERT INTO articles (content_hash, canonical_url, title, summary, content_text, language,
                      region, published_at, first_seen_at)
SELECT encode(sha256(('seed:' || g)::bytea), 'hex'),
       'https://seed.example/' || g,
       'Seeded story ' || g,
       '',
       p[1 + abs(hashint8(g * 5)) % 500] || E'\n\n' || p[1 + abs(hashint8(g * 5 + 1)) % 500]
         || E'\n\n' || p[1 + abs(hashint8(g * 5 + 2)) % 500]
         || E'\n\n' || p[1 + abs(hashint8(g * 5 + 3)) % 500]
         || E'\n\n' || p[1 + abs(hashint8(g * 5 + 4)) % 500],
       'en', 'gulf', now() - make_interval(secs => g), now()
FROM p, generate_series($1::bigint, $2::bigint) g
"""
_SEED_ROWS = """
INSERT INTO article_sources (article_id, feed_id, url, guid, title, seen_at)
SELECT id, $1, canonical_url, canonical_url, title, first_seen_at FROM articles WHERE id > $2;
"""
_SEED_KEYS = """
INSERT INTO story_keys (article_id, published_at, codes)
SELECT a.id, a.published_at,
       ARRAY(SELECT (hashint8(a.id * 64 + k)::bigint << 32) # hashint8(a.id * 64 + k + 32)
             FROM generate_series(1, 33) k)
FROM articles a WHERE a.id > $1
"""
_SEED_OUTBOX = """
INSERT INTO outbox (article_id, created_at, sent_at)
SELECT id, first_seen_at, now() FROM articles WHERE id > $1 ORDER BY id
"""
_SIZE = """
SELECT sum(pg_total_relation_size(c.oid))::bigint FROM pg_class c
WHERE c.relname IN ('articles', 'article_sources', 'story_keys', 'story_key_claims', 'outbox',
                    'stories')
"""


async def growth_store(sizes: Sizes) -> dict[str, Any]:
    """Seconds and bytes per stored article, measured with ``store_batch`` as the archive grows.

    The archive is seeded in SQL (2 kB English-like text per article, a sighting,
    33 story keys and a sent outbox row each, like a stored article); then
    ``growth_batches`` farm feeds of fresh articles are stored one batch at a
    time on one connection, as a store worker does."""
    from aggregator.storage.articles import store_batch
    from bench.store import fresh_batch

    server = services.server_database_url()
    name = services.database_name("growth")
    url = await services.create_database(server, name)
    levels = []
    try:
        from aggregator.storage import db

        await db.migrate(url)
        conn = await asyncpg.connect(url)
        seed_feed = await conn.fetchval(
            "INSERT INTO feeds (url) VALUES ('https://seed.example/feed') RETURNING id"
        )
        stored = 0
        paragraphs = _seed_paragraphs()
        for level_no, level in enumerate(sizes.growth_levels):
            seeding = time.perf_counter()
            step = 50_000
            while stored < level:
                upto = min(level, stored + step)
                last_id = await conn.fetchval("SELECT coalesce(max(id), 0) FROM articles")
                await conn.execute(_SEED_ARTICLES, stored + 1, upto, paragraphs)
                await conn.execute(_SEED_ROWS, seed_feed, last_id)
                await conn.execute(_SEED_KEYS, last_id)
                await conn.execute(_SEED_OUTBOX, last_id)
                stored = upto
            await conn.execute("VACUUM ANALYZE")
            seeded_in = time.perf_counter() - seeding
            total = await conn.fetchval("SELECT count(*) FROM articles")
            size = await conn.fetchval(_SIZE)
            now = datetime.now(UTC)
            batches = []
            for b in range(sizes.growth_batches):
                feed_no = 1_000_000 + level_no * 10_000 + b  # never served by the farm: fresh
                feed_id = await conn.fetchval(
                    "INSERT INTO feeds (url) VALUES ($1) RETURNING id",
                    f"https://{synthetic.outlet_host(feed_no)}/feed",
                )
                batches.append(fresh_batch(feed_no, feed_id, now, items=sizes.items))
            new = 0
            timing = time.perf_counter()
            for batch in batches:
                result = await store_batch(conn, batch)
                new += result.new
            seconds = time.perf_counter() - timing
            size_after = await conn.fetchval(_SIZE)
            levels.append(
                {
                    "stored_before": total,
                    "batches": len(batches),
                    "new_articles": new,
                    "ms_per_article": round(1000 * seconds / max(new, 1), 3),
                    "articles_per_s": round(new / seconds, 1) if seconds else None,
                    "bytes_per_article": round(size / total) if total else None,
                    "bytes_per_new_article": round((size_after - size) / max(new, 1)),
                    "seed_seconds": round(seeded_in, 1),
                }
            )
            stored = await conn.fetchval("SELECT count(*) FROM articles")
        await conn.close()
    finally:
        await services.drop_database(server, name)
    return {"levels": levels}


async def growth_feeds(
    farm: FarmProcess, sizes: Sizes, known: dict[int, dict[str, Any]], *, overrides: dict[str, str]
) -> dict[str, Any]:
    """Articles/s of a steady cycle (5 % changed) as the fleet grows; reuses measured sizes."""
    rows = []
    for feeds in sizes.growth_feed_levels:
        found = known.get(feeds)
        if found is None:
            found = (await steady(farm, feeds, sizes.changed_share, overrides=overrides))["row"]
        rows.append(
            {
                k: found[k]
                for k in (
                    "feeds",
                    "items",
                    "seconds",
                    "feeds_per_s",
                    "articles_per_s",
                    "cpu_s_per_1k",
                )
            }
        )
    return {"levels": rows}


# --- one run of everything --------------------------------------------------------------------

Step = Callable[[], Awaitable[Any]]


async def run_all(
    sizes: Sizes,
    *,
    scenarios: set[str],
    peers: bool,
    overrides: dict[str, str],
    progress: Callable[[str], None],
) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    out: dict[str, Any] = {"scenarios": sorted(scenarios), "rows": [], "sizes": asdict(sizes)}
    redis = services.redis_url()
    await services.claim_redis(redis)
    try:
        async with FarmProcess(sizes.farm_feeds, items=sizes.items) as farm:
            out["farm"] = {"feeds": sizes.farm_feeds, "items": sizes.items, "url": farm.base_url}
            known: dict[int, dict[str, Any]] = {}
            if "cold" in scenarios:
                progress(
                    f"cold ingest: {sizes.cold_feeds} feeds x {sizes.items} items, "
                    f"then a steady cycle ({'with' if peers else 'without'} peers)"
                )
                chain = await cold_and_steady(
                    farm, sizes, peers=peers, overrides=overrides, workdir=workdir
                )
                out["rows"] += chain["rows"]
                out["skipped_peers"] = chain["skipped_peers"]
                out["ours_empty_run_seconds"] = chain["ours_empty_run_seconds"]
                out["store_payload"] = store_payload(range(min(sizes.cold_feeds, 100)))
                known[sizes.cold_feeds] = next(
                    r for r in chain["rows"] if r["system"] == "ours" and r["scenario"] != "cold"
                )
            if "steady" in scenarios:
                progress(
                    f"steady cycle: {sizes.steady_feeds} feeds, {sizes.changed_share:.0%} changed"
                )
                result = await steady(
                    farm, sizes.steady_feeds, sizes.changed_share, overrides=overrides
                )
                out["rows"].append(result["row"])
                out["steady_warm_up"] = result["warm_up"]
                known[sizes.steady_feeds] = result["row"]
            if "freshness" in scenarios:
                progress(
                    f"freshness: {sizes.fresh_feeds} feeds polled every "
                    f"{sizes.fresh_interval:g}s, items published for {sizes.fresh_seconds:g}s"
                )
                result = await freshness(farm, sizes, overrides=overrides)
                out["rows"].append(result["row"])
            if "growth" in scenarios:
                progress(
                    f"growth: store cost at {', '.join(map(str, sizes.growth_levels))} "
                    "stored articles"
                )
                out["growth_store"] = await growth_store(sizes)
                progress(
                    f"growth: articles/s at {', '.join(map(str, sizes.growth_feed_levels))} feeds"
                )
                out["growth_feeds"] = await growth_feeds(farm, sizes, known, overrides=overrides)
    finally:
        await services.release_redis(redis)
    out["ratios"] = ratios(out["rows"])
    return out


def ratios(rows: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """How many times faster we did each scenario's work than each peer did the same work
    (their wall seconds over ours, on the same farm and feeds)."""
    result: dict[str, dict[str, float | None]] = {}
    for r in rows:
        if r["system"] == "ours":
            continue
        ours = next(
            (o for o in rows if o["system"] == "ours" and o["scenario"] == r["scenario"]), None
        )
        if ours is None:
            continue
        result.setdefault(r["scenario"], {})[r["system"]] = (
            round(r["seconds"] / ours["seconds"], 2) if ours["seconds"] else None
        )
    return result
