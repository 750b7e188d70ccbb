"""Our daemon, run for real: ``aggregator run --once`` (or ``aggregator run``) as a subprocess.

Each system gets a fresh database of its own on the local Postgres and Redis
database 14. The settings are the defaults except what a farm on 127.0.0.1
needs: private addresses allowed, the per-host politeness limits raised (every
farm feed is on one host, which the limiter would otherwise hold to 1 request
a second), and a small minimum interval. ``overrides`` adds ``AGGREGATOR_*``
settings (the lever experiments).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from bench import measure, module_env, services, synthetic
from bench.measure import PidSource

BENCH_SETTINGS = {
    "AGGREGATOR_ALLOW_PRIVATE_NETWORKS": "true",
    "AGGREGATOR_HOST_RATE": "1000000",
    "AGGREGATOR_HOST_CONCURRENCY": "100000",
    "AGGREGATOR_MIN_INTERVAL": "1",
}

_ADD_FEEDS = """
INSERT INTO feeds (url, region, language, etag, last_modified)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])
ON CONFLICT (url) DO NOTHING
"""

_COUNTS = """
SELECT (SELECT count(*) FROM articles) AS articles,
       (SELECT count(*) FROM article_sources) AS sightings,
       (SELECT count(*) FROM feeds WHERE last_error IS NOT NULL) AS failed,
       (SELECT count(*) FROM stories) AS stories
