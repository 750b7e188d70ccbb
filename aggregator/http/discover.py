"""Discovery: given a web page instead of a feed, find the feed it advertises.

Pages announce their feeds with ``<link rel="alternate" type="application/rss+xml"
href="...">`` (Atom, RDF and JSON Feed likewise). ``feed_links`` reads them (pure);
``find_feed`` fetches a URL through the safe fetcher and returns the feed to add.
"""

from __future__ import annotations

from dataclasses import dataclass

import lxml.etree
import lxml.html

from aggregator.errors import FeedError, NoFeedFoundError, ParseError
from aggregator.http.fetch import Fetcher, FetchResult
from aggregator.pipeline.normalize import safe_url
from aggregator.pipeline.parse import parse_feed

FEED_TYPES = (
    "application/atom+xml",
    "application/rss+xml",
    "application/feed+json",
    "application/rdf+xml",
    "application/json",
)


@dataclass(frozen=True)
class Discovery:
    url: str  # the feed to add (where a permanent redirect led, if one did)
    page: str | None  # the page it was found in, when the given URL was not a feed
    candidates: tuple[str, ...] = ()
    response: FetchResult | None = None  # the feed's own fetch: what the first poll may reuse
    error: FeedError | None = None  # why it could not be fetched (a 429's Retry-After, ...)


def feed_links(html: bytes, *, base_url: str) -> list[str]:
    """Feed URLs a page advertises, in the page's order, preferred types first."""
    try:
        root = lxml.html.document_fromstring(html)
    except (lxml.etree.ParserError, ValueError):
        return []
    found: list[tuple[int, int, str]] = []
    for position, link in enumerate(root.iter("link")):
        rel = (link.get("rel") or "").lower().split()
        kind = (link.get("type") or "").split(";")[0].strip().lower()
        href = link.get("href")
        if "alternate" in rel and kind in FEED_TYPES and href:
            url = safe_url(href, base=base_url)
            if url and url not in (f[2] for f in found):
                found.append((FEED_TYPES.index(kind), position, url))
    return [url for _, _, url in sorted(found)]


async def find_feed(fetcher: Fetcher, url: str) -> Discovery:
    """``url`` itself if it is a feed, else the first working feed its page advertises."""
    response = await fetcher.fetch(url)
    body = response.body or b""
    try:
        parse_feed(body, url=response.url, content_type=response.content_type)
        return Discovery(url=response.moved_to or url, page=None, response=response)
    except ParseError:
        candidates = feed_links(body, base_url=response.url)
    for candidate in candidates:
        try:
            found = await fetcher.fetch(candidate)
            parse_feed(found.body or b"", url=found.url, content_type=found.content_type)
        except FeedError:
            continue
        return Discovery(
            url=found.moved_to or candidate,
            page=url,
            candidates=tuple(candidates),
            response=found,
        )
    if candidates:
        raise NoFeedFoundError(f"{url} advertises feeds, but none of them could be read")
    raise NoFeedFoundError(f'no feed at {url}: not a feed, and no <link rel="alternate"> feed')
