"""fastparse against feedparser: wherever the fast path accepts a document, the same result.

Every XML document we have (our corpus, the packaged samples, the hostile
corpus, the bench's synthetic feeds, the shared fixtures and feedparser's own
test suite when ``../shared`` exists, and a few thousand generated documents)
goes through ``parse._parse_xml_feed`` twice, with the fast path on and off.
Where the fast path accepts a document, the ``ParsedFeed`` (feed-level fields,
entries, warning) and the ``Article``\\s normalized from it must be equal;
where it declines, feedparser answered anyway. Acceptance is asserted on our
own corpora (all of them are well-formed) and printed for the others.

The two shortcuts fastparse takes instead of calling feedparser (its HTML
re-serializer, its URL joins) are checked against feedparser's functions on
generated input; the parser's safety on raw hostile bodies is checked directly.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import feedparser
import pytest
from feedparser.urls import _urljoin, make_safe_absolute_uri, resolve_relative_uris
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.pipeline import fastparse
from aggregator.pipeline.normalize import FeedContext, normalize_feed
from aggregator.pipeline.parse import ParsedFeed, _parse_xml_feed, defuse_xml, parse_feed
from bench.synthetic import render_feed
from tests.groundtruth import OWN_CORPUS, SHARED_FIXTURES
from tests.hostile import feeds
from tests.hostile.cases import CASES
from tests.hostile.server import Body

# ``python -m pytest -m feedparser``: re-verify fastparse against the installed feedparser.
pytestmark = pytest.mark.feedparser

HERE = Path(__file__).resolve().parent
SAMPLES = HERE.parent / "aggregator" / "samples"
PEER = Path(
    os.environ.get(
        "AGGREGATOR_PEER_CORPUS", HERE.parent.parent / "shared" / "peer" / "feedparser-tests"
    )
)
NOW = datetime(2026, 3, 3, tzinfo=UTC)
URL = "http://example.org/feed/"  # feedparser's tests resolve relative links against this


# --- the comparison ---------------------------------------------------------------------------


def accepts(body: bytes, url: str = URL, content_type: str | None = None) -> bool:
    headers = {"content-location": url, **({"content-type": content_type} if content_type else {})}
    defused = defuse_xml(body, headers, [])
    return fastparse.read_feed(defused, url=url, max_entries=5_000) is not None


def both_paths(
    body: bytes, url: str = URL, content_type: str | None = None
) -> tuple[ParsedFeed | str, ParsedFeed | str]:
    """The fast path's result and feedparser's (or the error each raised)."""
    results: list[ParsedFeed | str] = []
    for fast in (True, False):
        try:
            results.append(_parse_xml_feed(body, url=url, content_type=content_type, fast=fast))
        except Exception as exc:  # the same error from both is as good as the same feed
            results.append(f"{type(exc).__name__}: {exc}")
    return results[0], results[1]


def difference(fast: ParsedFeed | str, slow: ParsedFeed | str, url: str) -> str | None:
    """What differs between the two paths' results, or None."""
    if isinstance(fast, str) or isinstance(slow, str):
        return None if fast == slow else f"{fast!r} != {slow!r}"
    for name in ParsedFeed.__dataclass_fields__:
        if name != "entries" and getattr(fast, name) != getattr(slow, name):
            return f"feed.{name}: {getattr(fast, name)!r} != {getattr(slow, name)!r}"
    if len(fast.entries) != len(slow.entries):
        return f"{len(fast.entries)} entries != {len(slow.entries)}"
    for n, (a, b) in enumerate(zip(fast.entries, slow.entries, strict=True)):
        if a != b:
            return f"entry {n}: {a!r} != {b!r}"
    context = FeedContext(url=url)
    if normalize_feed(fast, context, now=NOW) != normalize_feed(slow, context, now=NOW):
        return "the normalized articles differ"
    return None


def check(documents: list[tuple[str, bytes]], url: str = URL) -> tuple[int, int]:
    """Assert both paths agree on every document; return (accepted, documents)."""
    mismatches, accepted = [], 0
    for name, body in documents:
        accepted += accepts(body, url)
        found = difference(*both_paths(body, url), url=url)
        if found:
            mismatches.append(f"{name}: {found[:500]}")
    assert not mismatches, "\n".join(mismatches[:10])
    return accepted, len(documents)


def is_xml(body: bytes) -> bool:
    return body.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] not in (b"{", b"[", b"")


