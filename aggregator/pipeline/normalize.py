"""Normalize: a parsed entry becomes an ``Article`` ready to hash and store. Pure.

Canonical URLs, UTC dates, plain-text titles, sanitized HTML, the body text
the content hash is computed on, and bounds on every value: nothing here
trusts the feed.
"""

from __future__ import annotations

import hashlib
import re
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import urljoin, urlsplit, urlunsplit

import nh3
from pydantic import BaseModel

from aggregator.model import Article
from aggregator.pipeline import bodytext
from aggregator.pipeline.contenthash import content_hash
from aggregator.pipeline.language import article_language
from aggregator.pipeline.parse import DEFAULT_MEMORY_BUDGET, Entry, ParsedFeed, parse_feed
from aggregator.stories import prints as story_prints

MAX_TITLE_CHARS = 1_000
MAX_SUMMARY_CHARS = 5_000
MAX_AUTHOR_CHARS = 300
MAX_URL_CHARS = 2_048
MAX_GUID_CHARS = 2_048
MAX_CONTENT_CHARS = 1_000_000
SUMMARY_FROM_BODY_CHARS = 500
EARLIEST_DATE = datetime(1990, 1, 1, tzinfo=UTC)
# Time one document's new entries may take to normalize (AGGREGATOR_MAX_PARSE_SECONDS).
DEFAULT_PARSE_SECONDS = 60.0
FUTURE_TOLERANCE = timedelta(days=1)

_TRACKING_PARAMS = frozenset(
    {
        "fbclid",
        "gclid",
        "dclid",
        "msclkid",
        "yclid",
        "mc_cid",
        "mc_eid",
        "igshid",
        "_hsenc",
        "_hsmi",
        "mkt_tok",
        "oly_enc_id",
        "oly_anon_id",
        "vero_id",
        "wt_mc",
        "at_medium",
        "at_campaign",
        "ocid",
        "cmpid",
        "xtor",
    }
)
# Lone surrogates too: they cannot be encoded, so Postgres (and the hash) would fail on them.
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")
_SAFE_SCHEMES = frozenset({"http", "https"})
_ALLOWED_TAGS = frozenset(
    [
        "a",
        "abbr",
        "b",
        "blockquote",
        "br",
        "caption",
        "cite",
        "code",
        "dd",
        "del",
        "dl",
        "dt",
        "em",
        "figcaption",
        "figure",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "hr",
        "i",
        "img",
        "ins",
        "li",
        "ol",
        "p",
        "pre",
        "q",
        "s",
        "small",
        "strong",
        "sub",
        "sup",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "tr",
        "u",
        "ul",
    ]
)
_ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title", "width", "height"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan", "scope"},
    "blockquote": {"cite"},
    "q": {"cite"},
}


class FeedContext(BaseModel):
    """What normalization needs to know about the feed an entry came from."""

    url: str
    language: str | None = None
    region: str | None = None


def normalize_feed(parsed: ParsedFeed, feed: FeedContext, *, now: datetime) -> list[Article]:
    """Every entry of a parsed feed as an Article, in feed order; empty entries are skipped."""
    return [
        normalize_entry(e, feed, document=parsed, now=now)
        for e in parsed.entries
        if not _is_empty(e)
    ]


def _is_empty(entry: Entry) -> bool:
    """No title, link, guid or text: nothing to store, and every such item would share a hash."""
    return not (
        entry.title.strip()
        or entry.link
        or entry.guid
        or entry.summary.strip()
        or (entry.body is not None and entry.body.value.strip())
    )


def normalize_entry(
    entry: Entry, feed: FeedContext, *, document: ParsedFeed | None = None, now: datetime
) -> Article:
    base = feed.url
    link = safe_url(entry.link, base=base)
    guid = clean(entry.guid, MAX_GUID_CHARS) or None
    if link is None and guid and guid.lower().startswith(("http://", "https://")):
        link = safe_url(guid, base=base)  # a permalink guid; an opaque id is no URL
    canonical = canonical_url(link) if link else None
    if canonical is not None and len(canonical) > MAX_URL_CHARS:  # "/" added to a full URL
        link = canonical = None

    title = plain_text(entry.title, MAX_TITLE_CHARS, is_html=entry.title_is_html)
    if entry.body is not None:
        value = clean(entry.body.value, MAX_CONTENT_CHARS)
        paragraphs = bodytext.body_paragraphs(value, is_html=entry.body.is_html)
        content_html = _bounded_html(value) if entry.body.is_html else ""
    else:
        paragraphs, content_html = [], ""
    body = bodytext.normalize_text(paragraphs)
    # A body read from the summary makes the summary (its start): the summary's own HTML
    # is then not read a second time (a third of the body text step's cost).
    from_body = entry.body is not None and entry.body.source == "summary" and bool(body)
    summary = (
        ""
        if from_body
        else plain_text(entry.summary, MAX_SUMMARY_CHARS, is_html=entry.summary_is_html)
    )
    if not summary or from_body:
        summary = _shorten(body, SUMMARY_FROM_BODY_CHARS) if body else summary

    language = entry.language or feed.language or (document.language if document else None)
    content_text = "\n\n".join(paragraphs)
    return Article(
        content_hash=content_hash(body, title=title, canonical_url=canonical),
        canonical_url=canonical,
        url=link,
        guid=guid,
        title=title,
        summary=summary,
        content_html=content_html,
        content_text=content_text,
        author=plain_text(entry.author, MAX_AUTHOR_CHARS) or None,
        # The declared language wins where the text does not contradict it; else detected.
        language=article_language(clean(language, 35), title=title, text=body or summary),
        region=feed.region,
        published_at=sane_date(entry.published, now=now),
        story_print=story_prints.recent_prints.of(title, content_text or summary),
    )


