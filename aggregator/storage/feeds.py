"""Feeds: the registry of what we poll (add, list, remove, import, export) and its state.

Feed lists come as TOML (``[[feeds]]`` tables) or OPML; both are parsed here
as pure functions, then written with one upsert per feed.
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import lxml.etree
import yarl

from aggregator.errors import FeedFileError, FeedNotFoundError, InvalidFeedURLError


@dataclass(frozen=True, slots=True)
class FeedSpec:
    """A feed as a user lists it."""

    url: str
    region: str | None = None
    language: str | None = None
    title: str | None = None
    interval: float | None = None
    full_text: bool | None = None  # fetch each new article's page for its full text

    def __post_init__(self) -> None:
        check_url(self.url)
        if len(self.url) > 2048:
            raise InvalidFeedURLError(f"feed URL longer than 2048 characters: {self.url[:60]}...")
        if self.interval is not None and self.interval <= 0:
            raise InvalidFeedURLError(f"{self.url}: interval must be positive")


@dataclass(frozen=True, slots=True)
class Feed:
    """A feed row."""

    id: int
    url: str
    title: str | None
    site_url: str | None
    region: str | None
    language: str | None
    etag: str | None
    last_modified: str | None
    last_body_hash: str | None
    poll_interval: float | None
    next_poll_at: datetime
    last_polled_at: datetime | None
    last_success_at: datetime | None
    error_count: int
    last_error: str | None
    last_error_kind: str | None
    disabled: bool
    disabled_reason: str | None = None
    update_interval: float | None = None
    full_text: bool = False
    failing_since: datetime | None = None
    moved_to: str | None = None
    last_warning: str | None = None

    @property
    def state(self) -> str:
        return state(self.disabled, self.last_error, self.last_polled_at)

    @classmethod
    def from_row(cls, row: asyncpg.Record) -> Feed:
        return cls(**{name: row[name] for name in cls.__slots__})


def state(disabled: bool, last_error: str | None, last_polled_at: datetime | None) -> str:
    """ok, new (never polled), failing or disabled: as ``aggregator status`` says."""
    if disabled:
        return "disabled"
    if last_error:
        return "failing"
    return "new" if last_polled_at is None else "ok"


_COLUMNS = ", ".join(Feed.__slots__)

_UPSERT = f"""
INSERT INTO feeds (url, region, language, title, poll_interval, full_text)
VALUES ($1, $2, $3, $4, $5, COALESCE($6, false))
ON CONFLICT (url) DO UPDATE SET
    region = COALESCE(EXCLUDED.region, feeds.region),
    language = COALESCE(EXCLUDED.language, feeds.language),
    title = COALESCE(feeds.title, EXCLUDED.title),
    poll_interval = COALESCE(EXCLUDED.poll_interval, feeds.poll_interval),
    full_text = COALESCE($6, feeds.full_text)
