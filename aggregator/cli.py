"""The ``aggregator`` command line.

Every command turns the project's errors, and unreachable services, into one
line on stderr and a non-zero exit: a user never sees a traceback.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sys
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import asyncpg
import click
import redis.exceptions

from aggregator import daemon, db, discover, feeds
from aggregator.errors import AggregatorError, ConfigError, FetchError
from aggregator.fetch import Fetcher
from aggregator.normalize import FeedContext, articles_from_document
from aggregator.runtime import open_runtime
from aggregator.services import services
from aggregator.settings import Settings, load_settings

P = ParamSpec("P")
T = TypeVar("T")

log = logging.getLogger("aggregator")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("arq").setLevel(logging.INFO if verbose else logging.WARNING)


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def command(fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, T | None]:
    """Run an async command; map expected failures to one line and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T | None:
        try:
            return asyncio.run(fn(*args, **kwargs))
        except ConfigError as exc:
            _fail(str(exc), 2)
        except AggregatorError as exc:
            _fail(str(exc))
        except (
            OSError,
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            redis.exceptions.ConnectionError,
        ) as exc:
            _fail(f"cannot reach a service: {type(exc).__name__}: {exc}")
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except Exception as exc:  # a bug: still one line for the user, the trace for -v
            log.debug("unexpected error", exc_info=True)
            _fail(f"unexpected {type(exc).__name__}: {exc} (run with -v for the traceback)")
        return None

    return wrapper


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        _fail(str(exc), 2)
        raise  # unreachable


async def _with_connection(
    settings: Settings, action: Callable[[asyncpg.Connection], Awaitable[T]]
) -> T:
    async with services(settings) as urls:
        await db.migrate(urls.database_url)
        conn = await asyncpg.connect(urls.database_url)
        try:
            return await action(conn)
        finally:
            await conn.close()


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail.")
@click.version_option(package_name="regional-news-aggregator")
def main(verbose: bool) -> None:
    """Poll regional news feeds, dedupe stories, store articles in PostgreSQL."""
    _setup_logging(verbose)


@main.command()
@click.option(
    "--once", is_flag=True, help="Poll every active feed once, wait for the queues, exit."
)
@command
async def run(once: bool) -> None:
    """Run the daemon: scheduler and workers in one process."""
    settings = _settings()
    async with (
        services(settings) as urls,
        open_runtime(settings, database_url=urls.database_url, redis_url=urls.redis_url) as rt,
    ):
        if once:
            summary = await daemon.run_once(rt)
            _print_summary(summary)
            return
        stop = asyncio.Event()
        daemon.install_stop_signals(stop)
        await daemon.run_forever(rt, stop)


def _print_summary(summary: daemon.OnceSummary) -> None:
    click.echo(f"feeds ok: {summary.feeds_ok}, failed: {summary.feeds_failed}")
    click.echo(
        f"articles new: {summary.articles_new}, duplicates merged: {summary.duplicates_merged}"
    )
    for url, error in summary.failures:
        click.echo(f"  failed: {url}: {error}")


@main.command()
@command
async def demo() -> None:
    """Ingest the bundled sample feeds from a local server, offline, and show the result."""
    from aggregator.demo import run_demo

    await run_demo(_settings(), click.echo)


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("psql_args", nargs=-1, type=click.UNPROCESSED)
@command
async def psql(psql_args: tuple[str, ...]) -> None:
    """Open psql on the database (the embedded one too); extra arguments go to psql."""
    import shutil
    import subprocess

    async with services(_settings()) as urls:
        client = str(urls.embedded.psql) if urls.embedded else shutil.which("psql")
        if client is None:
            raise AggregatorError("psql is not installed; install postgresql-client")
        code = await asyncio.to_thread(subprocess.call, [client, urls.database_url, *psql_args])
    if code:
        sys.exit(code)


@main.command()
@command
async def migrate() -> None:
    """Apply pending schema migrations."""
    async with services(_settings()) as urls:
        applied = await db.migrate(urls.database_url)
    for m in applied:
        click.echo(f"applied {m.version:03d}_{m.name}")
    if not applied:
        click.echo("schema is up to date")


@main.group(name="feeds")
def feeds_group() -> None:
    """Add, list, remove, import and export feeds."""


@feeds_group.command(name="add")
@click.argument("url")
@click.option("--region", help="Region label, e.g. gulf, levant, iran, turkey.")
@click.option("--language", help="Language code, e.g. en, ar, fa, tr.")
@click.option("--title", help="A display name.")
@click.option("--interval", type=click.FloatRange(min=1), help="Seconds between polls.")
@click.option(
    "--no-fetch", is_flag=True, help="Add as given: do not fetch it to check it or discover a feed."
)
@command
async def feeds_add(
    url: str,
    region: str | None,
    language: str | None,
    title: str | None,
    interval: float | None,
    no_fetch: bool,
) -> None:
    """Add a feed (or update its region, language and interval).

    Given a web page instead of a feed, adds the feed the page advertises."""
    settings = _settings()
    feeds.FeedSpec(url=url)  # a bad URL fails here, before any request
    if not no_fetch:
        url = await _discover(settings, url)
    spec = feeds.FeedSpec(url=url, region=region, language=language, title=title, interval=interval)
    feed, created = await _with_connection(settings, lambda c: feeds.add(c, spec))
    click.echo(f"{'added' if created else 'updated'} feed {feed.id}: {feed.url}")