"""


@dataclass
class Ours:
    """One database of ours, and how to run the daemon against it."""

    name: str
    farm_url: str
    farm_pid: int
    overrides: dict[str, str] = field(default_factory=dict)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="bench-ours-")))
    server_url: str = field(default_factory=services.server_database_url)
    redis_url: str = field(default_factory=services.redis_url)
    database_url: str = ""
    runs: int = 0
    redis_pid: int | None = None

    async def __aenter__(self) -> Ours:
        self.db_name = services.database_name(self.name)
        self.database_url = await services.create_database(self.server_url, self.db_name)
        try:
            from aggregator.storage import db

            await db.migrate(self.database_url)
            await services.flush_redis(self.redis_url)
            self.redis_pid = await _redis_pid(self.redis_url)
        except BaseException:
            await services.drop_database(self.server_url, self.db_name)
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await services.drop_database(self.server_url, self.db_name)

    def env(self) -> dict[str, str]:
        # The daemon of the tree this bench belongs to, whatever the venv has installed.
        env = module_env({k: v for k, v in os.environ.items() if not k.startswith("AGGREGATOR_")})
        return (
            env
            | BENCH_SETTINGS
            | {
                "AGGREGATOR_DATABASE_URL": self.database_url,
                "AGGREGATOR_REDIS_URL": self.redis_url,
            }
            | self.overrides
        )

    def feed_url(self, feed: int) -> str:
        return f"{self.farm_url}/feeds/{feed}.xml"

    async def add_feeds(
        self, feeds: Sequence[int], validators: dict[int, tuple[str, str]] | None = None
    ) -> None:
        """Register farm feeds; with ``validators``, as if their current version was polled."""
        validators = validators or {}
        conn = await asyncpg.connect(self.database_url)
        try:
            await conn.execute(
                _ADD_FEEDS,
                [self.feed_url(f) for f in feeds],
                [synthetic.region_of(f) for f in feeds],
                [synthetic.language_of(f) for f in feeds],
                [validators.get(f, (None, None))[0] for f in feeds],
                [validators.get(f, (None, None))[1] for f in feeds],
            )
        finally:
            await conn.close()

    async def counts(self) -> dict[str, int]:
        conn = await asyncpg.connect(self.database_url)
        try:
            return dict(await conn.fetchrow(_COUNTS))
        finally:
            await conn.close()

    def watch(self, pid: int, *, not_backends: frozenset[int] = frozenset()) -> measure.Watch:
        backends = measure.postgres_backends(self.db_name)
        postgres: PidSource = backends
        if not_backends:  # the bench's own connection to our database is not ours
            postgres = lambda: [p for p in backends() if p not in not_backends]  # noqa: E731
        return measure.Watch(
            {
                "daemon": measure.tree(pid),
                # The event loop's process alone (the tree is it plus the parse processes).
                "daemon_loop": measure.fixed(pid),
                "postgres": postgres,
                # The server that holds our database (its process id from INFO), not every
                # redis-server on the machine: another one may serve a soak or a test.
                "redis": measure.fixed(self.redis_pid)
                if self.redis_pid
                else measure.named("redis-server"),
                "farm": measure.fixed(self.farm_pid),
            }
        )

    def _command(self, *args: str, profile: Path | None) -> list[str]:
        command = [sys.executable, "-m", "aggregator", *args]
        if profile is None:
            return command
        spy = Path(sys.executable).with_name("py-spy")
        return [
            str(spy),
            "record",
            "--subprocesses",
            "--rate",
            "200",
            "--format",
            "raw",
            "--nonblocking",
            "-o",
            str(profile),
            "--",
            *command,
        ]

    async def run_once(self, *, profile: Path | None = None) -> dict[str, Any]:
        """``aggregator run --once`` over every registered feed; its numbers. Redis keeps
        what a running daemon keeps between cycles (seen cache, known entries)."""
        await services.flush_queues(self.redis_url)
        before = await self.counts()
        self.runs += 1
        log = self.workdir / f"run-{self.runs}.log"
        with log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                *self._command("run", "--once", profile=profile),
                env=self.env(),
                cwd=self.workdir,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
            )
            with self.watch(proc.pid) as watch:
                code = await proc.wait()
        if code != 0:
            raise RuntimeError(f"aggregator run --once exited {code}; see {log}:\n{_tail(log)}")
        after = await self.counts()
        report = watch.report()
        # The daemon's tree was reaped by us: its CPU is exact, not sampled.
        report["roles"]["daemon"]["cpu_seconds"] = round(watch.children_cpu_seconds(), 3)
        return {
            **report,
            "items": after["sightings"] - before["sightings"],
            "articles": after["articles"] - before["articles"],
            "stories": after["stories"],
            "failed_feeds": after["failed"],
            "log": str(log),
        }

    async def hold_feeds(self) -> None:
        """Make no feed due for a day: a daemon started now idles until ``cycle``."""
        conn = await asyncpg.connect(self.database_url)
        try:
            await conn.execute("UPDATE feeds SET next_poll_at = now() + interval '1 day'")
        finally:
            await conn.close()

    async def wait_idle(self, proc: asyncio.subprocess.Process, *, timeout: float = 120.0) -> float:
        """Wait until the started daemon is up and idle (its start-up done: imports,
        migrations check, parse processes and their language model); seconds waited."""
        import psutil

        started = time.perf_counter()
        tree = measure.tree(proc.pid)
        last = None
        while time.perf_counter() - started < timeout:
            if proc.returncode is not None:
                raise RuntimeError(f"the daemon exited {proc.returncode} while starting")
            cpu = 0.0
            for pid in tree():
                try:
                    times = psutil.Process(pid).cpu_times()
                    cpu += times.user + times.system
                except psutil.Error:
                    pass
            if last is not None and cpu - last < 0.05 and len(tree()) > 1:
                return round(time.perf_counter() - started, 2)
            last = cpu
            await asyncio.sleep(1.0)
        raise TimeoutError(f"the daemon was still busy starting after {timeout:.0f}s")

    async def cycle(
        self, proc: asyncio.subprocess.Process, *, timeout: float = 600.0
    ) -> dict[str, Any]:
        """One poll cycle of the running daemon: every feed made due at once, timed until
        each one is polled and the store queue is empty (every batch committed). The
        daemon's start-up is not in it, as the peers' is not in theirs."""
        import redis.asyncio

        from aggregator import queue

        before = await self.counts()
        conn = await asyncpg.connect(self.database_url)
        client = redis.asyncio.from_url(self.redis_url)  # type: ignore[no-untyped-call]
        try:
            mine = frozenset({await conn.fetchval("SELECT pg_backend_pid()")})
            feeds = await conn.fetchval("SELECT count(*) FROM feeds WHERE NOT disabled")
            with self.watch(proc.pid, not_backends=mine) as watch:
                started = await conn.fetchval(
                    "UPDATE feeds SET next_poll_at = now() WHERE NOT disabled RETURNING now()"
                )
                began = time.perf_counter()
                deadline = began + timeout
                polled_after = None
                while True:
                    if proc.returncode is not None:
                        raise RuntimeError(f"the daemon exited {proc.returncode} mid-cycle")
                    polled = await conn.fetchval(
                        "SELECT count(*) FROM feeds WHERE last_polled_at >= $1", started
                    )
                    if polled >= feeds and polled_after is None:
                        polled_after = round(time.perf_counter() - began, 2)
                    if polled >= feeds and await client.zcard(queue.STORE_QUEUE) == 0:
                        break
                    if time.perf_counter() > deadline:
                        raise TimeoutError(f"{polled} of {feeds} feeds polled in {timeout}s")
                    await asyncio.sleep(0.02)
        finally:
            await client.aclose()
            await conn.close()
        after = await self.counts()
        return {
            **watch.report(),
            "items": after["sightings"] - before["sightings"],
            "articles": after["articles"] - before["articles"],
            "stories": after["stories"],
            "failed_feeds": after["failed"],
            "measured": "one cycle of a running daemon (aggregator run), start-up excluded",
            # Every feed polled (its outcome recorded) after this many seconds; the rest of
            # the cycle is the store queue draining.
            "all_polled_after_s": polled_after,
        }

    @asynccontextmanager
    async def daemon(self, *, flush: bool = True) -> AsyncIterator[asyncio.subprocess.Process]:
        """``aggregator run`` until the block ends, then SIGTERM and wait. ``flush=False``
        keeps what Redis holds between cycles (the window cache): only queues are emptied."""
        if flush:
            await services.flush_redis(self.redis_url)
        else:
            await services.flush_queues(self.redis_url)
        log = self.workdir / "daemon.log"
        with log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "aggregator",
                "run",
                env=self.env(),
                cwd=self.workdir,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
            )
            try:
                yield proc
            finally:
                if proc.returncode is None:
                    proc.send_signal(signal.SIGTERM)
                    try:
                        await asyncio.wait_for(proc.wait(), 60)
                    except TimeoutError:
                        proc.kill()
                        await proc.wait()


async def _redis_pid(url: str) -> int | None:
    import redis.asyncio

    client = redis.asyncio.from_url(url)  # type: ignore[no-untyped-call]
    try:
        info = await client.info("server")
        return int(info["process_id"]) if "process_id" in info else None
    finally:
        await client.aclose()


def _tail(path: Path, lines: int = 20) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def store_payload(feeds: Sequence[int] = range(100), *, items: int = 20) -> dict[str, Any]:
    """Bytes per article of the store jobs a cold poll of farm feeds puts on Redis: each
    feed's body parsed and normalized for real, its batch built and serialized the way
    ``refresh.deliver`` and arq do (the job as stored under ``arq:job:<id>``)."""
    from datetime import UTC, datetime

    from arq.jobs import serialize_job

    from aggregator import queue
    from aggregator.pipeline.normalize import FeedContext, articles_from_document
    from aggregator.storage.articles import StoreBatch, Validators, store_payload

    now = datetime.now(UTC)
    total = articles = prints = 0
    for feed in feeds:
        url = f"https://{synthetic.outlet_host(feed)}/feeds/{feed}.xml"
        body = synthetic.render_feed(
            feed, 0, items=items, new_per_change=2, published_at={}, epoch=now.timestamp()
        )
        document, found = articles_from_document(
            body,
            url=url,
            content_type="application/rss+xml",
            feed=FeedContext(
                url=url, language=synthetic.language_of(feed), region=synthetic.region_of(feed)
            ),
            now=now,
        )
        hashes = {key: [h] for key, h in document.hashes.items()}
        batch = StoreBatch(
            feed_id=feed + 1,
            feed_url=url,
            body_hash=f"{feed:064x}",
            validators=Validators(etag='"v0"', last_modified=None, body_hash=f"{feed:064x}"),
            articles=found,
            fetched_at=now,
            entries=hashes,
            departed={},
        )
        payload = store_payload(batch)
        total += len(
            serialize_job(queue.STORE_JOB, (payload,), {}, 1, 0, serializer=queue.serialize)
        )
        articles += len(found)
        prints += sum(len(a.story_print.model_dump_json()) for a in found if a.story_print)
    return {
        "feeds": len(feeds),
        "articles": articles,
        "bytes_per_article": round(total / max(articles, 1)),
        "print_bytes_per_article": round(prints / max(articles, 1)),
    }