RETURNING {_COLUMNS}, (xmax = 0) AS created
"""


async def add(conn: asyncpg.Connection, spec: FeedSpec) -> tuple[Feed, bool]:
    """Insert or update a feed; return it and whether it is new."""
    row = await conn.fetchrow(
        _UPSERT, spec.url, spec.region, spec.language, spec.title, spec.interval, spec.full_text
    )
    return Feed.from_row(row), bool(row["created"])


async def add_many(
    conn: asyncpg.Connection,
    specs: Iterable[FeedSpec],
    *,
    progress: Callable[[int], None] | None = None,
) -> tuple[int, int]:
    """Upsert feeds in one transaction (all or nothing); return (created, updated)."""
    created = updated = 0
    async with conn.transaction():
        for done, spec in enumerate(specs, 1):
            _, is_new = await add(conn, spec)
            created += is_new
            updated += not is_new
            if progress is not None:
                progress(done)
    return created, updated


async def get(conn: asyncpg.Connection | asyncpg.Pool, feed_id: int) -> Feed | None:
    row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM feeds WHERE id = $1", feed_id)
    return Feed.from_row(row) if row else None


@dataclass(frozen=True, slots=True)
class FeedSummary:
    """A feed as `aggregator feeds list` shows it, from columns the read-only role reads."""

    id: int
    url: str
    title: str | None
    region: str | None
    language: str | None
    disabled: bool
    last_polled_at: datetime | None
    last_error_kind: str | None
    last_error: str | None

    @property
    def state(self) -> str:
        return state(self.disabled, self.last_error, self.last_polled_at)


async def summaries(conn: asyncpg.Connection) -> list[FeedSummary]:
    columns = ", ".join(FeedSummary.__slots__)
    rows = await conn.fetch(f"SELECT {columns} FROM feeds ORDER BY id")
    return [FeedSummary(**dict(r)) for r in rows]


async def list_all(conn: asyncpg.Connection) -> list[Feed]:
    rows = await conn.fetch(f"SELECT {_COLUMNS} FROM feeds ORDER BY id")
    return [Feed.from_row(r) for r in rows]


async def _one(conn: asyncpg.Connection, statement: str, url_or_id: str) -> Feed:
    """Run a statement that targets one feed by id (digits) or URL, returning its row."""
    column, key = ("id", int(url_or_id)) if url_or_id.isdigit() else ("url", url_or_id)
    row = await conn.fetchrow(statement.format(where=f"{column} = $1", columns=_COLUMNS), key)
    if row is None:
        raise FeedNotFoundError(f"no feed {url_or_id!r}")
    return Feed.from_row(row)


async def remove(conn: asyncpg.Connection, url_or_id: str) -> Feed:
    """Delete a feed and its sightings; its articles stay."""
    return await _one(conn, "DELETE FROM feeds WHERE {where} RETURNING {columns}", url_or_id)


_ENABLE = """
UPDATE feeds SET disabled = false, disabled_reason = NULL, disabled_at = NULL,
    error_count = 0, failing_since = NULL, next_poll_at = now(), lease_token = NULL
WHERE {where} RETURNING {columns}
"""


async def enable(conn: asyncpg.Connection, url_or_id: str) -> Feed:
    """Bring a disabled feed back: its failure streak is forgotten and it is due now."""
    return await _one(conn, _ENABLE, url_or_id)


# --- feed list files --------------------------------------------------------------------------


def read_file(path: Path) -> list[FeedSpec]:
    """Feeds from a TOML or OPML file, chosen by content, not by name."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FeedFileError(f"{path}: {exc.strerror or exc}") from None
    if data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        return parse_opml(data, source=str(path))
    return parse_toml(data, source=str(path))


def parse_toml(data: bytes, *, source: str = "TOML") -> list[FeedSpec]:
    """``[[feeds]]`` tables: ``url``, and optionally ``region``, ``language``, ``title``,
    ``interval``; top-level ``region`` and ``language`` are defaults."""
    try:
        document = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise FeedFileError(f"{source}: not valid TOML: {exc}") from None
    entries = document.get("feeds")
    if not isinstance(entries, list):
        raise FeedFileError(f"{source}: expected [[feeds]] tables")
    defaults = {k: v for k in ("region", "language") if isinstance(v := document.get(k), str)}
    specs = []
    for number, entry in enumerate(entries, 1):
        if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
            raise FeedFileError(f"{source}: feed #{number} has no url")
        specs.append(_spec(entry, defaults, f"{source}: feed #{number}"))
    return specs


def parse_opml(data: bytes, *, source: str = "OPML") -> list[FeedSpec]:
    """Every ``<outline xmlUrl=...>``; ``region`` and ``language`` attributes are ours."""
    parser = lxml.etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False
    )
    try:
        root = lxml.etree.fromstring(data, parser=parser)
    except lxml.etree.XMLSyntaxError as exc:
        raise FeedFileError(f"{source}: not valid OPML: {exc}") from None
    if root.tag != "opml":
        raise FeedFileError(f"{source}: not an OPML document (root is <{root.tag}>)")
    specs = []
    for outline in root.iter("outline"):
        url = outline.get("xmlUrl") or outline.get("xmlurl")
        if not url:
            continue
        entry = {
            "url": url.strip(),
            "region": outline.get("region"),
            "language": outline.get("language"),
            "title": outline.get("title") or outline.get("text"),
            "interval": outline.get("interval"),
            "full_text": outline.get("fullText"),
        }
        specs.append(_spec(entry, {}, f"{source}: outline {url!r}"))
    return specs


