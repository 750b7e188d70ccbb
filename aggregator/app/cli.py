"""The ``aggregator`` command line.

Every command turns the project's errors, and unreachable services, into one
line on stderr and a non-zero exit: a user never sees a traceback.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, ParamSpec, TypeVar

import asyncpg
import click
import redis.exceptions

from aggregator import logs
from aggregator.app.progress import Progress
from aggregator.app.services import services
from aggregator.errors import AggregatorError, ConfigError, FetchError
from aggregator.http.fetch import Fetcher
from aggregator.reach import naming, service_error
from aggregator.settings import Settings, load_settings
from aggregator.storage import db, feeds

if TYPE_CHECKING:
    from arq.connections import ArqRedis

    from aggregator.app import daemon
    from aggregator.http import discover
    from aggregator.storage import refold

# The daemon, the runtime and the parse pipeline (numpy, the language model, arq) are
# imported by the commands that use them: `aggregator status` or `feeds list` starts in
# half the time without them.

P = ParamSpec("P")
T = TypeVar("T")

log = logging.getLogger("aggregator")


def _setup_logging(verbose: bool) -> None:
    logs.setup(verbose=verbose)


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def command(fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, T | None]:
    """Run an async command; map expected failures to one line and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T | None:
        try:
            return asyncio.run(fn(*args, **kwargs))
        except click.ClickException:
            raise  # a usage error found inside a command: click prints it, exit 2
        except ConfigError as exc:
            _fail(str(exc), 2)
        except AggregatorError as exc:
            _fail(str(exc))
        except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            _fail(str(service_error("PostgreSQL", None, exc)))  # a query outside `naming`
        except redis.exceptions.RedisError as exc:
            _fail(str(service_error("Redis", None, exc)))
        except OSError as exc:
            _fail(f"{type(exc).__name__}: {exc}")
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


@asynccontextmanager
async def _database(url: str, *, writes: bool) -> AsyncIterator[asyncpg.Connection]:
    """A connection for a command, its failures named. A command that writes migrates
    first; one that only reads never does, so the read-only role can run it."""
    with naming("PostgreSQL", url):
        if writes:
            await db.migrate(url)
            conn = await asyncpg.connect(url)
        else:
            conn = await db.connect_current(url)
        try:
            yield conn
        finally:
            await conn.close()


async def _with_connection(
    settings: Settings,
    action: Callable[[asyncpg.Connection], Awaitable[T]],
    *,
    writes: bool = True,
) -> T:
    async with (
        services(settings, redis=writes) as urls,
        _database(urls.database_url, writes=writes) as conn,
    ):
        return await action(conn)


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail.")
@click.version_option(package_name="regional-news-aggregator")
def main(verbose: bool) -> None:
    """Poll regional news feeds, dedupe stories, store articles in PostgreSQL."""
    _setup_logging(verbose)


# `run --once` exits with this when some active feed could not be polled in time.
EXIT_NOT_ALL_POLLED = 3


@main.command()
@click.option(
    "--once", is_flag=True, help="Poll every active feed once, wait for the queues, exit."
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=600,
    show_default=True,
    help="With --once: seconds to wait for every feed's turn at its host; feeds not "
    "polled by then are named, and the exit status is 3.",
)
@command
async def run(once: bool, timeout: float) -> None:
    """Run the daemon: scheduler and workers in one process."""
    from aggregator.app import daemon, web
    from aggregator.runtime import open_runtime

    settings = _settings()
    async with services(settings) as urls:
        if once:
            async with open_runtime(
                settings, database_url=urls.database_url, redis_url=urls.redis_url
            ) as rt:
                bar = Progress("polling", 0)

                def show(polled: int, total: int, stored: int) -> None:
                    bar.total = total
                    waiting = "; the rest wait for their host's turn" if polled < total else ""
                    bar.update(polled, f"feeds polled, {stored} new articles{waiting}")

                summary = await daemon.run_once(rt, timeout=timeout, progress=show)
                bar.close()
                _print_summary(summary)
            if summary.not_polled:
                sys.exit(EXIT_NOT_ALL_POLLED)
            return
        stop = asyncio.Event()
        daemon.install_stop_signals(stop)
        async with AsyncExitStack() as stack:
            started = await daemon.open_when_reachable(
                stack, settings, database_url=urls.database_url, redis_url=urls.redis_url, stop=stop
            )
            if started is None:
                return
            async with web.serve(started):
                await daemon.run_forever(started, stop)


