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
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from bench import measure, module_env, services, synthetic

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

    async def __aenter__(self) -> Ours:
        self.db_name = services.database_name(self.name)
        self.database_url = await services.create_database(self.server_url, self.db_name)
        try:
            from aggregator.storage import db

            await db.migrate(self.database_url)
            await services.flush_redis(self.redis_url)
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

    def watch(self, pid: int) -> measure.Watch:
        return measure.Watch(
            {
                "daemon": measure.tree(pid),
                # The event loop's process alone (the tree is it plus the parse processes).
                "daemon_loop": measure.fixed(pid),
                "postgres": measure.postgres_backends(self.db_name),
                "redis": measure.named("redis-server"),
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

    @asynccontextmanager
    async def daemon(self) -> AsyncIterator[asyncio.subprocess.Process]:
        """``aggregator run`` until the block ends, then SIGTERM and wait."""
        await services.flush_redis(self.redis_url)
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


def _tail(path: Path, lines: int = 20) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
