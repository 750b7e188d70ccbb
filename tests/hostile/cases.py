"""The hostile corpus as data: each case is how the server answers and what must happen.

A case either ``Fails`` (its error recorded on the feed's row with that kind,
nothing stored for it) or ``Stores`` (exactly that many articles seen from the
feed, optionally a warning logged and a check on the stored rows). Every case
also passes the checks every stored row must pass (see ``test_hostile``).
Feeds live at ``{hostile}/<name>`` unless a case says otherwise; the settings
used are those of ``test_hostile.hostile_settings`` (1 MiB body cap, 1 s read
timeout, 3 s total, 3 redirects).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aggregator.errors import (
    BlockedAddressError,
    BodyTooLargeError,
    FetchTimeoutError,
    NotAFeedError,
    ParseError,
    TooManyRedirectsError,
)
from tests.hostile import feeds
from tests.hostile.feeds import item, json_feed, rss_bytes, story
from tests.hostile.server import Answer, Body, Bomb, Chain, Endless, Redirect, Stall, Trickle

Row = Mapping[str, Any]
MIB = 1024 * 1024

# Test host names and what the tests' resolver answers for them (successive lookups).
RESOLVER_ANSWERS: dict[str, list[list[str]]] = {
    "intranet.test": [["10.0.0.1"]],
    "metadata.test": [["169.254.169.254"]],
    "mixed.test": [["127.0.0.1", "127.0.0.2"]],  # a private answer first, then the public one
    "rebind.test": [["127.0.0.2"], ["127.0.0.1"]],  # public at first, private next time
}


@dataclass(frozen=True)
class Fails:
    kind: str
    message: str = ""  # part of the recorded error
    retry_after: float | None = None  # the next poll waits at least this long


@dataclass(frozen=True)
class Stores:
    articles: int  # sightings from this feed
    warning: str | None = None  # part of the logged "recovered from malformed XML" line
    check: Callable[[Sequence[Row]], None] | None = None


@dataclass(frozen=True)
class Case:
    name: str
    answer: Answer | None  # None: the URL points away from the hostile server
    expect: Fails | Stores
    url: str = "{hostile}/{name}"
    never_requested: Sequence[str] = field(default_factory=tuple)  # hostile-server paths


# --- checks on a case's stored rows ---------------------------------------------------------

TEXT_FIELDS = ("title", "summary", "content_text", "content_html", "author", "source_title")


def nowhere(*needles: str) -> Callable[[Sequence[Row]], None]:
    def check(rows: Sequence[Row]) -> None:
        for row in rows:
            for name in TEXT_FIELDS:
                value = (row[name] or "").lower()
                for needle in needles:
                    assert needle.lower() not in value, (name, needle, value[:200])

    return check


def all_of(*checks: Callable[[Sequence[Row]], None]) -> Callable[[Sequence[Row]], None]:
    def check(rows: Sequence[Row]) -> None:
        for one in checks:
            one(rows)

    return check


def no_urls(rows: Sequence[Row]) -> None:
    for row in rows:
        assert row["url"] is None and row["canonical_url"] is None, row["url"]


def published_when_first_seen(rows: Sequence[Row]) -> None:
    for row in rows:
        assert row["published_at"] == row["first_seen_at"], (row["title"], row["published_at"])


def titles_bounded(rows: Sequence[Row]) -> None:
    (row,) = rows
    assert 900 <= len(row["title"]) <= 1_000


def bodies_kept(rows: Sequence[Row]) -> None:
    for row in rows:
        assert "Officials in the case" in row["content_text"], row["content_text"][:200]


# --- documents that need a case name or the servers' places -----------------------------------


def _xxe_http(places: Any) -> bytes:
    prolog = f'{feeds.XML_DECLARATION}<!DOCTYPE rss [<!ENTITY xxe SYSTEM "{places.hostile}/xxe-target">]>'
    return rss_bytes(item("xxe_http", description=story("xxe_http") + " &xxe;"), prolog=prolog)


def _external_dtd(places: Any) -> bytes:
    prolog = f'{feeds.XML_DECLARATION}<!DOCTYPE rss SYSTEM "{places.hostile}/evil.dtd">'
    return rss_bytes(item("external_dtd"), prolog=prolog)


def _utf16_bomb() -> bytes:
    prolog = (
        '<?xml version="1.0" encoding="utf-16"?><!DOCTYPE rss [<!ENTITY big "'
        + "x" * 20_000
        + '">]>'
    )
    return feeds.rss(
        item("utf16_bomb", description=story("utf16_bomb") + "&big;" * 2_000), prolog=prolog
    ).encode("utf-16")


def _utf7_smuggled_doctype() -> bytes:
    # In UTF-7, '<' can be written '+ADw-': a byte-level search for "<!DOCTYPE" sees nothing.
    prolog = '<!DOCTYPE rss [<!ENTITY big "' + "x" * 20_000 + '">]>'
    document = feeds.rss(item("utf7", description=story("utf7") + "&big;" * 2_000), prolog=prolog)
    return b'<?xml version="1.0" encoding="utf-7"?>' + document.encode("utf-7")


def _truncated() -> bytes:
    """Cut in the middle of the fourth item's text: the three before it are recovered, the
    cut-off one is not stored (it would be a new article: truncated text, a new hash)."""
    whole = rss_bytes(*(item("truncated", n) for n in range(4)))
    fourth = whole.index(b"<description>", whole.index(b"truncated-3"))
    return whole[: fourth + 200]


def _many_items() -> bytes:
    items = "".join(
        f"<item><title>many {n}</title><guid>many-{n}</guid></item>" for n in range(10_000)
    )
    return feeds.rss(items).encode()


def _deeply_nested() -> bytes:
    depth = 20_000
    return rss_bytes(
        item("deep", 0),
        item("deep", 1, extra="<x>" * depth + "</x>" * depth),
    )


_SCRIPT_TITLES = (
    "&lt;script&gt;alert(1)&lt;/script&gt;Escaped script headline",
    "&amp;lt;script&amp;gt;alert(2)&amp;lt;/script&amp;gt;Double-escaped headline",
    "<![CDATA[<script>alert(3)</script>CDATA headline]]>",
    '&lt;img src=x onerror="alert(4)"&gt;Image headline',
)
_DANGEROUS_BODY = (
    '&lt;p&gt;Read &lt;a href="javascript:alert(1)"&gt;this&lt;/a&gt; and '
    '&lt;a href="data:text/html;base64,PHNjcmlwdD4="&gt;that&lt;/a&gt; and '
    '&lt;a href="vbscript:msgbox"&gt;more&lt;/a&gt; &lt;img src="javascript:alert(2)"&gt; '
    '&lt;iframe src="https://evil.example/"&gt;&lt;/iframe&gt; &lt;script&gt;steal()&lt;/script&gt; '
    "and the whole story: officials said the project would go ahead next spring.&lt;/p&gt;"
)
_EVENT_BODY = (
    '&lt;p onclick="steal()" onmouseover="steal()" style="background:url(javascript:x)"&gt;'
    "The council approved the budget on Monday after a long debate about schools.&lt;/p&gt;"
    '&lt;img src="https://news.example/a.jpg" onerror="steal()"&gt;'
    '&lt;svg onload="steal()"&gt;&lt;/svg&gt;&lt;body onload="steal()"&gt;'
)


def _nul_bytes() -> bytes:
    return rss_bytes(
        item("nul", 0, title="Headline\x00 with NUL", description=story("nul", 0) + "\x00\x00"),
        item("nul", 1, description=story("nul", 1).replace("Monday", "Mon\x00day")),
    )


def _control_characters() -> bytes:
    return rss_bytes(
        item(
            "ctl",
            0,
            title="Bell\x07 and &#xD800; and &#0; in a headline",
            description=story("ctl") + " &#x1;&#xFFFE;\x1b[31m",
        ),
    )


def _json_hostile() -> bytes:
    return json_feed(
        [
            {
                "id": "j1",
                "url": "javascript:alert(1)",
                "title": "<script>alert(1)</script>JSON headline\u0000",
                "content_html": '<p onclick="x()">'
                + story("json_hostile")
                + "\ud800</p><script>bad()</script>",
                "date_published": "0000-01-01T00:00:00Z",
                "authors": [{"name": "<b onmouseover=x()>Reporter</b>"}],
            },
            {
                "id": "j2",
                "url": "https://news.example/j2",
                "content_text": story("json_hostile", 2),
                "date_published": "not a date",
            },
            {
                "id": "j3",
                "title": {"nested": "object"},
                "content_text": ["a", "list"],
            },  # wrong types: empty item
            "not an object",
        ]
    )


CASES: list[Case] = [
    # --- sizes -------------------------------------------------------------------------
    Case("gzip_bomb", Bomb("gzip", 256 * MIB), Fails(BodyTooLargeError.kind)),
    Case("deflate_bomb", Bomb("deflate", 64 * MIB), Fails(BodyTooLargeError.kind)),
    Case("body_50mb_streamed", Endless(), Fails(BodyTooLargeError.kind)),
    Case(
        "body_50mb_declared",
        Endless(declared_length=50 * MIB),
        Fails(BodyTooLargeError.kind, "declared"),
    ),
    Case(
        "gzip_within_cap",
        Body(rss_bytes(item("gzip_within_cap")), content_encoding="gzip"),
        Stores(1, check=bodies_kept),
    ),
    Case(
        "huge_header",
        Body(rss_bytes(item("huge_header")), headers={"X-Padding": "x" * 65_536}),
        Fails("network"),
    ),
    # --- time --------------------------------------------------------------------------
    Case(
        "trickle_a_byte_every_half_second",
        Trickle(every=0.5),
        Fails(FetchTimeoutError.kind, "whole fetch"),
    ),
    Case("stall_after_headers", Stall(), Fails(FetchTimeoutError.kind)),
    Case("stall_before_headers", Stall(before_headers=True), Fails(FetchTimeoutError.kind)),
    # --- redirects and addresses ------------------------------------------------------
    Case("redirect_loop", Redirect("{hostile}/redirect_loop"), Fails(TooManyRedirectsError.kind)),
    Case(
        "redirect_chain_too_long",
        Chain(5, Body(rss_bytes(item("chain_long")))),
        Fails(TooManyRedirectsError.kind),
    ),
    Case("redirect_chain_within_limit", Chain(2, Body(rss_bytes(item("chain_ok")))), Stores(1)),
    Case("redirect_to_loopback", Redirect("{sentinel4}/steal"), Fails(BlockedAddressError.kind)),
    Case(
        "redirect_to_ipv6_loopback", Redirect("{sentinel6}/steal"), Fails(BlockedAddressError.kind)
    ),
    Case(
        "redirect_to_ipv4_mapped_ipv6",
        Redirect("http://[::ffff:127.0.0.1]:{sentinel4_port}/steal"),
        Fails(BlockedAddressError.kind),
    ),
    Case(
        "redirect_to_unspecified_0000",
        Redirect("http://0.0.0.0:{sentinel4_port}/steal"),
        Fails(BlockedAddressError.kind),
    ),
    Case(
        "redirect_to_private_name",
        Redirect("http://intranet.test:{sentinel4_port}/steal"),
        Fails(BlockedAddressError.kind),
    ),
    Case(
        "redirect_to_cloud_metadata",
        Redirect("http://metadata.test/latest/meta-data/"),
        Fails(BlockedAddressError.kind),
    ),
    Case(
        "redirect_to_metadata_ip",
        Redirect("http://169.254.169.254/latest/meta-data/", status=301),
        Fails(BlockedAddressError.kind),
    ),
    Case("redirect_to_file_scheme", Redirect("file:///etc/passwd"), Fails("invalid_url")),
    Case("redirect_to_ftp_scheme", Redirect("ftp://news.example/feed.xml"), Fails("invalid_url")),
    Case(
        "dns_rebinding",
        Redirect("http://rebind.test:{sentinel4_port}/steal"),
        Fails(BlockedAddressError.kind),
        url="http://rebind.test:{hostile_port}/dns_rebinding",
    ),
    Case(
        "mixed_private_and_public_answers",
        Body(rss_bytes(item("mixed"))),
        Stores(1),
        url="http://mixed.test:{hostile_port}/mixed_private_and_public_answers",
    ),
    Case("feed_on_loopback", None, Fails(BlockedAddressError.kind), url="{sentinel4}/feed"),
    Case("feed_on_ipv6_loopback", None, Fails(BlockedAddressError.kind), url="{sentinel6}/feed"),
    Case(
        "feed_on_private_name",
        None,
        Fails(BlockedAddressError.kind),
        url="http://intranet.test/feed",
    ),
    Case(
        "feed_on_metadata_address",
        None,
        Fails(BlockedAddressError.kind),
        url="http://169.254.169.254/latest/",
    ),
    Case("feed_on_unresolvable_name", None, Fails("dns"), url="http://nowhere.test/feed"),
    # --- status codes -----------------------------------------------------------------
    Case(
        "status_429_with_retry_after",
        Body(b"slow down", content_type="text/plain", status=429, headers={"Retry-After": "120"}),
        Fails("rate_limited", "429", retry_after=120),
    ),
    Case("status_500", Body(b"oops", content_type="text/plain", status=500), Fails("server_error")),
    # --- XML attacks --------------------------------------------------------------------
    Case(
        "billion_laughs",
        Body(feeds.billion_laughs("billion_laughs")),
        Stores(1, "DTD internal subset removed", all_of(bodies_kept, nowhere("lollol"))),
    ),
    Case(
        "quadratic_blowup",
        Body(feeds.quadratic_blowup("quadratic_blowup")),
        Stores(1, "DTD internal subset removed", all_of(bodies_kept, nowhere("xxxxxxxxxx"))),
    ),
    Case(
        "entity_hidden_in_comment",
        Body(feeds.entity_hidden_in_comment("comment")),
        Stores(1, "neutralized", nowhere("xxxxxxxxxx")),
    ),
    Case(
        "xxe_local_file",
        Body(
            rss_bytes(
                item("xxe_file", description=story("xxe_file") + " &xxe;"),
                prolog=feeds.XML_DECLARATION
                + '<!DOCTYPE rss [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
            )
        ),
        Stores(1, "DTD internal subset removed", all_of(bodies_kept, nowhere("root:", "/bin/"))),
    ),
    Case(
        "xxe_http",
        Body(_xxe_http),
        Stores(1, "DTD internal subset removed"),
        never_requested=("/xxe-target",),
    ),
    Case("external_dtd", Body(_external_dtd), Stores(1), never_requested=("/evil.dtd",)),
    Case(
        "utf16_dtd_bomb",
        Body(_utf16_bomb()),
        Stores(1, "DTD internal subset removed", nowhere("xxxxxxxxxx")),
    ),
    Case(
        "utf7_smuggled_doctype",
        Body(_utf7_smuggled_doctype()),
        Stores(1, "DTD internal subset removed", nowhere("xxxxxxxxxx")),
    ),
    Case("deeply_nested_elements", Body(_deeply_nested()), Stores(2, check=bodies_kept)),
    # --- broken documents ---------------------------------------------------------------
    Case(
        "truncated_xml",
        Body(_truncated()),
        Stores(
            3, "truncated document (it ends before </rss>): 1 unfinished entry dropped", bodies_kept
        ),
    ),
    Case(
        "html_instead_of_feed",
        Body(
            b"<!DOCTYPE html><html><head><title>Home</title></head><body><p>Welcome</p></body></html>",
            content_type="text/html",
        ),
        Fails(NotAFeedError.kind, "HTML page"),
    ),
    Case("empty_body", Body(b""), Fails(NotAFeedError.kind, "empty")),
    Case(
        "binary_garbage",
        Body(bytes(range(256)) * 64, content_type="application/octet-stream"),
        Fails(NotAFeedError.kind),
    ),
    Case(
        "wrong_declared_encoding",
        # Windows-1256 bytes under a UTF-8 declaration: kept (as feedparser decodes them), with a warning.
        Body(
            feeds.rss(
                item("encoding", title="خبر عاجل", description=story("encoding") + " نص الخبر.")
            ).encode("cp1256")
        ),
        Stores(1, "declared as utf-8", bodies_kept),
    ),
    Case(
        "rss_served_as_html",
        Body(rss_bytes(item("as_html")), content_type="text/html; charset=utf-8"),
        Stores(1, check=bodies_kept),
    ),
    # --- hostile values -----------------------------------------------------------------
    Case("nul_bytes", Body(_nul_bytes()), Stores(2, "control characters removed", bodies_kept)),
    Case(
        "control_characters_and_bad_references",
        Body(_control_characters()),
        Stores(1, "XML forbids"),
    ),
    Case(
        "script_in_titles",
        Body(rss_bytes(*(item("script", n, title=t) for n, t in enumerate(_SCRIPT_TITLES)))),
        Stores(4, check=nowhere("<script", "alert(", "onerror", "<img")),
    ),
    Case(
        "dangerous_links",
        Body(
            rss_bytes(
                item(
                    "links",
                    0,
                    link="javascript:alert(1)",
                    guid="javascript:alert(2)",
                    description=_DANGEROUS_BODY,
                ),
                item("links", 1, link="data:text/html,hi", guid="data:text/html,hi"),
                item("links", 2, link="file:///etc/passwd", guid="vbscript:x"),
            )
        ),
        Stores(
            3,
            check=all_of(
                no_urls,
                nowhere("javascript:", "data:", "vbscript:", "<script", "<iframe", "steal()"),
            ),
        ),
    ),
    Case(
        "event_handlers",
        Body(rss_bytes(item("events", description=_EVENT_BODY))),
        Stores(
            1, check=nowhere("onclick", "onmouseover", "onerror", "onload", "steal()", "style=")
        ),
    ),
    Case(
        "html_document_as_description",
        Body(
            rss_bytes(
                item(
                    "whole_page",
                    description="&lt;html&gt;&lt;head&gt;&lt;title&gt;x&lt;/title&gt;&lt;/head&gt;&lt;body&gt;&lt;p&gt;"
                    + story("whole_page")
                    + "&lt;/p&gt;&lt;/body&gt;&lt;/html&gt;",
                ),
                item("whole_page", 1, title="&lt;html&gt;", description="&lt;html&gt;"),
            )
        ),
        Stores(2),
    ),
    Case(
        "ten_thousand_items",
        Body(_many_items()),
        Stores(10_000),  # well under the byte cap: every item is kept
    ),
    Case(
        "megabyte_title",
        Body(rss_bytes(item("big_title", title="A" * 400 + " headline " + "word " * 200_000))),
        Stores(1, check=titles_bounded),
    ),
    Case(
        "huge_link",
        Body(rss_bytes(item("huge_link", link="https://news.example/" + "a" * 100_000, guid=None))),
        Stores(1, check=no_urls),
    ),
    Case(
        "missing_guid_link_title",
        Body(
            rss_bytes(
                item("missing", 0, guid=None),
                item("missing", 1, link=None, guid=None),
                item("missing", 2, title="", link=None, guid=None),
                "<item></item>",  # nothing at all: skipped
                "<item><title></title><description></description></item>",  # likewise
            )
        ),
        Stores(3, check=bodies_kept),
    ),
    Case(
        "duplicate_guids",
        Body(
            rss_bytes(
                item("dupguid", 0, guid="same"),
                item("dupguid", 1, guid="same"),
                item("dupguid", 2, guid="same"),
                item("dupitem", 0),
                item("dupitem", 0),
                item("dupitem", 0),  # the same item three times
            )
        ),
        Stores(4),
    ),
    Case(
        "future_dates",
        Body(
            rss_bytes(
                item("future", 0, date="Fri, 01 Jan 2999 00:00:00 GMT"),
                item("future", 1, date="Tue, 01 Jan 2030 00:00:00 GMT"),
            )
        ),
        Stores(2, check=published_when_first_seen),
    ),
    Case(
        "garbage_dates",
        Body(
            rss_bytes(
                item("garbage_date", 0, date="not a date at all"),
                item("garbage_date", 1, date="Sat, 01 Jan 0000 00:00:00 GMT"),
                item("garbage_date", 2, date="Mon, 30 Feb 2026 99:99:99 GMT"),
                item("garbage_date", 3, date="Thu, 01 Jan 1970 00:00:00 GMT"),
            )
        ),
        Stores(4, check=published_when_first_seen),
    ),
    # --- JSON Feed ----------------------------------------------------------------------
    Case(
        "json_feed_hostile_values",
        Body(_json_hostile(), content_type="application/feed+json"),
        Stores(
            3,
            check=all_of(
                nowhere("<script", "alert(", "onclick", "onmouseover", "bad()"),
                published_when_first_seen,
            ),
        ),
    ),
    Case(
        "json_deep_nesting",
        Body(
            b'{"version":"https://jsonfeed.org/version/1.1","items":'
            + b"[" * 100_000
            + b"]" * 100_000
            + b"}",
            content_type="application/feed+json",
        ),
        Fails(ParseError.kind, "nested"),
    ),
    Case(
        "json_not_a_feed",
        Body(b'{"hello": "world"}', content_type="application/json"),
        Fails(NotAFeedError.kind),
    ),
]

# Healthy feeds polled in the same run: they must come through as if alone.
CONTROL_FEEDS = ("dune-observer.rss.xml", "cedar-chronicle.atom.xml", "crossroads-brief.feed.json")