def files(*roots: Path) -> list[tuple[str, bytes]]:
    found = []
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            if path.name in ("README.md", "LICENSE") or path.suffix in (".py", ".json", ".toml"):
                continue
            body = path.read_bytes()
            if is_xml(body):
                found.append((str(path.relative_to(root)), body))
    return found


def synthetic_feeds() -> list[tuple[str, bytes]]:
    return [
        (
            f"synthetic {feed}",
            render_feed(feed, 3, items=20, new_per_change=2, published_at={}, epoch=1.7e9),
        )
        for feed in range(12)
    ]


def hostile_feeds() -> list[tuple[str, bytes]]:
    found = []
    for case in CASES:
        body = case.answer.body if isinstance(case.answer, Body) else None
        if isinstance(body, bytes) and is_xml(body):
            found.append((case.name, body))
    return found


# --- our corpora: everything accepted, nothing different -------------------------------------


def test_our_corpora_are_all_read_by_the_fast_path_with_the_same_result() -> None:
    documents = files(OWN_CORPUS / "raw", SAMPLES) + synthetic_feeds()
    accepted, total = check(documents)
    print(f"\nfast path accepted {accepted}/{total} documents of tests/corpus, samples, synthetic")
    assert total >= 25
    assert accepted == total  # all of them are well-formed RSS, RDF or Atom


def test_hostile_corpus_same_result_either_way() -> None:
    documents = hostile_feeds()
    accepted, total = check(documents, url="https://news.example/feed")
    print(f"\nfast path accepted {accepted}/{total} hostile documents")
    assert total >= 20
    assert accepted >= total // 2  # the ill-formed, oversized and non-feed ones are declined


@pytest.mark.skipif(not (SHARED_FIXTURES / "raw").is_dir(), reason="no ../shared fixtures")
def test_shared_fixtures_are_all_read_by_the_fast_path_with_the_same_result() -> None:
    accepted, total = check(files(SHARED_FIXTURES / "raw"))
    print(f"\nfast path accepted {accepted}/{total} shared fixture documents")
    assert total >= 10
    assert accepted == total


@pytest.mark.skipif(not (PEER / "wellformed").is_dir(), reason=f"no peer corpus at {PEER}")
def test_feedparser_wellformed_suite_same_result_where_accepted() -> None:
    accepted, total = check(files(PEER / "wellformed"))
    print(
        f"\nfast path accepted {accepted}/{total} ({accepted / total:.0%}) of feedparser's wellformed"
    )
    assert total > 1_000
    assert accepted > total // 3  # Atom 0.3, base64 and XML content types, iTunes are declined


@pytest.mark.skipif(not PEER.is_dir(), reason=f"no peer corpus at {PEER}")
def test_feedparser_other_suites_same_result_where_accepted() -> None:
    """Ill-formed, encoding and entity cases: only what expat accepts too may get through."""
    roots = [p for p in PEER.iterdir() if p.is_dir() and p.name != "wellformed"]
    accepted, total = check(files(*roots))
    print(f"\nfast path accepted {accepted}/{total} of feedparser's other suites")
    assert total > 300