async def _discover(settings: Settings, url: str) -> str:
    async with Fetcher(settings) as fetcher:
        try:
            found = await discover.find_feed(fetcher, url)
        except FetchError as exc:
            click.echo(
                f"warning: could not fetch {url} to check it ({exc}); adding it as given", err=True
            )
            return url
    if found.page is not None:
        others = len(found.candidates) - 1
        click.echo(
            f"{url} is a web page; found its feed {found.url}"
            + (f" (first of {others + 1} advertised)" if others else "")
        )
    return found.url


@feeds_group.command(name="list")
@command
async def feeds_list() -> None:
    """List feeds with their state."""
    rows = await _with_connection(_settings(), feeds.list_all)
    for f in rows:
        state = "disabled" if f.disabled else ("failing" if f.last_error else "ok")
        click.echo(
            f"{f.id:>5}  {state:<8}  {f.region or '-':<8}  {f.language or '-':<3}  {f.url}"
            + (f"  [{f.last_error_kind}: {f.last_error}]" if f.last_error else "")
        )
    if not rows:
        click.echo(
            "no feeds; add one with `aggregator feeds add URL` or `aggregator feeds import FILE`"
        )


@feeds_group.command(name="remove")
@click.argument("url_or_id")
@command
async def feeds_remove(url_or_id: str) -> None:
    """Remove a feed (its articles stay; its sightings go)."""
    feed = await _with_connection(_settings(), lambda c: feeds.remove(c, url_or_id))
    click.echo(f"removed feed {feed.id}: {feed.url}")


@feeds_group.command(name="enable")
@click.argument("url_or_id")
@command
async def feeds_enable(url_or_id: str) -> None:
    """Re-enable a feed that was disabled after repeated failures (or HTTP 410)."""
    feed = await _with_connection(_settings(), lambda c: feeds.enable(c, url_or_id))
    click.echo(f"enabled feed {feed.id}: {feed.url}; it is due now")


@feeds_group.command(name="import")
@click.argument("path", type=click.Path(path_type=Path))
@command
async def feeds_import(path: Path) -> None:
    """Import feeds from a TOML ([[feeds]] tables) or OPML file."""
    specs = feeds.read_file(path)
    created, updated = await _with_connection(_settings(), lambda c: feeds.add_many(c, specs))
    click.echo(f"imported {len(specs)} feeds from {path}: {created} new, {updated} updated")


@feeds_group.command(name="export")
@click.option(
    "-o", "--output", type=click.Path(path_type=Path), help="File to write (default stdout)."
)
@command
async def feeds_export(output: Path | None) -> None:
    """Export feeds as OPML."""
    document = feeds.to_opml(await _with_connection(_settings(), feeds.list_all))
    if output:
        output.write_bytes(document)
    else:
        click.echo(document.decode("utf-8"), nl=False)


@main.command()
@click.argument("url")
@click.option("--region")
@click.option("--language")
@command
async def poll(url: str, region: str | None, language: str | None) -> None:
    """Fetch and parse one feed once and print its articles; nothing is stored."""
    settings = _settings()
    feeds.FeedSpec(url=url)  # validates the URL with the same rules as `feeds add`
    async with Fetcher(settings) as fetcher:
        response = await fetcher.fetch(url)
    assert response.body is not None
    info, articles = articles_from_document(
        response.body,
        url=response.url,
        content_type=response.content_type,
        feed=FeedContext(url=response.url, region=region, language=language),
        now=datetime.now(UTC),
    )
    click.echo(
        f"{info.title or url}: {len(articles)} articles"
        + (f" (warning: {info.warning})" if info.warning else "")
    )
    for a in articles:
        click.echo(f"- {a.published_at:%Y-%m-%d %H:%M} [{a.language or '-'}] {a.title}")
        click.echo(
            f"  {a.canonical_url or '(no link)'}  sha256:{a.content_hash[:12]}"
            f"  {len(a.content_text)} chars"
        )


@main.command()
@command
async def status() -> None:
    """Feed health at a glance."""
    settings = _settings()

    async def query(conn: asyncpg.Connection) -> list[asyncpg.Record]:
        return await conn.fetch(  # type: ignore[no-any-return]
            """
            SELECT count(*) FILTER (WHERE NOT disabled AND last_error IS NULL) AS ok,
                   count(*) FILTER (WHERE NOT disabled AND last_error IS NOT NULL) AS failing,
                   count(*) FILTER (WHERE disabled) AS disabled,
                   (SELECT count(*) FROM articles) AS articles,
                   (SELECT count(*) FROM articles
                    WHERE first_seen_at > now() - interval '24 hours') AS last_24h
            FROM feeds
            """
        )

    row = (await _with_connection(settings, query))[0]
    click.echo(
        f"feeds: {row['ok']} ok, {row['failing']} failing, {row['disabled']} disabled; "
        f"articles: {row['articles']} ({row['last_24h']} in the last 24 h)"
    )


if __name__ == "__main__":
    main()