def clean(value: str | None, limit: int) -> str:
    """Drop NUL and other control characters (Postgres rejects NUL), then bound the length."""
    if not value:
        return ""
    return _CONTROL_CHARS.sub("", value)[:limit]


def plain_text(value: str | None, limit: int, *, is_html: bool = False) -> str:
    """A title, summary or name as clean, bounded plain text (control characters go first:
    the HTML reader must never see them)."""
    return clean(_plain(clean(value, MAX_CONTENT_CHARS), is_html), limit)


def _plain(value: str, is_html: bool) -> str:
    """Titles and summaries as plain text. Feeds mislabel escaped HTML as text often
    enough that anything with markup is read as HTML, and double-escaped markup is
    unwrapped again, so a script never survives as text."""
    for _ in range(3):
        if not value or not (is_html or "<" in value or "&" in value):
            break
        text = bodytext.html_to_text(value)
        if text == value:
            break
        value, is_html = text, False
    return " ".join(value.split())


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return cut + "…"


def sane_date(value: datetime | None, *, now: datetime) -> datetime:
    """The published time in UTC, or ``now`` when missing or impossible."""
    if value is None or value < EARLIEST_DATE or value > now + FUTURE_TOLERANCE:
        return now
    return value.astimezone(UTC)


def safe_url(value: str | None, *, base: str) -> str | None:
    """An absolute http(s) URL resolved against ``base``, or None."""
    if not value:
        return None
    value = clean(value.strip(), MAX_CONTENT_CHARS)
    if len(value) > MAX_URL_CHARS:
        return None  # a cut URL is a wrong one
    try:
        absolute = urljoin(base, value)
        parts = urlsplit(absolute)
    except ValueError:
        return None
    if parts.scheme.lower() not in _SAFE_SCHEMES or not parts.hostname:
        return None
    return absolute if len(absolute) <= MAX_URL_CHARS else None