def _print_summary(summary: daemon.OnceSummary) -> None:
    click.echo(f"feeds ok: {summary.feeds_ok}, failed: {summary.feeds_failed}")
    click.echo(
        f"articles new: {summary.articles_new}, duplicates merged: {summary.duplicates_merged}"
    )
    for url, error in summary.failures:
        click.echo(f"  failed: {url}: {error}")
    sent = summary.sent
    if sent.delivered or sent.dead or sent.waiting:
        click.echo(
            f"subscriber deliveries taken: {sent.delivered}, dead-lettered: {sent.dead}, "
            f"still with their consumers: {sent.waiting}"
            + (" (see `aggregator subscribers list`)" if sent.dead else "")
        )
    if summary.not_polled:
        click.echo(f"not polled in time: {len(summary.not_polled)} feeds")
        for url in summary.not_polled:
            click.echo(f"  not polled: {url}")


@main.command()
@command
async def demo() -> None:
    """Ingest the bundled sample feeds from a local server, offline, and show the result."""
    from aggregator.app.demo import run_demo

    await run_demo(_settings(), click.echo)


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("psql_args", nargs=-1, type=click.UNPROCESSED)
@command
async def psql(psql_args: tuple[str, ...]) -> None:
    """Open psql on the database (the embedded one too); extra arguments go to psql."""
    import shutil
    import subprocess

    async with services(_settings(), redis=False) as urls:
        client = str(urls.embedded.psql) if urls.embedded else shutil.which("psql")
        if client is None:
            raise AggregatorError("psql is not installed; install postgresql-client")
        code = await asyncio.to_thread(subprocess.call, [client, urls.database_url, *psql_args])
    if code:
        sys.exit(code)


@main.command()
@click.option(
    "--older-than",
    "older_than",
    required=True,
    metavar="AGE",
    help="Delete articles first seen longer ago than this: 90d, 36h, 45m.",
)
@click.option(
    "--batch",
    type=click.IntRange(min=1),
    default=1000,
    show_default=True,
    help="Articles deleted per short transaction.",
)
@command
async def prune(older_than: str, batch: int) -> None:
    """Delete old articles (with their sightings and outbox rows) and emptied stories."""
    from aggregator.runtime import open_runtime
    from aggregator.storage import retention

    try:
        age = retention.parse_age(older_than)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--older-than") from None
    settings = _settings()
    async with (
        services(settings) as urls,
        open_runtime(settings, database_url=urls.database_url, redis_url=urls.redis_url) as rt,
    ):
        total = await rt.pool.fetchval(
            "SELECT count(*) FROM articles WHERE first_seen_at < now() - $1::interval", age
        )
        bar = Progress("pruning", total)
        result = await retention.prune(rt.pool, age, batch=batch, progress=bar.update)
        bar.close()
    click.echo(
        f"pruned {result.articles} articles and {result.stories} stories in {result.batches} "
        f"batches (longest {result.longest_batch_seconds:.2f} s)"
    )


@main.command(name="settings")
def settings_reference() -> None:
    """Print every setting, its default and what it does (Markdown)."""
    from aggregator.settings import reference

    click.echo(reference(), nl=False)


@main.command()
@command
async def migrate() -> None:
    """Apply pending schema migrations."""
    from aggregator.storage import refold

    async with services(_settings(), redis=False) as urls:
        with naming("PostgreSQL", urls.database_url):
            applied = await db.migrate(urls.database_url)
            for m in applied:
                click.echo(f"applied {m.version:03d}_{m.name}")
            if not applied:
                click.echo("schema is up to date")
            pool = await asyncpg.create_pool(urls.database_url, min_size=1, max_size=1)
            try:
                refolded = await refold.refold(pool, progress=_report_refold)
            finally:
                await pool.close()
    if refolded:
        click.echo(f"search index refolded: {refolded} articles")


