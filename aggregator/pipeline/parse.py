"""Parse: feed bytes in, typed entries out. Pure, CPU-bound, run off the event loop.

RSS 0.9x/1.0/2.0 and Atom are read as feedparser reads them (with its own
sanitizer off: we extract text and sanitize HTML ourselves, and it is three
times faster): a well-formed document by ``fastparse``, which reproduces
feedparser's values from lxml's tree several times faster, anything it
declines by feedparser itself. JSON Feed, which feedparser does not read,
through ``json``.

Bodies are hostile. Before feedparser sees one, it is decoded to UTF-8 (so
no encoding can hide markup from the byte-level checks), stripped of raw
control characters, of character references XML forbids (``&#xD800;`` makes
feedparser raise) and of every DOCTYPE in its prolog: an internal DTD subset
is where entity-expansion bombs and external entities live, and feedparser's
loose parser would expand them. Simple entities (a character or a short
text) are substituted within a budget; the rest are dropped. What an
ill-formed document still yields is kept, with a warning saying what was wrong.
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
import feedparser.encodings

from aggregator.errors import NotAFeedError, ParseError
from aggregator.pipeline import cut, fastparse

# What reading a document may cost. Its bytes are capped when it is fetched
# (AGGREGATOR_MAX_BODY_BYTES); its entries are capped by the memory they take once read:
# each costs about its own bytes plus ENTRY_COST (measured: the parsed mapping ~1 kB, its
# Article and story print ~9 kB), so a 10 MB body of 10,000 ordinary items (about 110 MB)
# is read whole, and 300,000 tiny ones are cut where the memory budget ends. Feeds list
# newest first: what is cut is the oldest. Time is capped in ``normalize``.
ENTRY_COST = 10_000
DEFAULT_MEMORY_BUDGET = 256 * 1024 * 1024
_JSON_TYPES = ("application/feed+json", "application/json")
_HTML_START = re.compile(
    rb"\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html|head|body)[\s>]", re.I | re.S
)


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
    # WebSub: the hub that pushes this feed, and the topic URL it knows it by.
    hub: str | None = None
    self_url: str | None = None


def parse_feed(
    body: bytes,
    *,
    url: str,
    content_type: str | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> ParsedFeed:
    """Read a feed document; raise ``ParseError`` (``NotAFeedError``) when it is not one.

    Entries past ``memory_budget`` (see ``ENTRY_COST``) are not read, and the warning
    says so; neither is an entry a truncated document does not close."""
    start = body.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if not start:
        raise NotAFeedError("not a feed: the body is empty")
    if _looks_like_json(start, content_type):
        return _parse_json_feed(body, memory_budget=memory_budget)
    return _parse_xml_feed(body, url=url, content_type=content_type, memory_budget=memory_budget)


def entries_within(budget: int, *, body_bytes: int, count: int) -> int:
    """How many of a document's ``count`` entries its memory budget allows (at least one)."""
    return max(1, min(count, (budget - body_bytes) // ENTRY_COST))


def _cap_warning(total: int, kept: int, budget: int) -> str:
    return (
        f"cap: {total:,} entries would need about {total * ENTRY_COST // 2**20:,} MB to read; "
        f"only the first {kept:,} were read (parse memory budget {budget // 2**20:,} MB)"
    )


def _looks_like_json(start: bytes, content_type: str | None) -> bool:
    if start in (b"{", b"["):
        return True
    mime = (content_type or "").split(";")[0].strip().lower()
    return mime in _JSON_TYPES and start != b"<"


# --- RSS and Atom, through fastparse or feedparser -----------------------------------------


def _parse_xml_feed(
    body: bytes,
    *,
    url: str,
    content_type: str | None,
    fast: bool = True,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> ParsedFeed:
    """Defuse, then read with ``fastparse``, or with feedparser where it declines.

    Both give feedparser's feed and entry values, mapped here by the same code;
    ``fast=False`` forces feedparser (the tests compare the two)."""
    headers = {"content-location": url}
    if content_type:
        headers["content-type"] = content_type
    warnings: list[str] = []
    body = defuse_xml(body, headers, warnings)
    body = cut.drop_unclosed(body, warnings)
    body = _within_budget(body, memory_budget, warnings)
    if fast:
        found = fastparse.read_feed(body, url=url, max_entries=_UNLIMITED)
        if found is not None:
            # Only documents expat parses too get here, and for those feedparser adds no
            # warning of its own (but NonXMLContentType, which is ignored below).
            feed, entries = found
            return _parsed_feed(feed, entries, warnings)
    try:
        # A stream, never bytes or str: feedparser treats strings as URLs or paths to open.
        parsed = feedparser.parse(io.BytesIO(body), response_headers=headers, sanitize_html=False)
    except Exception as exc:  # feedparser raises bare ValueError/TypeError on some bad input
        raise ParseError(f"unreadable feed: {type(exc).__name__}: {exc}") from exc
    if not parsed.get("version") and not parsed.entries:
        if _HTML_START.match(body, _xml_declaration_end(body)):
            raise NotAFeedError("not a feed: the server sent an HTML page")
        reason = parsed.get("bozo_exception")
        raise NotAFeedError(f"not a feed{f': {reason}' if reason else ''}")
    problem = parsed.get("bozo_exception") if parsed.get("bozo") else None
    if problem is not None and not isinstance(problem, feedparser.NonXMLContentType):
        warnings.append(str(problem))  # a content type that is not XML's says nothing here
    return _parsed_feed(parsed.feed, parsed.entries, warnings)


_UNLIMITED = 2**31  # fastparse's own entry limit: the budget has cut the body already


def _within_budget(body: bytes, budget: int, warnings: list[str]) -> bytes:
    """The body cut (and closed) after the last entry its memory budget allows."""
    rough = sum(body.count(tag) for tag in (b"<item", b"<entry", b":item", b":entry"))
    if len(body) + rough * ENTRY_COST <= budget:  # nearly always: no scan needed
        return body
    spans = cut.entry_spans(body)
    kept = entries_within(budget, body_bytes=len(body), count=len(spans))
    if kept >= len(spans):
        return body
    end = max((end for _, end in spans[:kept] if end is not None), default=None)
    if end is None:  # not one whole entry within the budget: feedparser will decide
        return body
    warnings.append(_cap_warning(len(spans), kept, budget))
    return cut.closed(body[:end])


def _parsed_feed(feed: Any, entries: list[Any], warnings: list[str]) -> ParsedFeed:
    """A ParsedFeed from feedparser's feed and entry mappings (or fastparse's, the same keys)."""
    return ParsedFeed(
        title=_text_of(feed, "title"),
        site_url=feed.get("link"),
        language=feed.get("language"),
        entries=[_entry_from_feedparser(e) for e in entries],
        warning="; ".join(warnings) or None,
        ttl=_text_of(feed, "ttl"),
        hub=_link(feed, "hub"),
        self_url=_link(feed, "self"),
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


# --- Defusing hostile XML before feedparser sees it ------------------------------------------

# Bytes XML 1.0 never allows (tab, LF and CR are fine); safe to drop once the body is UTF-8.
_CONTROL_BYTES = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f]+")
_CONTROL_BYTE_SET = bytes([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20)])
_CHAR_REF = re.compile(rb"&#(?:[xX]([0-9A-Fa-f]{1,16})|([0-9]{1,20}));")
_XML_DECLARATION = re.compile(rb"\s*<\?xml[^>]*\?>")
_DOCTYPE = re.compile(rb"<!DOCTYPE", re.I)
_ENTITY_TEXT = re.compile(rb"<!ENTITY", re.I)
_ASCII_TAG = re.compile(rb"<\w")  # where feedparser's own DOCTYPE handling stops looking
# Inside a declaration: quoted strings, comments and PIs hide brackets; [ ] nest; > ends it.
_DECLARATION_TOKEN = re.compile(
    rb"\"[^\"]*(?:\"|\Z)|'[^']*(?:'|\Z)|<!--(?:.*?-->|.*\Z)|<\?(?:.*?\?>|.*\Z)|[\[\]>]", re.S
)
_ENTITY_DECLARATION = re.compile(
    rb"""<!ENTITY\s+(%\s+)?([^\s"'%&;<>]+)\s+(?:"([^"]*)"|'([^']*)'|(SYSTEM|PUBLIC))""", re.I
)
_SIMPLE_ENTITY_VALUE = re.compile(rb"&#(?:[xX][0-9A-Fa-f]{1,6}|[0-9]{1,7});|[^&<%\"']{0,64}")
_ENTITY_REFERENCE = re.compile(rb"&([A-Za-z_:][\w.:-]*);")
_PREDEFINED_ENTITIES = frozenset({b"lt", b"gt", b"amp", b"quot", b"apos"})
_PROLOG_SPACE = frozenset(b" \t\r\n")


def defuse_xml(body: bytes, headers: dict[str, str], warnings: list[str]) -> bytes:
    """The body as UTF-8 without control bytes, forbidden character references or DOCTYPEs.

    ``headers`` (feedparser's response headers) get ``charset=utf-8`` to match;
    what was wrong with the document is appended to ``warnings``."""
    body = _to_utf8(body, headers, warnings)
    if len(body.translate(None, _CONTROL_BYTE_SET)) != len(body):  # memchr-fast when clean
        body, runs = _CONTROL_BYTES.subn(b"", body)
        warnings.append(f"control characters removed ({runs} places)")
    replaced = 0

    def legal(match: re.Match[bytes]) -> bytes:
        nonlocal replaced
        if _is_xml_char(*match.groups()):
            return match.group(0)
        replaced += 1
        return b"" if _code(*match.groups()) < 0x20 else b"&#xFFFD;"

    # Each distinct reference checked once: a feed written in references has thousands.
    if not all(_is_xml_char(*groups) for groups in set(_CHAR_REF.findall(body))):
        body = _CHAR_REF.sub(legal, body)
    if replaced:
        warnings.append(f"references to characters XML forbids removed ({replaced})")
    return _remove_doctypes(body, warnings)


def _code(hex_digits: bytes, decimal: bytes) -> int:
    return int(hex_digits, 16) if hex_digits else int(decimal)


def _is_xml_char(hex_digits: bytes, decimal: bytes) -> bool:
    code = _code(hex_digits, decimal)
    return (
        code in (0x9, 0xA, 0xD)
        or 0x20 <= code <= 0xD7FF
        or 0xE000 <= code <= 0xFFFD
        or 0x10000 <= code <= 0x10FFFF
    )


def _to_utf8(body: bytes, headers: dict[str, str], warnings: list[str]) -> bytes:
    """Decode as feedparser would (HTTP charset, XML declaration, BOM, fallbacks), to UTF-8.

    Done first so that no encoding in which '<' is not the byte '<' (UTF-16,
    UTF-7, EBCDIC) can hide a DOCTYPE from ``_remove_doctypes``; feedparser
    is then told the body is UTF-8, which it now is."""
    result: dict[str, Any] = {}
    try:
        utf8 = bytes(feedparser.encodings.convert_to_utf8(headers, body, result))
    except Exception:  # an internal helper of feedparser's; if it ever breaks, plain UTF-8
        utf8 = body.decode("utf-8", "replace").encode("utf-8")
        result = {}
    problem = result.get("bozo_exception")
    if result.get("encoding") in _LAST_RESORTS:
        repaired = _decode_by_language(body)
        if repaired is not None:
            utf8, problem = repaired
    if problem is not None and not isinstance(problem, feedparser.NonXMLContentType):
        warnings.append(str(problem))
    if "content-type" in headers:
        mime = headers["content-type"].split(";")[0].strip() or "application/xml"
        headers["content-type"] = f"{mime}; charset=utf-8"
    return utf8


# feedparser's last resorts when no declared encoding decodes the body: Latin letters for
# every byte, which turns an Arabic feed served in windows-1256 but declared UTF-8 into
# mojibake. The document's own language names the legacy code page its CMS likely used.
_LAST_RESORTS = ("windows-1252", "iso-8859-2")
_CODE_PAGES = {
    "ar": ("windows-1256", "\u0600", "\u06ff"),
    "fa": ("windows-1256", "\u0600", "\u06ff"),
    "ur": ("windows-1256", "\u0600", "\u06ff"),
    "ku": ("windows-1256", "\u0600", "\u06ff"),
    "he": ("windows-1255", "\u0590", "\u05ff"),
    "ru": ("windows-1251", "\u0400", "\u04ff"),
    "uk": ("windows-1251", "\u0400", "\u04ff"),
}
_DECLARED_LANGUAGE = re.compile(
    rb"<(?:\w+:)?language>\s*([A-Za-z]{2,3})|xml:lang\s*=\s*[\"']([A-Za-z]{2,3})"
)


def _decode_by_language(body: bytes) -> tuple[bytes, str] | None:
    """The body as UTF-8, decoded with its language's legacy code page, when it is not
    UTF-8 and that code page gives mostly letters of the language's script; else None."""
    found = _DECLARED_LANGUAGE.search(body, 0, 65536)
    if found is None:
        return None
    language = (found.group(1) or found.group(2)).decode().lower()
    if language not in _CODE_PAGES:
        return None
    encoding, first, last = _CODE_PAGES[language]
    try:
        body.decode("utf-8")
        return None  # valid UTF-8 after all: feedparser had a reason of its own
    except UnicodeDecodeError:
        pass
    try:
        text = body.decode(encoding)
    except UnicodeDecodeError:
        return None
    letters = [c for c in text if ord(c) > 0x7F and c.isalpha()]
    if not letters or sum(first <= c <= last for c in letters) < 0.9 * len(letters):
        return None
    text = _XML_DECLARATION_TEXT.sub("<?xml version='1.0' encoding='utf-8'?>", text, count=1)
    note = (
        f"not valid UTF-8 as declared; decoded as {encoding}, the code page of its "
        f"declared language ({language})"
    )
    return text.encode("utf-8"), note


_XML_DECLARATION_TEXT = re.compile(r"^\s*<\?xml[^>]*\?>")


def _xml_declaration_end(body: bytes) -> int:
    declaration = _XML_DECLARATION.match(body)
    return declaration.end() if declaration else 0


def _remove_doctypes(body: bytes, warnings: list[str]) -> bytes:
    """Drop every declaration (DOCTYPE above all) from the prolog, keep its comments and PIs.

    Then make sure feedparser finds no ``<!ENTITY`` where it looks for them
    (before the first ASCII tag, comments included): it would hand those to its
    loose parser, which expands them without limit."""
    kept: list[bytes] = []
    entities: dict[bytes, bytes | None] = {}
    subsets = 0
    position, size = 0, len(body)
    while True:
        token = position
        while token < size and body[token] in _PROLOG_SPACE:
            token += 1
        if body.startswith(b"<?", token):
            close = body.find(b"?>", token + 2)
            end = size if close < 0 else close + 2
        elif body.startswith(b"<!--", token):
            close = body.find(b"-->", token + 4)
            end = size if close < 0 else close + 3
        elif body.startswith(b"<!", token):
            end = _declaration_end(body, token)
            declaration = body[token:end]
            if _DOCTYPE.match(declaration) and b"[" in declaration:
                subsets += 1
                entities = _declared_entities(declaration) | entities
            kept.append(body[position:token])
            position = end
            continue
        else:
            break
        kept.append(body[position:end])
        position = end
    body = b"".join(kept) + body[position:]
    first_tag = _ASCII_TAG.search(body)
    head_end = first_tag.start() if first_tag else len(body)
    head, hidden = _ENTITY_TEXT.subn(b"&lt;!ENTITY", body[:head_end])
    body = head + body[head_end:]
    if hidden:
        warnings.append(f"entity declarations outside a DTD neutralized ({hidden})")
    if not subsets:
        return body
    body, dropped = _replace_entity_references(body, entities)
    note = f"DTD internal subset removed ({len(entities)} entities declared"
    warnings.append(note + (f", {dropped} references dropped)" if dropped else ")"))
    return body


def _declaration_end(body: bytes, start: int) -> int:
    """The index after the ``>`` closing the declaration at ``start`` (or the body's end)."""
    depth = 0
    for token in _DECLARATION_TOKEN.finditer(body, start + 2):
        mark = token.group(0)
        if mark == b"[":
            depth += 1
        elif mark == b"]":
            depth = max(depth - 1, 0)
        elif mark == b">" and depth == 0:
            return token.end()
    return len(body)


def _declared_entities(declaration: bytes) -> dict[bytes, bytes | None]:
    """General entities of a DTD subset: the value when it is simple, else None."""
    entities: dict[bytes, bytes | None] = {}
    for match in _ENTITY_DECLARATION.finditer(declaration):
        parameter, name, double, single, external = match.groups()
        if parameter or name in _PREDEFINED_ENTITIES:
            continue
        value = double if double is not None else single
        simple = value is not None and not external and _SIMPLE_ENTITY_VALUE.fullmatch(value)
        entities.setdefault(name, value if simple else None)  # XML: the first one counts
    return entities


def _replace_entity_references(
    body: bytes, entities: dict[bytes, bytes | None]
) -> tuple[bytes, int]:
    """Substitute simple entities (growing the body by at most its size); drop the rest."""
    budget = len(body)
    dropped = 0

    def substitute(match: re.Match[bytes]) -> bytes:
        nonlocal budget, dropped
        name = match.group(1)
        if name not in entities:
            return match.group(0)  # not declared there: an HTML entity feedparser knows
        value = entities[name]
        if value is None or len(value) > budget:
            dropped += 1
            return b""
        budget -= len(value)
        return value

    return _ENTITY_REFERENCE.sub(substitute, body), dropped


# --- JSON Feed ------------------------------------------------------------------------------


def _link(feed: Any, rel: str) -> str | None:
    for link in feed.get("links") or ():
        if link.get("rel") == rel and link.get("href"):
            return str(link["href"])
    return None


def _parse_json_feed(body: bytes, *, memory_budget: int = DEFAULT_MEMORY_BUDGET) -> ParsedFeed:
    try:
        document = json.loads(body.decode("utf-8-sig", "replace"))
    except RecursionError:
        raise ParseError("invalid JSON Feed: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, or an integer with too many digits
        raise ParseError(f"invalid JSON Feed: {exc}") from None
    if not isinstance(document, dict) or not str(document.get("version", "")).startswith(
        "https://jsonfeed.org/version/"
    ):
        raise NotAFeedError("not a feed: JSON without a jsonfeed.org version")
    items = document.get("items")
    if not isinstance(items, list):
        raise ParseError("invalid JSON Feed: 'items' is not a list")
    warning = None
    kept = entries_within(memory_budget, body_bytes=len(body), count=len(items))
    if kept < len(items):
        warning = _cap_warning(len(items), kept, memory_budget)
        items = items[:kept]
    feed_language = _str_or_none(document.get("language"))
    return ParsedFeed(
        title=_str_or_none(document.get("title")),
        site_url=_str_or_none(document.get("home_page_url")),
        language=feed_language,
        hub=_json_hub(document.get("hubs")),
        self_url=_str_or_none(document.get("feed_url")),
        entries=[_entry_from_json(item) for item in items if isinstance(item, dict)],
        warning=warning,
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


def _json_hub(hubs: Any) -> str | None:
    for hub in hubs if isinstance(hubs, list) else ():
        if (
            isinstance(hub, dict)
            and str(hub.get("type", "")).lower() == "websub"
            and hub.get("url")
        ):
            return str(hub["url"])
    return None
