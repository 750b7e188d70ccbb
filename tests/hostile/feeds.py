"""Builders for the hostile corpus' documents: small RSS and JSON feeds with chosen parts."""

from __future__ import annotations

import json
from typing import Any

XML_DECLARATION = '<?xml version="1.0" encoding="utf-8"?>'


def story(case: str, n: int = 0) -> str:
    """A body long enough to be hashed on its own, unique per case and item."""
    return (
        f"Officials in the case {case} said on Monday that story number {n} would be "
        "published in full after two years of delays and a long dispute over its cost."
    )


def item(
    case: str,
    n: int = 0,
    *,
    title: str | None = None,
    link: str | None = "default",
    guid: str | None = "default",
    description: str | None = None,
    date: str | None = "Mon, 02 Mar 2026 10:00:00 GMT",
    extra: str = "",
) -> str:
    """One <item>; ``None`` leaves a part out, strings go in as they are (already escaped)."""
    parts = ["<item>"]
    parts.append(f"<title>{title if title is not None else f'{case} headline {n}'}</title>")
    if link is not None:
        parts.append(
            f"<link>{f'https://news.example/{case}/{n}' if link == 'default' else link}</link>"
        )
    if guid is not None:
        parts.append(f"<guid>{f'{case}-{n}' if guid == 'default' else guid}</guid>")
    parts.append(
        f"<description>{description if description is not None else story(case, n)}</description>"
    )
    if date is not None:
        parts.append(f"<pubDate>{date}</pubDate>")
    parts.append(extra)
    parts.append("</item>")
    return "".join(parts)


def rss(*items: str, prolog: str = XML_DECLARATION, title: str = "A hostile feed") -> str:
    return (
        f'{prolog}<rss version="2.0"><channel><title>{title}</title>'
        f"<link>https://news.example/</link>{''.join(items)}</channel></rss>"
    )


def rss_bytes(*items: str, prolog: str = XML_DECLARATION, title: str = "A hostile feed") -> bytes:
    return rss(*items, prolog=prolog, title=title).encode()


def json_feed(items: list[Any], **top: Any) -> bytes:
    document = {"version": "https://jsonfeed.org/version/1.1", "title": "JSON", **top}
    document["items"] = items
    return json.dumps(document).encode()


def billion_laughs(case: str) -> bytes:
    levels = "".join(f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10}">' for i in range(1, 10))
    prolog = f'{XML_DECLARATION}<!DOCTYPE rss [<!ENTITY lol0 "lol">{levels}]>'
    return rss_bytes(item(case, description=story(case) + " &lol9;"), prolog=prolog)


def quadratic_blowup(case: str, entity_chars: int = 50_000, references: int = 5_000) -> bytes:
    """One big entity referenced many times: feedparser's loose parser would expand it
    (~250 MB here) after expat refused the document."""
    prolog = f'{XML_DECLARATION}<!DOCTYPE rss [<!ENTITY big "{"x" * entity_chars}">]>'
    return rss_bytes(
        item(case, description=story(case) + " " + "&big;" * references), prolog=prolog
    )


def entity_hidden_in_comment(case: str) -> bytes:
    """feedparser collects <!ENTITY> lines from its whole prolog, comments included, and gives
    them to its loose parser: a 100 kB document became 40,000,000 characters."""
    prolog = f'{XML_DECLARATION}<!--\n<!DOCTYPE x>\n<!ENTITY big "{"x" * 20_000}">\n-->\n'
    return rss_bytes(item(case, description=story(case) + " " + "&big;" * 2_000), prolog=prolog)
