"""Parse: feed bytes in, typed entries out. Pure, CPU-bound, run off the event loop.

RSS 0.9x/1.0/2.0 and Atom go through feedparser (with its own sanitizer off:
we extract text and sanitize HTML ourselves, and it is three times faster);
JSON Feed, which feedparser does not read, through ``json``.
"""

from __future__ import annotations

import calendar
import io
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import feedparser

from aggregator.errors import ParseError

# An internal DTD subset is where entity-expansion bombs live; no news feed needs one.
_DOCTYPE_SUBSET = re.compile(rb"<!DOCTYPE[^>\[]*\[.*?\]\s*>", re.DOTALL | re.IGNORECASE)
_JSON_TYPES = ("application/feed+json", "application/json")


@dataclass(frozen=True, slots=True)
class Body:
    """The field an entry's body text comes from."""

    value: str
    is_html: bool
    source: str


@dataclass(slots=True)
class Entry:
    """One item of a feed, as published, before normalization."""

    guid: str | None = None
    link: str | None = None
    title: str = ""
    title_is_html: bool = False
    summary: str = ""
    summary_is_html: bool = False
    body: Body | None = None
    author: str | None = None
    published: datetime | None = None
    language: str | None = None


@dataclass(slots=True)
class ParsedFeed:
    title: str | None = None
    site_url: str | None = None
    language: str | None = None
    entries: list[Entry] = field(default_factory=list)
    warning: str | None = None
    # Publisher hints on how often to poll: RSS <ttl> (minutes), sy:updatePeriod/Frequency.
    ttl: str | None = None
    update_period: str | None = None
    update_frequency: str | None = None


def parse_feed(body: bytes, *, url: str, content_type: str | None = None) -> ParsedFeed:
    """Read a feed document; raise ``ParseError`` when it is not one."""
    if _looks_like_json(body, content_type):
        return _parse_json_feed(body)
    return _parse_xml_feed(body, url=url, content_type=content_type)


def _looks_like_json(body: bytes, content_type: str | None) -> bool:
    if content_type and content_type.split(";")[0].strip().lower() in _JSON_TYPES:
        return True
    return body.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"{"


# --- RSS and Atom, through feedparser -------------------------------------------------------


def _parse_xml_feed(body: bytes, *, url: str, content_type: str | None) -> ParsedFeed:
    headers = {"content-location": url}
    if content_type:
        headers["content-type"] = content_type
    body = _DOCTYPE_SUBSET.sub(b"", body)
    try:
        # A stream, never bytes or str: feedparser treats strings as URLs or paths to open.
        parsed = feedparser.parse(io.BytesIO(body), response_headers=headers, sanitize_html=False)
    except Exception as exc:  # feedparser raises bare ValueError/TypeError on some bad input
        raise ParseError(f"unreadable feed: {exc}") from exc
    if not parsed.get("version") and not parsed.entries:
        reason = parsed.get("bozo_exception")
        raise ParseError(f"not a feed{f': {reason}' if reason else ''}")
    feed = parsed.feed
    warning = str(parsed.bozo_exception) if parsed.get("bozo") else None
    return ParsedFeed(
        title=_text_of(feed, "title"),
        site_url=feed.get("link"),
        language=feed.get("language"),
        entries=[_entry_from_feedparser(e) for e in parsed.entries],
        warning=warning,
        ttl=_text_of(feed, "ttl"),
        update_period=_text_of(feed, "sy_updateperiod"),
        update_frequency=_text_of(feed, "sy_updatefrequency"),
    )


def _entry_from_feedparser(raw: Any) -> Entry:
    title_detail = raw.get("title_detail") or {}
    summary_detail = raw.get("summary_detail") or {}
    return Entry(
        guid=raw.get("id") or None,
        link=raw.get("link") or None,
        title=raw.get("title") or "",
        title_is_html=_is_html(title_detail.get("type")),
        summary=raw.get("summary") or "",
        summary_is_html=_is_html(summary_detail.get("type")),
        body=_body_from_feedparser(raw),
        author=raw.get("author") or None,
        published=_struct_to_datetime(raw.get("published_parsed") or raw.get("updated_parsed")),
        language=_first_language(raw),
    )


def _body_from_feedparser(raw: Any) -> Body | None:
    for content in raw.get("content") or ():
        value = content.get("value") or ""
        if value.strip():
            return Body(value, _is_html(content.get("type")), "content")
    summary = raw.get("summary") or ""
    if summary.strip():
        return Body(summary, _is_html((raw.get("summary_detail") or {}).get("type")), "summary")
    return None


def _first_language(raw: Any) -> str | None:
    for detail in (*(raw.get("content") or ()), raw.get("summary_detail") or {}):
        language = detail.get("language")
        if language:
            return str(language)
    return None


def _is_html(mime: str | None) -> bool:
    return mime is None or mime in ("text/html", "application/xhtml+xml")


def _text_of(mapping: Any, key: str) -> str | None:
    value = mapping.get(key)
    return str(value) if value else None


def _struct_to_datetime(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromtimestamp(calendar.timegm(value), tz=UTC)
    except (OverflowError, ValueError, OSError):
        return None


# --- JSON Feed ------------------------------------------------------------------------------


def _parse_json_feed(body: bytes) -> ParsedFeed:
    try:
        document = json.loads(body.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ParseError(f"invalid JSON Feed: {exc}") from exc
    if not isinstance(document, dict) or not str(document.get("version", "")).startswith(
        "https://jsonfeed.org/version/"
    ):
        raise ParseError("not a feed: JSON without a jsonfeed.org version")
    items = document.get("items")
    if not isinstance(items, list):
        raise ParseError("invalid JSON Feed: 'items' is not a list")
    feed_language = _str_or_none(document.get("language"))
    return ParsedFeed(
        title=_str_or_none(document.get("title")),
        site_url=_str_or_none(document.get("home_page_url")),
        language=feed_language,
        entries=[_entry_from_json(item) for item in items if isinstance(item, dict)],
    )


def _entry_from_json(item: dict[str, Any]) -> Entry:
    html = _str_or_none(item.get("content_html"))
    text = _str_or_none(item.get("content_text"))
    summary = _str_or_none(item.get("summary"))
    if html and html.strip():
        body: Body | None = Body(html, True, "content_html")
    elif text and text.strip():
        body = Body(text, False, "content_text")
    elif summary and summary.strip():
        body = Body(summary, False, "summary")
    else:
        body = None
    authors = item.get("authors") or (
        [item["author"]] if isinstance(item.get("author"), dict) else []
    )
    author = next((a.get("name") for a in authors if isinstance(a, dict) and a.get("name")), None)
    return Entry(
        guid=_str_or_none(item.get("id")),
        link=_str_or_none(item.get("url")) or _str_or_none(item.get("external_url")),
        title=_str_or_none(item.get("title")) or "",
        summary=summary or "",
        body=body,
        author=_str_or_none(author),
        published=_parse_rfc3339(item.get("date_published") or item.get("date_modified")),
        language=_str_or_none(item.get("language")),
    )


def _str_or_none(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    return str(value)


def _parse_rfc3339(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)