def _spec(entry: dict[str, Any], defaults: dict[str, str], where: str) -> FeedSpec:
    interval = entry.get("interval")
    try:
        return FeedSpec(
            url=str(entry["url"]).strip(),
            region=entry.get("region") or defaults.get("region"),
            language=entry.get("language") or defaults.get("language"),
            title=entry.get("title"),
            interval=float(interval) if interval not in (None, "") else None,
            full_text=_flag(entry.get("full_text")),
        )
    except (InvalidFeedURLError, ValueError, TypeError) as exc:
        raise FeedFileError(f"{where}: {exc}") from None


def _flag(value: Any) -> bool | None:
    """TOML gives a bool; OPML an attribute string."""
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no", ""):
        return False
    raise ValueError(f"full_text must be true or false, not {value!r}")


def to_opml(feeds: Sequence[Feed], *, title: str = "aggregator feeds") -> bytes:
    """An OPML 2.0 document listing the feeds, with our region/language attributes."""
    root = lxml.etree.Element("opml", version="2.0")
    head = lxml.etree.SubElement(root, "head")
    lxml.etree.SubElement(head, "title").text = title
    body = lxml.etree.SubElement(root, "body")
    for feed in feeds:
        attributes = {"type": "rss", "text": feed.title or feed.url, "xmlUrl": feed.url}
        if feed.title:
            attributes["title"] = feed.title
        if feed.site_url:
            attributes["htmlUrl"] = feed.site_url
        if feed.region:
            attributes["region"] = feed.region
        if feed.language:
            attributes["language"] = feed.language
        if feed.poll_interval:
            attributes["interval"] = f"{feed.poll_interval:g}"
        if feed.full_text:
            attributes["fullText"] = "true"
        lxml.etree.SubElement(body, "outline", attributes)
    document: bytes = lxml.etree.tostring(
        root, xml_declaration=True, encoding="UTF-8", pretty_print=True
    )
    return document


def check_url(url: str) -> str:
    """Raise ``InvalidFeedURLError`` unless ``url`` is an absolute http(s) URL that could
    ever be fetched: a host name DNS can hold (or an IP address) and a port that exists.

    A URL that is well formed but fails today (a 404, a timeout) is not refused here."""
    if any(not c.isprintable() for c in url):
        raise InvalidFeedURLError(f"invalid feed URL {url!r}: it contains control characters")
    try:
        parsed = yarl.URL(url)
        port = parsed.port
    except (ValueError, TypeError) as exc:
        raise InvalidFeedURLError(f"invalid feed URL {url!r}: {exc}") from None
    if parsed.scheme not in ("http", "https"):
        raise InvalidFeedURLError(f"invalid feed URL {url!r}: only http and https are allowed")
    if not parsed.raw_host:
        raise InvalidFeedURLError(f"invalid feed URL {url!r}: no host")
    problem = _host_problem(parsed.raw_host)
    if problem:
        raise InvalidFeedURLError(f"invalid feed URL {url!r}: {problem}")
    if port == 0:
        raise InvalidFeedURLError(f"invalid feed URL {url!r}: port 0 cannot be connected to")
    return url


_HOST_LABEL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")


def _host_problem(host: str) -> str | None:
    """Why ``host`` (as yarl encodes it: IDNA, lower case) can never be resolved, or None."""
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    if any(c.isspace() for c in host):
        return f"the host {host!r} contains a space"
    name = host.lower().removesuffix(".")
    if len(name) > 253:
        return "the host name is longer than 253 characters"
    for label in name.split("."):
        if not label:
            return f"the host {host!r} has an empty label (two dots in a row, or a leading dot)"
        if len(label) > 63:
            return f"the host {host!r} has a label longer than 63 characters"
        bad = sorted(set(label) - _HOST_LABEL_CHARS)
        if bad:
            return f"the host {host!r} contains {''.join(bad)!r}, which no host name can hold"
    return None