def _report_refold(step: refold.Progress) -> None:
    click.echo(f"refolding the search index: through article {step.done_through} of {step.last_id}")


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
@click.option(
    "--full-text/--feed-text",
    default=None,
    help="For summary-only feeds: fetch each new article's page and store its main text.",
)
@command
async def feeds_add(
    url: str,
    region: str | None,
    language: str | None,
    title: str | None,
    interval: float | None,
    no_fetch: bool,
    full_text: bool | None,
) -> None:
    """Add a feed (or update its region, language and interval).

    Given a web page instead of a feed, adds the feed the page advertises."""
    settings = _settings()
    feeds.FeedSpec(url=url)  # a bad URL fails here, before any request
    found = None
    if not no_fetch:
        found = await _discover(settings, url)
        url = found.url
    spec = feeds.FeedSpec(
        url=url,
        region=region,
        language=language,
        title=title,
        interval=interval,
        full_text=full_text,
    )

    async def add(conn: asyncpg.Connection) -> tuple[feeds.Feed, bool, str | None]:
        feed, created = await feeds.add(conn, spec)
        learned = None  # what its fetch learned: a Retry-After, or the body and its validators
        if found is not None:
            from aggregator import refresh

            learned = await refresh.remember_add_fetch(
                conn, settings, feed, response=found.response, error=found.error
            )
        return feed, created, learned

    feed, created, learned = await _with_connection(settings, add)
    click.echo(f"{'added' if created else 'updated'} feed {feed.id}: {feed.url}")
    if learned:
        click.echo(learned)


async def _discover(settings: Settings, url: str) -> discover.Discovery:
    from aggregator.http import discover

    async with Fetcher(settings) as fetcher:
        try:
            found = await discover.find_feed(fetcher, url)
        except FetchError as exc:
            click.echo(
                f"warning: could not fetch {url} to check it ({exc}); adding it as given", err=True
            )
            return discover.Discovery(url=url, page=None, error=exc)
    if found.response is not None and found.response.moved_to:
        click.echo(f"{url} moved permanently to {found.url}: adding that")
    if found.page is not None:
        others = len(found.candidates) - 1
        click.echo(
            f"{url} is a web page; found its feed {found.url}"
            + (f" (first of {others + 1} advertised)" if others else "")
        )
    return found


@feeds_group.command(name="list")
@command
async def feeds_list() -> None:
    """List feeds with their state."""
    from aggregator.app.status import feed_lines

    rows = await _with_connection(_settings(), feeds.summaries, writes=False)
    if rows:
        click.echo("\n".join(feed_lines(rows)))
    else:
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
    bar = Progress("importing", len(specs))
    created, updated = await _with_connection(
        _settings(), lambda c: feeds.add_many(c, specs, progress=bar.update)
    )
    bar.close()
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
    from aggregator.pipeline.normalize import FeedContext, articles_from_document

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
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@command
async def status(as_json: bool) -> None:
    """Feed health (ok / failing / disabled) and totals per region."""
    import json

    from aggregator.app import status as health

    feeds_, regions = await _with_connection(_settings(), health.collect, writes=False)
    if as_json:
        click.echo(json.dumps(health.as_json(feeds_, regions), ensure_ascii=False, indent=2))
        return
    for line in health.render(feeds_, regions, now=datetime.now(UTC)):
        click.echo(line)


_AGE_UNITS = {"m": 60, "h": 3600, "d": 86400}