def test_well_formed_document_skips_feedparser(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []
    real_parse = feedparser.parse
    monkeypatch.setattr(feedparser, "parse", lambda *a, **k: calls.append(a) or real_parse(*a, **k))
    body = (OWN_CORPUS / "raw" / "dune-observer.rss.xml").read_bytes()
    fast = parse_feed(body, url=URL)
    assert not calls
    truncated = body[: len(body) // 2]  # cut at its last whole entry and closed: still fast
    half = parse_feed(truncated, url=URL)
    assert not calls and half.entries and "truncated document" in (half.warning or "")
    parse_feed(body.replace(b"</title>", b"</titl>", 1), url=URL)  # ill-formed: declined
    assert len(calls) == 1
    assert fast.entries and fast.warning is None


def test_feedparser_settings_the_port_does_not_follow_turn_it_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    body = feeds.rss_bytes(feeds.item("settings"))
    assert fastparse.read_feed(body, url=URL, max_entries=5_000) is not None
    monkeypatch.setattr(feedparser, "RESOLVE_RELATIVE_URIS", False)
    assert fastparse.read_feed(body, url=URL, max_entries=5_000) is None


def test_more_entries_than_allowed_are_left_to_feedparser() -> None:
    items = [feeds.item("many", n) for n in range(4)]
    body = feeds.rss_bytes(*items)
    assert fastparse.read_feed(body, url=URL, max_entries=4) is not None
    assert fastparse.read_feed(body, url=URL, max_entries=3) is None


def test_defuse_warnings_are_kept_on_the_fast_path() -> None:
    body = feeds.rss_bytes(feeds.item("nul", description="a\x00b story"))
    assert accepts(body)
    parsed = parse_feed(body, url=URL)
    assert parsed.warning == "control characters removed (1 places)"


# --- generated documents ----------------------------------------------------------------------

NAMESPACES = {
    "content": "http://purl.org/rss/1.0/modules/content/",
    "dc": "http://purl.org/dc/elements/1.1/",
    "dcterms": "http://purl.org/dc/terms/",
    "atom": "http://www.w3.org/2005/Atom",
    "media": "http://search.yahoo.com/mrss/",
    "sy": "http://purl.org/rss/1.0/modules/syndication/",
    "slash": "http://purl.org/rss/1.0/modules/slash/",
    "feedburner": "http://rssnamespace.org/feedburner/ext/1.0",
    "x": "http://example.org/unknown-namespace",
}
DECLARATIONS = "".join(f' xmlns:{prefix}="{uri}"' for prefix, uri in NAMESPACES.items())
HTML_PIECES = [
    "<p>Plain paragraph.</p>",
    '<p class="lead">Lead &amp; more</p>',
    '<a href="/rel/path">relative</a>',
    '<a href="story.html?a=1&amp;b=2">query</a>',
    "<a href='single.html' title=\"t\">single quotes</a>",
    '<img src="img/x.jpg" alt="" />',
    "<br/>",
    "<br>",
    "<p/>",
    "<P>Upper</P>",
    "<b>bold</b> &mdash; &#8212; &#x2014; &#150; &#X41;",
    "AT&T and a & b",
    "&unknownentity; &nbsp;",
    "&#39;quoted&#34;",
    '<a href="javascript:alert(1)">js</a>',
    '<a href="HTTP://ABS.example/Y?">caps</a>',
    "<!-- comment --><p>after</p>",
    "<div><p>nested <em>em</em></p></div>",
    '<blockquote cite="quote.html">q</blockquote>',
    '<a rel="NoFollow" type="Text/HTML" href="x">rel</a>',
    '<a href="x" href="y">duplicate</a>',
    "1 < 2 > 0",
    "<p>caf\u00e9 \u00c3\u00a9 \u0093smart\u0094</p>",
    "<a href=unquoted.html>unquoted</a>",
    '<iframe src="frame.html"></iframe>',
    "</orphan> <p>x</br>",
    '<a href="a b.html">space</a>',
]
TEXTS = [
    "Plain headline",
    "  padded  ",
    "",
    "Tom & Jerry",
    "caf\u00e9 \u00c3\u00a9t\u00c3\u00a9 \u0080\u0093cp1252\u0094",
    "\u062e\u0628\u0631 \u0639\u0627\u062c\u0644",
    "a &amp; b",
    "&lt;b&gt;bold&lt;/b&gt;",
    "&copy; 2015 </p>",
]
URLS = [
    "http://example.com/a",
    "https://news.example/story/1?utm_source=rss&a=b",
    "/relative/1",
    "relative/2",
    "../up/3",
    "//proto.example/rel",
    "http://example.com/a;params",
    "http://example.com/a?",
    "HTTP://Example.com/Caps",
    "javascript:alert(1)",
    "tag:example.com,2015:1",
    "http://[::1]/v6",
    "  http://example.com/spaced  ",
    "",
    "http://example.com/a&amp;b",
]
DATES = [
    "Thu, 19 Feb 2015 21:55:03 +0400",
    "2015-02-20T10:00:00+02:00",
    "2015-02-20",
    "not a date",
    "",
    "Mon, 30 Feb 2026 99:99:99 GMT",
]
LANGUAGES = ["en", "ar", "fa_IR", "", "tr-TR"]
TYPES = ["html", "text", "xhtml", "text/html", "text/plain", "TEXT/HTML", "image/png"]
# Anywhere in a channel, item, feed or entry: repeats, odd places, namespace games.
CHAOS = [
    "<title>second title</title>",
    "<title></title>",
    "<media:title>media title</media:title>",
    "<textinput><title>t</title><name>n</name></textinput>",
    "<image><title>i</title><link>/l</link><url>u.png</url></image>",
    '<source url="http://s.example/">in source</source>',
    "<source><title>src</title><link href='/s'/><id>sid</id></source>",
    "<author><name>A</name><email>a@example.com</email></author>",
    "<dc:creator>x</dc:creator><dc:creator>y</dc:creator>",
    "<description>d1</description><description>d2</description>",
    "<content:encoded>c</content:encoded><description>after</description>",
    "<summary>s</summary><description>d</description>",
    '<y:title xmlns:y="http://other.example/">other namespace</y:title>',
    '<title xmlns="http://unknown.example/">unknown default namespace</title>',
    '<dc:creator xmlns:dc="http://purl.org/dc/terms/">prefix rebound</dc:creator>',
    '<foo:creator xmlns:foo="http://purl.org/dc/elements/1.1/">own prefix</foo:creator>',
    "<title>a<!-- c -->b<?pi x?>c</title>",
    "<title><![CDATA[a]]>b<![CDATA[c & <d>]]></title>",
    '<link/><guid isPermaLink="false"></guid><guid>relative-guid</guid>',
    '<title type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml">T <b>b</b></div></title>',
    "<TITLE>upper</TITLE><PubDate>Thu, 19 Feb 2015 21:55:03 GMT</PubDate>",
    '<enclosure url="relative.mp3"/><comments>relative</comments><cloud/><ttl>5</ttl>',
    '<description xml:lang="">no language</description>',
    '<description lang="xx" base="http://unprefixed.example/">&lt;a href="r"&gt;r&lt;/a&gt;</description>',
    '<media:content url="x"><media:description type="html">&lt;b&gt;d&lt;/b&gt;</media:description>'
    "</media:content>",
    '<atom:link rel="hub" href="http://hub.example/"/><atom:link rel="hub" href="/hub2"/>',
    "<language>de</language><dc:language>fr</dc:language>",
    "<atom:author><atom:name>n</atom:name></atom:author><atom:id>http://a.example/id</atom:id>",
    '<content type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml" xml:base="sub/">'
    '<a href="x">x</a><br/></div></content>',
    '<content type="xhtml"><xhtml:div xmlns:xhtml="http://www.w3.org/1999/xhtml">'
    "<xhtml:p>p</xhtml:p></xhtml:div></content>",
    '<content type="xhtml">  <div>one</div><div>two</div>  </content>',
    '<content type="html" xml:lang="ar">&lt;p&gt;ar&lt;/p&gt;</content>',
    "<managingEditor>ed@example.com (Editor)</managingEditor><webMaster>wm@example.com</webMaster>",
    '<link rel="alternate" type="application/pdf" href="/doc.pdf"/><link rel="self" href=""/>',
    "<dcterms:issued>2015-02-20</dcterms:issued><issued>2015-02-20T00:00:00Z</issued>",
    "<date>2015-02-20</date><links>l</links>",
    "<x:thing y:attr='1' xmlns:y='http://y.example/'>t</x:thing>",
    "<generator uri='/gen' version='1'>Gen</generator><rights type='html'>&lt;b&gt;r&lt;/b&gt;</rights>",
    "<contributor><name>C</name></contributor><dc:contributor>dcc</dc:contributor>",
    "<media:group><media:title>g</media:title><media:description>gd</media:description></media:group>",
    "<media:thumbnail url='t.jpg'/><media:credit role='a'>cr</media:credit><media:keywords>k</media:keywords>",
    "<item><title>nested item</title></item><entry><title>nested entry</title></entry>",
    "<name>bare name</name><email>bare@example.com</email><url>/bare-url</url><width>10</width>",
]
XHTML_PIECES = [
    "<p>para</p>",
    '<p class="c">x &amp; y</p>',
    '<a href="rel.html">a</a>',
    '<img src="i.png" alt=""/>',
    "<br/>",
    "text &lt; more",
    "<ul><li>one</li></ul>",
    '<span xml:lang="de">s</span>',
]


class RandomFeed:
    """An RSS 2.0, Atom 1.0 or RSS 1.0 document from ``seed``: the elements, attributes
    (xml:base, xml:lang, type, rel) and values (HTML, URLs, dates) the port handles,
    in random order and combination, with the odd one it declines."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)

    def pick(self, options: list[str]) -> str:
        return self.random.choice(options)

    def chance(self, p: float) -> bool:
        return self.random.random() < p

    def value(self, kind: str) -> str:
        if kind == "html":
            raw = "".join(self.pick(HTML_PIECES) for _ in range(self.random.randint(1, 4)))
            return f"<![CDATA[{raw}]]>" if self.chance(0.5) else escape(raw)
        options = {"text": TEXTS, "url": URLS, "date": DATES, "lang": LANGUAGES}
        return escape(self.pick(options.get(kind, ["15", "hourly", ""])))

    def attributes(self, *names: str) -> str:
        choices = {
            "xml:base": ["http://base.example/dir/", "sub/", "/root/", "../x/", "javascript:x"],
            "xml:lang": LANGUAGES,
            "type": TYPES,
            "rel": ["alternate", "self", "hub", "enclosure", "ALTERNATE"],
            "isPermaLink": ["true", "false", "True"],
        }
        return "".join(
            f" {name}={quoteattr(self.pick(choices.get(name, URLS)))}"
            for name in names
            if self.chance(0.3)
        )

    def element(self, name: str, kind: str) -> str:
        local = name.rpartition(":")[2]
        if local in ("title", "summary", "content", "subtitle", "rights", "description"):
            attributes = self.attributes("type", "xml:base", "xml:lang")
        elif local == "guid":
            attributes = self.attributes("isPermaLink", "xml:base")
        else:
            attributes = self.attributes("xml:base", "xml:lang")
        space = self.pick(["", "", "\n  "])
        return f"<{name}{attributes}>{space}{self.value(kind)}{space}</{name}>"

    def some(self, menu: list[tuple[str, str]], most: int, extras: list[str]) -> str:
        parts = [
            self.element(*self.random.choice(menu)) for _ in range(self.random.randint(0, most))
        ]
        for _ in range(self.random.randint(0, 2)):
            parts.insert(self.random.randint(0, len(parts)), self.pick(extras))
        if self.chance(0.4):
            parts.insert(self.random.randint(0, len(parts)), self.pick(CHAOS))
        return "".join(parts)

    def xhtml(self) -> str:
        inner = "".join(self.pick(XHTML_PIECES) for _ in range(self.random.randint(0, 3)))
        space = ' xmlns="http://www.w3.org/1999/xhtml"' if self.chance(0.5) else ""
        wrapper = self.pick(["div", "div", "p", ""])
        return f"<{wrapper}{space}>{inner}</{wrapper}>" if wrapper else inner

    def rss(self) -> str:
        item_menu = [
            ("title", "text"), ("title", "html"), ("link", "url"), ("guid", "url"),
            ("description", "html"), ("content:encoded", "html"), ("pubDate", "date"),
            ("dc:date", "date"), ("dc:creator", "text"), ("author", "text"), ("category", "text"),
            ("comments", "url"), ("dc:language", "lang"), ("x:custom", "text"),
            ("media:title", "text"), ("media:description", "html"), ("summary", "html"),
            ("dcterms:modified", "date"), ("source", "text"),
        ]  # fmt: skip
        item_extras = [
            '<enclosure url="http://example.com/a.mp3" length="1" type="audio/mpeg"/>',
            f'<atom:link rel="alternate" href={quoteattr(self.pick(URLS))}/>',
            '<media:content url="i.jpg"><media:title>mt</media:title>'
            '<media:description>md</media:description><media:thumbnail url="t.jpg"/></media:content>',
            '<media:group><media:title type="plain">group title</media:title></media:group>',
            '<x:thing a="1">text</x:thing>',
            "<image><url>http://example.com/i.png</url><title>img</title></image>",
        ]
        channel_menu = [
            ("title", "text"), ("link", "url"), ("description", "html"), ("language", "lang"),
            ("ttl", "number"), ("sy:updatePeriod", "text"), ("sy:updateFrequency", "number"),
            ("lastBuildDate", "date"), ("generator", "text"), ("dc:language", "lang"),
            ("managingEditor", "text"), ("webMaster", "text"), ("copyright", "text"),
        ]  # fmt: skip
        channel_extras = [
            f"<atom:link rel={quoteattr(self.pick(['self', 'hub']))} href={quoteattr(self.pick(URLS))}/>",
            "<image><url>http://example.com/l.png</url><title>Logo</title><link>/</link></image>",
            "<textInput><title>Search</title><name>q</name><link>http://example.com/s</link></textInput>",
            '<cloud domain="rpc.example" port="80" path="/RPC2"/>',
        ] + [
            f"<item{self.attributes('xml:base', 'xml:lang')}>"
            f"{self.some(item_menu, 9, item_extras)}</item>"
            for _ in range(self.random.randint(1, 5))
        ]
        version = self.pick(["2.0", "0.91", "0.92", ""])
        return (
            f'<rss version="{version}"{DECLARATIONS}{self.attributes("xml:lang", "xml:base")}>'
            f"<channel>{self.some(channel_menu, 8, channel_extras * 2)}</channel></rss>"
        )

    def atom(self) -> str:
        entry_menu = [
            ("title", "text"), ("title", "html"), ("id", "url"), ("summary", "html"),
            ("content", "html"), ("published", "date"), ("updated", "date"), ("rights", "text"),
            ("dc:creator", "text"), ("x:custom", "text"), ("media:title", "text"),
        ]  # fmt: skip
        entry_extras = [
            f"<link{self.attributes('rel', 'type', 'href', 'xml:base')}/>",
            f'<link rel="alternate" type="text/html" href={quoteattr(self.pick(URLS))}/>',
            "<author><name>Jane</name><email>jane@example.com</email><uri>/jane</uri></author>",
            "<author><email>only@example.com</email></author>",
            "<author></author>",
            "<contributor><name>Con</name></contributor>",
            "<source><title>Src</title><id>http://src.example/</id></source>",
            '<category term="t" scheme="s"/>',
            f'<content type="xhtml"{self.attributes("xml:base", "xml:lang")}>{self.xhtml()}</content>',
            f'<summary type="xhtml">{self.xhtml()}</summary>',
        ]
        feed_menu = [
            ("title", "text"), ("subtitle", "html"), ("id", "url"), ("updated", "date"),
            ("rights", "text"), ("generator", "text"), ("icon", "url"),
        ]  # fmt: skip
        feed_extras = [
            f'<link rel="self" href={quoteattr(self.pick(URLS))}/>',
            f'<link rel="hub" href={quoteattr(self.pick(URLS))}/>',
            f"<link{self.attributes('rel', 'type', 'href')}/>",
            "<author><name>Feed Author</name></author>",
        ] + [
            f"<entry{self.attributes('xml:base', 'xml:lang')}>"
            f"{self.some(entry_menu, 8, entry_extras)}</entry>"
            for _ in range(self.random.randint(1, 5))
        ]
        return (
            f'<feed xmlns="http://www.w3.org/2005/Atom"{DECLARATIONS}'
            f"{self.attributes('xml:lang', 'xml:base')}>{self.some(feed_menu, 6, feed_extras * 2)}</feed>"
        )

    def rdf(self) -> str:
        item_menu = [
            ("title", "text"), ("link", "url"), ("description", "html"), ("dc:date", "date"),
            ("dc:creator", "text"), ("content:encoded", "html"),
        ]  # fmt: skip
        items = "".join(
            f"<item rdf:about={quoteattr(self.pick(URLS))}>{self.some(item_menu, 5, ['<x:y/>'])}</item>"
            for _ in range(self.random.randint(1, 4))
        )
        return (
            '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
            f'xmlns="http://purl.org/rss/1.0/"{DECLARATIONS}>'
            '<channel rdf:about="http://example.com/"><title>RDF</title><link>/</link>'
            f"<items><rdf:Seq><rdf:li resource='/1'/></rdf:Seq></items></channel>{items}</rdf:RDF>"
        )

    def document(self) -> bytes:
        kind = self.random.random()
        text = self.rss() if kind < 0.45 else self.atom() if kind < 0.85 else self.rdf()
        return ('<?xml version="1.0" encoding="utf-8"?>\n' + text).encode()


def test_generated_documents_same_result_either_way() -> None:
    bases = [URL, "https://news.example/a/b/feed?x=1", "http://example.com"]
    accepted = total = 0
    for seed in range(600):
        url = bases[seed % len(bases)]
        found, count = check([(f"seed {seed}", RandomFeed(seed).document())], url=url)
        accepted += found
        total += count
    print(f"\nfast path accepted {accepted}/{total} generated documents")
    assert accepted > total // 2


# --- the shortcuts fastparse takes -----------------------------------------------------------

html_markup = st.lists(
    st.one_of(
        st.sampled_from(HTML_PIECES + XHTML_PIECES),
        st.text(alphabet="<>&#;/=\"' abcpAB1", max_size=12),
        st.builds(
            "<{} {}={}>".format,
            st.sampled_from(["a", "img", "br", "P", "blockquote", "q"]),
            st.sampled_from(["href", "src", "cite", "rel", "type", "title", "HREF"]),
            st.sampled_from(['"x.html"', "'y'", '"a&amp;b"', '"&#38;c"', '"&#9"', '""', '" sp "']),
        ),
    ),
    max_size=8,
).map("".join)


@settings(max_examples=500, deadline=None)
@given(
    markup=html_markup,
    base=st.sampled_from([URL, "https://news.example/a/", "javascript:x", ""]),
    content_type=st.sampled_from(["text/html", "application/xhtml+xml"]),
)
def test_html_reserialization_matches_feedparser(markup: str, base: str, content_type: str) -> None:
    expected = resolve_relative_uris(markup, base, "utf-8", content_type)
    assert fastparse._resolve_relative_uris(markup, base, content_type, {}) == expected


def test_html_reserialization_takes_the_short_way_for_common_markup() -> None:
    """Only unusual markup may fall back to feedparser's SGML parser."""
    common = [
        '<p class="lead">Text &amp; more &mdash; &#8212;</p><img src="a.jpg" alt="" /><br/>',
        "<p>x</p>",
        '<a href="/r?a=1&amp;b=2" rel="NoFollow">r</a>',
    ]
    for markup in common:
        fastparse._reserialize(markup, URL, "text/html", {})  # raises _Fallback otherwise


@settings(max_examples=500, deadline=None)
@given(
    url=st.from_regex(fastparse._PLAIN_HTTP_URL, fullmatch=True),
    base=st.one_of(st.from_regex(fastparse._PLAIN_HTTP_URL, fullmatch=True), st.just(URL)),
)
def test_plain_urls_join_to_themselves(url: str, base: str) -> None:
    assert _urljoin(base, url) == url
    assert make_safe_absolute_uri(base, url) == url


def test_handler_tables_mirror_feedparser() -> None:
    """Each ported start handler has its end handler wherever feedparser has one."""
    for name in fastparse._STARTS:
        assert (name in fastparse._ENDS) == (name in fastparse._FEEDPARSER_ENDS), name
    for name in fastparse._ENDS:
        assert name in fastparse._FEEDPARSER_ENDS, name


# --- hostile bodies, even without defuse_xml in front ----------------------------------------

SECRET_DTD = '<!ENTITY secret "TOPSECRET">'


def raw_documents(tmp_path: Path) -> Iterator[tuple[str, bytes]]:
    dtd = tmp_path / "evil.dtd"
    dtd.write_text(SECRET_DTD)
    item = "<item><title>{}</title><description>story</description></item>"

    def rss(prolog: str, title: str) -> bytes:
        return feeds.rss_bytes(item.format(title), prolog=feeds.XML_DECLARATION + prolog)

    yield "billion laughs", feeds.billion_laughs("raw")
    yield "quadratic blowup", feeds.quadratic_blowup("raw")
    yield "external file", rss(f'<!DOCTYPE rss [<!ENTITY x SYSTEM "{dtd.as_uri()}">]>', "&x;")
    yield "external DTD", rss(f'<!DOCTYPE rss SYSTEM "{dtd.as_uri()}">', "&secret;")
    yield (
        "parameter entity",
        rss(f'<!DOCTYPE rss [<!ENTITY % p SYSTEM "{dtd.as_uri()}"> %p;]>', "&secret;"),
    )
    yield "internal entity", rss('<!DOCTYPE rss [<!ENTITY e "expanded">]>', "a &e; b")
    yield "deep nesting", feeds.rss_bytes(feeds.item("deep", extra="<x>" * 5_000 + "</x>" * 5_000))


def test_raw_hostile_bodies_are_declined_unexpanded(tmp_path: Path) -> None:
    """No entity is ever substituted, no DTD read: such documents are declined outright."""
    for name, body in raw_documents(tmp_path):
        started = time.perf_counter()
        assert fastparse.read_feed(body, url=URL, max_entries=5_000) is None, name
        assert time.perf_counter() - started < 1.0, name
