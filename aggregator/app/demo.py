"""``aggregator demo``: the whole pipeline on a laptop, offline, in one command.

Serves the bundled sample feeds (``aggregator/samples``) from a local HTTP
server on 127.0.0.1, runs the real daemon (scheduler, arq workers, Postgres,
Redis: always the embedded pair) until every feed is
polled and stored, then prints what was stored and how to look at it.
The demo keeps its own data under ``<data_dir>/demo`` and starts fresh each
time; it never touches the data of ``aggregator run``.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from aiohttp import web

from aggregator.app import columns, daemon
from aggregator.app.progress import Progress
from aggregator.app.services import services
from aggregator.runtime import Runtime, open_runtime
from aggregator.settings import Settings
from aggregator.storage import feeds

Echo = Callable[[str], None]


@dataclass(frozen=True)
class SampleFeed:
    file: str
    path: str
    content_type: str
    title: str
    region: str
    language: str


def sample_feeds() -> list[SampleFeed]:
    manifest = resources.files("aggregator.samples").joinpath("manifest.toml").read_text("utf-8")
    return [SampleFeed(**entry) for entry in tomllib.loads(manifest)["feeds"]]


async def serve_samples(samples: list[SampleFeed]) -> tuple[web.AppRunner, str]:
    """An HTTP server on 127.0.0.1 (a free port) serving the samples with validators."""
    folder = resources.files("aggregator.samples")
    bodies = {s.path: (folder.joinpath(s.file).read_bytes(), s.content_type) for s in samples}

    async def handle(request: web.Request) -> web.Response:
        if request.path not in bodies:
            return web.Response(status=404)
        body, content_type = bodies[request.path]
        return web.Response(
            body=body,
            content_type=content_type.split(";")[0],
            charset=_charset(content_type),
            headers={"ETag": f'"{hash(body) & 0xFFFFFFFF:x}"'},
        )

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


def _charset(content_type: str) -> str | None:
    for part in content_type.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.lower() == "charset":
            return value
    return None


_RESET = "TRUNCATE article_sources, articles, feeds RESTART IDENTITY CASCADE"

_PER_FEED = """
SELECT f.title, f.language, count(s.article_id) AS items,
       count(*) FILTER (WHERE (SELECT count(*) FROM article_sources o
                               WHERE o.article_id = s.article_id) > 1) AS shared
FROM feeds f LEFT JOIN article_sources s ON s.feed_id = f.id
GROUP BY f.id ORDER BY f.id
"""


def invoked_as(argv0: str | None = None) -> str:
    """How to type this command again in the same shell: ``aggregator`` when that is what
    the PATH finds, else the path it was run by (``.venv/bin/aggregator``)."""
    argv0 = argv0 if argv0 is not None else sys.argv[0]
    if os.path.basename(argv0) == "__main__.py":  # python -m aggregator
        return f"{shlex.quote(sys.executable)} -m aggregator"
    on_path = shutil.which("aggregator")
    if on_path and os.path.realpath(on_path) == os.path.realpath(argv0):
        return "aggregator"
    return shlex.quote(argv0)


async def run_demo(settings: Settings, echo: Echo) -> dict[str, Any]:
    """Run the demo; return the numbers it printed (for tests)."""
    samples = sample_feeds()
    demo_dir = settings.data_dir / "demo"
    # Always the embedded pair (the demo resets its tables: never a real database), and
    # local feeds on 127.0.0.1 are what the demo is about; nothing else is fetched.
    settings = settings.model_copy(
        update={
            "database_url": None,
            "redis_url": None,
            "allow_private_networks": True,
            "min_interval": 1,
            # Every sample feed is on 127.0.0.1: one host, and it is ours.
            "host_rate": 100.0,
            "host_concurrency": 8,
        }
    )
    runner, base_url = await serve_samples(samples)
    try:
        async with (
            services(settings, data_dir=demo_dir) as urls,
            open_runtime(settings, database_url=urls.database_url, redis_url=urls.redis_url) as rt,
        ):
            await rt.pool.execute(_RESET)
            await rt.redis.flushdb()
            async with rt.pool.acquire() as conn:
                for s in samples:
                    await feeds.add(
                        conn,
                        feeds.FeedSpec(
                            url=base_url + s.path,
                            region=s.region,
                            language=s.language,
                            title=s.title,
                        ),
                    )
            echo(f"serving {len(samples)} sample feeds on {base_url}; ingesting...")
            bar = Progress("ingesting", len(samples), stream=sys.stdout)
            summary = await daemon.run_once(
                rt,
                timeout=120,
                progress=lambda polled, _, stored: bar.update(
                    polled, f"feeds polled, {stored} articles stored"
                ),
            )
            bar.close()
            return await _report(rt, summary, demo_dir, echo)
    finally:
        await runner.cleanup()


async def _report(
    rt: Runtime,
    summary: daemon.OnceSummary,
    demo_dir: Any,
    echo: Echo,
) -> dict[str, Any]:
    articles = await rt.pool.fetchval("SELECT count(*) FROM articles")
    sightings = await rt.pool.fetchval("SELECT count(*) FROM article_sources")
    echo("")
    echo(f"feeds polled: {summary.feeds_ok} ok, {summary.feeds_failed} failed")
    echo(
        f"items seen: {sightings}; stored as {articles} articles "
        f"({sightings - articles} duplicates merged across outlets)"
    )
    echo("")
    echo(f"{'feed':<36} {'lang':<5} {'items':>5} {'shared':>7}")
    for row in await rt.pool.fetch(_PER_FEED):
        echo(
            f"{columns.left(row['title'] or '', 36)} {row['language'] or '-':<5} "
            f"{row['items']:>5} {row['shared']:>7}"
        )
    echo("")
    command = invoked_as()
    echo("Look at it (each command starts the demo's embedded servers, and stops them after):")
    echo(f"  export AGGREGATOR_DATA_DIR={shlex.quote(str(demo_dir))}")
    echo(
        f'  {command} psql -c "SELECT a.title, count(*) AS outlets FROM articles a '
        'JOIN article_sources s ON s.article_id = a.id GROUP BY a.id ORDER BY outlets DESC LIMIT 5"'
    )
    echo(f"  {command} psql            # an interactive session")
    echo(f"  {command} feeds list")
    echo(f"  {command} status")
    return {
        "feeds_ok": summary.feeds_ok,
        "feeds_failed": summary.feeds_failed,
        "articles": articles,
        "sightings": sightings,
        "merged": sightings - articles,
    }