def _since(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    """ISO 8601 (2014-09-12, 2014-09-12T08:00+03:30; UTC without an offset), or an age
    before now (90m, 36h, 7d)."""
    if value is None:
        return None
    text = value.strip()
    try:
        if text[-1:].lower() in _AGE_UNITS and text[:-1].isdigit():
            age = int(text[:-1]) * _AGE_UNITS[text[-1].lower()]
            return datetime.fromtimestamp(datetime.now(UTC).timestamp() - age, UTC)
        parsed = datetime.fromisoformat(text)
    except (ValueError, OverflowError, OSError):
        raise click.BadParameter(f"{value!r} is not a time (2014-09-12, 36h, 7d)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@main.command(name="stories")
@click.option("--region", help="Only stories carried in this region.")
@click.option("--since", callback=_since, help="First published at or after: a time, or 36h, 7d.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@command
async def stories_list(region: str | None, since: datetime | None, limit: int) -> None:
    """Stories: the copies of one news story across outlets, newest first."""
    from aggregator.storage import stories as stored_stories

    found = await _with_connection(
        _settings(),
        lambda c: stored_stories.latest_stories(c, region=region, since=since, limit=limit),
        writes=False,
    )
    for s in found:
        articles = f"{s.article_count} article" + ("s" if s.article_count != 1 else "")
        outlets = f"{len(s.outlets)} outlet" + ("s" if len(s.outlets) != 1 else "")
        click.echo(
            f"{s.published_at:%Y-%m-%d %H:%M}  story {s.story_id:<7} "
            f"{articles:>12}  {outlets:>10}  {s.title or '-'}"
        )
        if s.outlets:
            click.echo(f"{'':18}{', '.join(s.outlets)}")
    if not found:
        click.echo("no stories" + (" match" if region or since else " yet"))


# --- subscribers and tail ---------------------------------------------------------------------


class _When(click.ParamType):  # type: ignore[type-arg]  # generic only in click >= 8.2
    """A point in time: ISO 8601 (UTC unless it says otherwise) or an age like 30m, 2h, 7d."""

    name = "TIME"
    _UNITS: ClassVar[dict[str, int]] = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        if text[:-1].isdigit() and text[-1:] in self._UNITS:
            return datetime.now(UTC) - timedelta(seconds=int(text[:-1]) * self._UNITS[text[-1]])
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            self.fail(
                f"{value!r} is neither an ISO 8601 time nor an age like 30m, 2h, 7d", param, ctx
            )
        return when if when.tzinfo else when.replace(tzinfo=UTC)


async def _with_queues(
    settings: Settings,
    action: Callable[[asyncpg.Connection, ArqRedis], Awaitable[T]],
    *,
    writes: bool = True,
) -> T:
    from aggregator import queue

    async with (
        services(settings) as urls,
        _database(urls.database_url, writes=writes) as conn,
    ):
        with naming("Redis", urls.redis_url):
            redis = await queue.connect(urls.redis_url)
            try:
                return await action(conn, redis)
            finally:
                await redis.aclose()


@main.group(name="subscribers")
def subscribers_group() -> None:
    """Add, list, remove and replay subscribers: each reads the arq queue
    aggregator:subscriber:NAME, one new_article job per new article that matches,
    or with --stream the Redis stream aggregator:stream:NAME."""


@subscribers_group.command(name="add")
@click.argument("name")
@click.option("--region", "regions", multiple=True, help="Only this region (repeatable).")
@click.option("--language", "languages", multiple=True, help="Only this language (repeatable).")
@click.option(
    "--feed", "feed_refs", multiple=True, help="Only articles a feed carried, by id or URL."
)
@click.option("--query", help='Only articles matching a full-text search, e.g. "oil -gold".')
@click.option(
    "--stream",
    "kind",
    flag_value="stream",
    default=None,
    help="Deliver to the Redis stream aggregator:stream:NAME (for any language), not arq.",
)
@command
async def subscribers_add(
    name: str,
    regions: tuple[str, ...],
    languages: tuple[str, ...],
    feed_refs: tuple[str, ...],
    query: str | None,
    kind: Literal["stream"] | None,
) -> None:
    """Add a subscriber (or replace its filter); it receives articles stored from now on."""
    from aggregator.storage import subscribers

    subscriber, created = await _with_connection(
        _settings(),
        lambda c: subscribers.add(
            c, name, regions=regions, languages=languages, feeds=feed_refs, query=query, kind=kind
        ),
    )
    where = "stream" if subscriber.kind == "stream" else "queue"
    click.echo(
        f"{'added' if created else 'updated'} subscriber {subscriber.name}: "
        f"{subscriber.describe()}; {where} {subscriber.key}"
    )


@subscribers_group.command(name="list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array for scripts.")
@command
async def subscribers_list(as_json: bool) -> None:
    """List subscribers with their filter, queued deliveries and dead letters (with the
    latest reasons)."""
    import json

    from aggregator.storage import subscribers

    rows = await _with_queues(_settings(), subscribers.status, writes=False)
    if as_json:
        click.echo(json.dumps([r.as_json() for r in rows], ensure_ascii=False, indent=2))
        return
    for row in rows:
        s = row.subscriber
        click.echo(
            f"{s.name:<24} {s.kind:<6} queued {row.queued:>6}  dead {row.dead:>5}  {s.describe()}"
        )
        for group in row.groups:
            lag = "" if group.lag is None else f", {group.lag} not read yet"
            click.echo(f"    group {group.name}: {group.pending} pending{lag}")
        for dead in row.latest_dead:
            click.echo(
                f"    dead: article {dead.article_id} after {dead.tries} tries, "
                f"{dead.failed_at:%Y-%m-%d %H:%M}: {dead.error}"
            )
    if not rows:
        click.echo("no subscribers; add one with `aggregator subscribers add NAME --region ...`")


@subscribers_group.command(name="remove")
@click.argument("name")
@command
async def subscribers_remove(name: str) -> None:
    """Remove a subscriber with its queue and dead letters."""
    from aggregator.storage import subscribers

    removed = await _with_queues(_settings(), lambda c, r: subscribers.remove(c, r, name))
    click.echo(f"removed subscriber {removed.name}")


@subscribers_group.command(name="replay")
@click.argument("name")
@click.option("--since", type=_When(), help="Re-deliver articles first seen since TIME.")
@click.option("--until", type=_When(), help="... and before TIME (default: now).")
@click.option("--dead-letters", is_flag=True, help="Retry the dead-lettered deliveries.")
@command
async def subscribers_replay(
    name: str, since: datetime | None, until: datetime | None, dead_letters: bool
) -> None:
    """Queue articles again from Postgres: a time window, the dead letters, or both."""
    from aggregator.storage import subscribers

    if since is None and not dead_letters:
        raise click.UsageError("give --since TIME, --dead-letters, or both")

    async def replay(conn: asyncpg.Connection, redis: ArqRedis) -> None:
        if since is not None:
            bar = Progress("replaying", 0)

            def show(done: int, total: int) -> None:
                bar.total = total
                bar.update(done)

            count = await subscribers.replay(
                conn, redis, name, since=since, until=until, progress=show
            )
            bar.close()
            click.echo(f"queued {count} articles first seen since {since:%Y-%m-%d %H:%M:%S%z}")
        if dead_letters:
            queued, dropped = await subscribers.retry_dead_letters(conn, redis, name)
            click.echo(
                f"queued {queued} dead-lettered articles again"
                + (f" ({dropped} no longer stored, dropped)" if dropped else "")
            )

    await _with_queues(_settings(), replay)


@main.command()
@click.option("--region", help="Only articles of this region.")
@click.option(
    "-n",
    "--lines",
    default=10,
    show_default=True,
    type=click.IntRange(min=0),
    help="Show the last N articles first.",
)
@command
async def tail(region: str | None, lines: int) -> None:
    """Print new articles as they are stored, until Ctrl-C (LISTEN aggregator_new_article)."""
    from aggregator.app import daemon
    from aggregator.storage import outbox

    stop = asyncio.Event()
    daemon.install_stop_signals(stop)

    def ready() -> None:
        where = f" in {region}" if region else ""
        click.echo(f"following new articles{where} (Ctrl-C to stop)", err=True)

    async with (
        services(_settings(), redis=False) as urls,
        _database(urls.database_url, writes=False) as conn,
    ):
        async for a in outbox.follow(conn, stop, region=region, backlog=lines, on_ready=ready):
            click.echo(
                f"{a.published_at:%Y-%m-%d %H:%M}  {a.region or '-'}/{a.language or '-'}  "
                f"{a.title}  {a.canonical_url or ''}"
            )


if __name__ == "__main__":
    main()