def canonical_url(url: str) -> str:
    """Lowercase scheme and host, no default port, no fragment, no tracking parameters."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    netloc = parts.netloc.rpartition("@")[2].lower()  # user:password@ never identifies a story
    default_port = {"http": ":80", "https": ":443"}.get(scheme)
    if default_port and netloc.endswith(default_port):
        netloc = netloc.removesuffix(default_port)
    # Filter the raw pairs rather than re-encode them, so the rest of the query is untouched.
    kept = [pair for pair in parts.query.split("&") if pair and not _is_tracking(pair)]
    return urlunsplit((scheme, netloc, parts.path or "/", "&".join(kept), ""))


def _is_tracking(pair: str) -> bool:
    key = pair.split("=", 1)[0].lower()
    return key.startswith("utm_") or key in _TRACKING_PARAMS


def _bounded_html(html: str) -> str:
    """Sanitized HTML within MAX_CONTENT_CHARS: escaping can make it longer than its input,
    so an overlong result is cut and sanitized again (which also closes a cut tag).
    Character references (&#1;) come out as raw characters: control ones are removed."""
    sanitized = sanitize_html(html)
    if len(sanitized) > MAX_CONTENT_CHARS:
        sanitized = sanitize_html(sanitized[: MAX_CONTENT_CHARS - 1_000])
    return _CONTROL_CHARS.sub("", sanitized)


def sanitize_html(html: str) -> str:
    """Allowlisted HTML: no script, no event handlers, links only to http(s)."""
    if not html.strip():
        return ""
    return nh3.clean(
        html,
        tags=set(_ALLOWED_TAGS),
        attributes={k: set(v) for k, v in _ALLOWED_ATTRIBUTES.items()},
        url_schemes=set(_SAFE_SCHEMES),
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )


class DocumentInfo(BaseModel):
    """What a poll learns about the feed itself."""

    title: str | None
    site_url: str | None
    warning: str | None
    entries: int
    ttl: str | None = None
    update_period: str | None = None
    update_frequency: str | None = None
    hub: str | None = None
    self_url: str | None = None
    # Every entry's key (see ``entry_key``) and publication date, skipped entries included.
    entry_keys: list[str] = []
    published: list[datetime] = []
    # The content hash of each entry this poll normalized (not skipped, not empty).
    hashes: dict[str, str] = {}
    capped: bool = False  # the time cap left new entries unread: the next poll reads them


# Part of every entry key: bump it when normalization changes what an entry becomes.
_ENTRY_KEY_VERSION = 1


def entry_key(entry: Entry, feed: FeedContext, document: ParsedFeed) -> str:
    """A digest of everything an entry's Article is made of: the entry as published and
    what normalization reads of its feed. An entry whose key the feed delivered before
    would normalize to articles already stored, so a poll skips it unread."""
    body = entry.body
    material = (
        _ENTRY_KEY_VERSION,
        entry.guid,
        entry.link,
        entry.title,
        entry.title_is_html,
        entry.summary,
        entry.summary_is_html,
        (body.value, body.is_html, body.source) if body else None,
        entry.author,
        entry.published.isoformat() if entry.published else None,
        entry.language,
        feed.url,
        feed.language,
        feed.region,
        document.language,
    )
    return hashlib.sha256(repr(material).encode("utf-8", "surrogatepass")).hexdigest()


def articles_from_document(
    body: bytes,
    *,
    url: str,
    content_type: str | None,
    feed: FeedContext,
    now: datetime,
    known_entries: frozenset[str] = frozenset(),
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    seconds: float = DEFAULT_PARSE_SECONDS,
) -> tuple[DocumentInfo, list[Article]]:
    """Parse and normalize one fetched body: the CPU-bound step, run in a worker process.

    Entries whose keys are in ``known_entries`` (the feed's last delivered body) are not
    normalized: in a changed feed most entries are the ones it listed before."""
    started = time.monotonic()
    parsed = parse_feed(body, url=url, content_type=content_type, memory_budget=memory_budget)
    keys = [entry_key(entry, feed, parsed) for entry in parsed.entries]
    info = DocumentInfo(
        title=plain_text(parsed.title, MAX_TITLE_CHARS) or None,
        site_url=safe_url(parsed.site_url, base=url),
        warning=clean(parsed.warning, 500) or None,
        entries=len(parsed.entries),
        ttl=parsed.ttl,
        update_period=parsed.update_period,
        update_frequency=parsed.update_frequency,
        hub=safe_url(parsed.hub, base=url),
        self_url=safe_url(parsed.self_url, base=url),
        entry_keys=keys,
        published=[sane_date(e.published, now=now) for e in parsed.entries if not _is_empty(e)],
    )
    todo = [
        (entry, key)
        for entry, key in zip(parsed.entries, keys, strict=True)
        if key not in known_entries and not _is_empty(entry)
    ]
    articles: list[Article] = []
    deadline = started + seconds
    for done, (entry, _) in enumerate(todo):
        if done % 100 == 0 and done and time.monotonic() > deadline:
            # Left unread, not remembered: the next polls read them (see refresh).
            info.capped = True
            note = (
                f"cap: normalizing stopped after {seconds:g} s; {done:,} of {len(todo):,} "
                "new entries were read, the next polls read the rest"
            )
            info.warning = "; ".join(filter(None, (info.warning, note)))
            todo = todo[:done]
            break
        articles.append(normalize_entry(entry, feed, document=parsed, now=now))
    info.hashes = {key: a.content_hash for (_, key), a in zip(todo, articles, strict=True)}
    return info, articles


# A feed with the scripts the lazy parts of normalizing load something for: the language
# model, the story and search fold tables.
_WARM_UP_FEED = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>warm-up</title><link>https://warm.example/</link>
<item><title>Gold prices rise in the Gulf markets today</title>
<link>https://warm.example/1</link><description>&lt;p&gt;Gold prices rose on Monday in
the Gulf markets, traders said, as demand for the metal grew.&lt;/p&gt;</description></item>
<item><title>ارتفاع أسعار الذهب في أسواق الخليج اليوم</title>
<link>https://warm.example/2</link><description>&lt;p&gt;ارتفعت أسعار الذهب يوم الاثنين في
أسواق الخليج، وقال التجار إن الطلب على المعدن ازداد.&lt;/p&gt;</description></item>
</channel></rss>""".encode()


def warm_up() -> None:
    """Normalize a small feed once: what a parse process runs when it starts."""
    url = "https://warm.example/rss"
    articles_from_document(
        _WARM_UP_FEED,
        url=url,
        content_type="application/rss+xml",
        feed=FeedContext(url=url),
        now=datetime.now(UTC),
    )
